// Command matte cuts an object out of a photo with Matting Anything.
//
//	go run ./examples/matte -image photo.jpg -box x0,y0,x1,y1
//
// writes the alpha matte to out/photo_alpha.png. Without -sam and -mam it
// uses SAM ViT-B and MAM ViT-B from the cache directory ($MAM_CACHE, else
// the user cache directory's mam-go), downloading them there on first use
// with a progress bar; an interrupted download resumes.
//
// Prompts: -box x0,y0,x1,y1 and/or -point x,y[,label] (repeatable; label 1
// foreground, 0 background), in pixels of the photo as a viewer shows it
// (the JPEG EXIF orientation is applied; -exif=false keeps the stored
// pixels). -cutout out.png writes the object on a transparent background
// and -composite green|#rrggbb|bg.jpg over a colour or another image, both
// with the estimated foreground colours. -image - reads standard input and
// -o - writes standard output. Every flag, prompt and output path is checked
// before the model loads; outputs are written under temporary names and
// renamed once all are complete. Stage times go to standard error; -h lists
// every flag.
//
// Text prompts: -text "the dog" finds the object with GroundingDINO (-gdino
// and -vocab, else Swin-T and BERT's vocabulary from the cache, downloaded on
// first use), and its best box becomes the box prompt, as Matting
// Anything's demo does; -point clicks may be added, -box may not. The boxes
// found (score, box, phrase, highest score first) are printed on standard
// error; -json FILE writes them as the detect command does. -all mattes
// every box: -o (and -cutout, -composite-out, -mask) then name directories
// holding alpha_<i>.png (cutout_<i>.png, composite_<i>.png, mask_<i>.png),
// i counting the boxes from 0 in that order. -semantic writes their union
// (the pixelwise maximum of the alphas) as one matte. -box-threshold,
// -text-threshold and -nms tune the detection (0.25, 0.25, 0.5 by default,
// the demo's). A text that matches nothing is an error, with -all too:
// nothing is written. -dump writes the stages of the best box's matte.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/mam-go/mam-go/gdino"
	"github.com/mam-go/mam-go/mam"
	"github.com/mam-go/mam-go/weights"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, errHelp):
		return
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "matte:", oneLine(err))
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "matte:", oneLine(err))
		os.Exit(1)
	}
}

// packagePrefix matches the "mam: ", "sam: ", ... that each layer of the
// library puts before its errors, at the start or after ": ".
var packagePrefix = regexp.MustCompile(`(^|: )(?:mam|sam|m2m|gdino|nn|weights|png|jpeg|gif|webp|image): `)

// oneLine is err's message on one line, without the packages' prefixes
// stacked along it.
func oneLine(err error) string {
	s := err.Error()
	for {
		t := packagePrefix.ReplaceAllString(s, "$1")
		if t == s {
			break
		}
		s = t
	}
	return strings.Join(strings.Fields(s), " ")
}

// run is the command, with its arguments and standard streams.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	if cfg.threads > 0 {
		runtime.GOMAXPROCS(cfg.threads)
	}
	if cfg.image == "" { // -download alone
		_, err := checkpoints(ctx, cfg, stderr)
		if err == nil {
			dir, _ := mam.CacheDir()
			fmt.Fprintf(stderr, "checkpoints in %s\n", dir)
		}
		return err
	}

	// The image's header, the prompt and any background image are checked
	// before the checkpoints are fetched and loaded; the model then loads
	// while the image's pixels decode.
	type loaded struct {
		model *mam.Model
		err   error
		took  time.Duration
	}
	var loading chan loaded
	var background image.Image
	var inHeader time.Duration // the checks and downloads, not the decoding
	header := func(w, h int, format string) error {
		defer func(t time.Time) { inHeader = time.Since(t) }(time.Now())
		if err := cfg.prompt.ValidateFor(w, h); err != nil {
			return err
		}
		if cfg.composite != "" && cfg.compColor == nil {
			var err error
			if background, _, err = readImage(cfg.composite, mam.WithMaxPixels(cfg.maxPixels), mam.WithEXIF(cfg.exif)); err != nil {
				return fmt.Errorf("-composite: %w", err)
			}
		}
		setMemoryLimit(int64(w)*int64(h), cfg.text != "")
		ck, err := checkpoints(ctx, cfg, stderr)
		if err != nil {
			return err
		}
		if cfg.text != "" && cfg.vocabPath == "" { // a given one was checked with the flags
			if err := checkCaption(ck.vocab, cfg.text); err != nil {
				return err
			}
		}
		loading = make(chan loaded, 1)
		go func() {
			t0 := time.Now()
			var opts []mam.Option
			if cfg.preset != "" {
				opts = append(opts, mam.WithPreset(cfg.preset))
			}
			if cfg.text != "" {
				opts = append(opts, mam.WithDetector(ck.gdino, ck.vocab))
			}
			m, err := mam.Load(ctx, ck.sam, ck.mam, opts...)
			loading <- loaded{m, err, time.Since(t0)}
		}()
		return nil
	}
	t0 := time.Now()
	imgOpts := []mam.ImageOption{mam.WithMaxPixels(cfg.maxPixels), mam.WithEXIF(cfg.exif), mam.WithHeader(header)}
	var decoded image.Image
	var format string
	if cfg.image == "-" {
		decoded, format, err = mam.DecodeImage(stdin, imgOpts...)
		if errors.Is(err, mam.ErrImageFormat) || errors.Is(err, mam.ErrImageTooLarge) {
			err = fmt.Errorf("standard input: %w", err)
		}
	} else {
		decoded, format, err = readImage(cfg.image, imgOpts...)
	}
	if err != nil {
		return err
	}
	// One conversion to RGB serves the model and the outputs.
	img, err := mam.ToRGB(decoded)
	if err != nil {
		return err
	}
	decoded = nil
	b := img.Bounds()
	fmt.Fprintf(stderr, "image       %8.3fs (%dx%d %s)\n", (time.Since(t0) - inHeader).Seconds(), b.Dx(), b.Dy(), format)

	if loading == nil {
		return errors.New("the image was decoded without its header being read") // cannot happen
	}
	ld := <-loading
	if ld.err != nil {
		return ld.err
	}
	model := ld.model
	detector := ""
	if model.Detector != nil {
		detector = ", GroundingDINO " + model.Detector.Config().Name
	}
	fmt.Fprintf(stderr, "load        %8.3fs (SAM %s%s, while the image decoded)\n", ld.took.Seconds(), model.SAM.Name, detector)

	t0 = time.Now()
	sess, err := model.NewSession(ctx, img)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "encoder     %8.3fs\n", time.Since(t0).Seconds())

	var dets []gdino.Detection
	if cfg.text != "" {
		t0 = time.Now()
		r, err := sess.Detect(ctx, cfg.text, mam.WithThresholds(cfg.boxThr, cfg.textThr, cfg.nmsThr))
		if err != nil {
			return err
		}
		dets = r.Detections
		fmt.Fprintf(stderr, "detect      %8.3fs (%d boxes for %q)\n", time.Since(t0).Seconds(), len(dets), cfg.text)
		for i, d := range dets {
			fmt.Fprintf(stderr, "  %d  %.3f  [%.1f %.1f %.1f %.1f]  %s\n", i, d.Score, d.Box[0], d.Box[1], d.Box[2], d.Box[3], d.Phrase)
		}
		if len(dets) == 0 {
			return fmt.Errorf("-text %q: %w %g (-box-threshold); nothing written", cfg.text, mam.ErrNoDetection, cfg.boxThr)
		}
	}

	var dump mam.MatteOption // none without -dump
	var dumps []*mam.AtomicFile
	var derr error
	if cfg.dump != "" {
		if err := os.MkdirAll(cfg.dump, 0o755); err != nil {
			return fmt.Errorf("-dump: %w", err)
		}
		dump = mam.WithDump(func(name string, shape []int, data []float32) {
			if derr == nil {
				var f *mam.AtomicFile
				if f, derr = mam.CreateAtomic(filepath.Join(cfg.dump, name+".npy")); derr == nil {
					dumps = append(dumps, f)
					derr = weights.WriteNPY(f, &weights.Tensor{Shape: append([]int(nil), shape...), Stored: weights.Float32, F32: data})
				}
			}
		})
	}
	abortDumps := func() {
		for _, f := range dumps {
			f.Abort()
		}
	}
	t0 = time.Now()
	results, err := mattes(ctx, sess, cfg, dets, dump)
	if err == nil {
		err = derr
	}
	if err != nil {
		abortDumps()
		return err
	}
	res := results[0]
	switch {
	case cfg.all:
		fmt.Fprintf(stderr, "decode+m2m  %8.3fs (%d mattes, mode %s)\n", time.Since(t0).Seconds(), len(results), res.Mode)
	case cfg.semantic:
		res = mam.Union(results)
		fmt.Fprintf(stderr, "decode+m2m  %8.3fs (%d mattes merged, mode %s)\n", time.Since(t0).Seconds(), len(results), res.Mode)
	default:
		fmt.Fprintf(stderr, "decode+m2m  %8.3fs (IoU %.3f, mode %s)\n", time.Since(t0).Seconds(), res.IoU, res.Mode)
	}
	// The model is no longer needed: let its memory go before the outputs.
	model, sess = nil, nil

	targets := []target{{res: res, alpha: cfg.out, cutout: cfg.cutout, composite: cfg.compOut, mask: cfg.mask}}
	if cfg.all {
		if targets, err = allTargets(cfg, results); err != nil {
			abortDumps()
			return err
		}
	}
	var extra []extraFile
	if cfg.jsonOut != "" {
		b, err := detectionsJSON(dets)
		if err != nil {
			abortDumps()
			return err
		}
		extra = append(extra, extraFile{cfg.jsonOut, b})
	}

	t0 = time.Now()
	err = writeTargets(ctx, cfg, targets, extra, img, background, stdout, stderr)
	if err != nil {
		abortDumps()
		return err
	}
	for _, f := range dumps {
		if err := f.Commit(); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "write       %8.3fs\n", time.Since(t0).Seconds())
	return nil
}

// mattes mattes the prompt: one Result, or with -text the best box's (the
// box prompt, with the -point clicks), or with -all or -semantic every
// box's in the detections' order, as mam's MatteInstances does. The stages
// are dumped for the first matte only (the best box's).
func mattes(ctx context.Context, sess *mam.Session, cfg *config, dets []gdino.Detection, dump mam.MatteOption) ([]*mam.Result, error) {
	if cfg.text == "" {
		r, err := sess.Matte(ctx, cfg.prompt, mam.WithMode(cfg.mode), dump)
		if err != nil {
			return nil, err
		}
		return []*mam.Result{r}, nil
	}
	if !cfg.all && !cfg.semantic {
		dets = dets[:1]
	}
	out := make([]*mam.Result, 0, len(dets))
	for i, d := range dets {
		p := cfg.prompt
		p.Text = ""
		p.Box = &mam.Box{X0: float64(d.Box[0]), Y0: float64(d.Box[1]), X1: float64(d.Box[2]), Y1: float64(d.Box[3])}
		o := []mam.MatteOption{mam.WithMode(cfg.mode)}
		if i == 0 {
			o = append(o, dump)
		}
		r, err := sess.Matte(ctx, p, o...)
		if err != nil {
			return nil, fmt.Errorf("box %d [%.1f %.1f %.1f %.1f]: %w", i, d.Box[0], d.Box[1], d.Box[2], d.Box[3], err)
		}
		r.Detection = &dets[i]
		out = append(out, r)
	}
	return out, nil
}

// allTargets are the files of -all: alpha_<i>.png in the -o directory,
// and cutout_<i>.png, composite_<i>.png, mask_<i>.png in theirs, none of
// them the input image.
func allTargets(cfg *config, rs []*mam.Result) ([]target, error) {
	in := ""
	if cfg.image != "-" {
		in, _ = filepath.Abs(cfg.image)
	}
	var err error
	file := func(dir, kind string, i int) string {
		if dir == "" {
			return ""
		}
		p := filepath.Join(dir, fmt.Sprintf("%s_%d.png", kind, i))
		if abs, _ := filepath.Abs(p); abs == in && err == nil {
			err = fmt.Errorf("-all would overwrite the input image %s", cfg.image)
		}
		return p
	}
	ts := make([]target, len(rs))
	for i, r := range rs {
		ts[i] = target{res: r, alpha: file(cfg.out, "alpha", i), cutout: file(cfg.cutout, "cutout", i),
			composite: file(cfg.compOut, "composite", i), mask: file(cfg.mask, "mask", i)}
	}
	return ts, err
}

// jsonDetections is the -json file's layout, the detect command's.
type jsonDetections struct {
	Detections []jsonDetection `json:"detections"`
}

type jsonDetection struct {
	Box    [4]float32 `json:"box"`
	Score  float32    `json:"score"`
	Phrase string     `json:"phrase"`
}

// detectionsJSON is the -json file: the boxes after NMS, highest score
// first, in pixels of the image (unclipped).
func detectionsJSON(dets []gdino.Detection) ([]byte, error) {
	out := jsonDetections{Detections: []jsonDetection{}}
	for _, d := range dets {
		out.Detections = append(out.Detections, jsonDetection{Box: d.Box, Score: d.Score, Phrase: d.Phrase})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// setMemoryLimit sets a soft heap limit (unless GOMEMLIMIT is set) that
// keeps the peak resident memory of a ViT-B run near 1.3 GB for a photo
// of a few megapixels instead of letting garbage pile up between
// collections, with room for the per-pixel buffers of larger photos.
// GroundingDINO Swin-T (text prompts) adds 1 GB.
func setMemoryLimit(pixels int64, text bool) {
	if os.Getenv("GOMEMLIMIT") == "" {
		limit := 1200<<20 + 40*pixels
		if text {
			limit += 1000 << 20
		}
		debug.SetMemoryLimit(limit)
	}
}

// readImage decodes the image file at path; errors name the file, except
// those of a WithHeader callback, which are returned as they are.
func readImage(path string, opts ...mam.ImageOption) (image.Image, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, "", fmt.Errorf("%s is a directory", path)
	}
	img, format, err := mam.DecodeImage(f, opts...)
	if err != nil {
		if errors.Is(err, mam.ErrImageFormat) || errors.Is(err, mam.ErrImageTooLarge) {
			err = fmt.Errorf("%s: %w", path, err)
		}
		return nil, "", err
	}
	return img, format, nil
}

// ckpts are the checkpoint paths a run uses.
type ckpts struct {
	sam, mam     string
	gdino, vocab string // with -text
}

// checkpoints returns the checkpoint paths: the ones given, else the
// cached files, downloaded on first use (SAM and MAM ViT-B; with -text,
// GroundingDINO Swin-T and BERT's vocabulary).
func checkpoints(ctx context.Context, cfg *config, stderr io.Writer) (ckpts, error) {
	ck := ckpts{sam: cfg.samPath, mam: cfg.mamPath, gdino: cfg.gdinoPath, vocab: cfg.vocabPath}
	type want struct {
		path *string
		ck   mam.Checkpoint
		url  string
		what string
	}
	wants := []want{{&ck.sam, mam.SAMViTB, cfg.samURL, "SAM ViT-B"}, {&ck.mam, mam.MAMViTB, cfg.mamURL, "MAM ViT-B"}}
	if cfg.text != "" {
		wants = append(wants, want{&ck.gdino, mam.GDINOSwinT, cfg.gdinoURL, "GroundingDINO Swin-T"}, want{&ck.vocab, mam.BERTVocab, cfg.vocabURL, "BERT's vocabulary"})
	}
	var dir string
	for _, w := range wants {
		if *w.path != "" {
			continue
		}
		if dir == "" {
			var err error
			if dir, err = mam.CacheDir(); err != nil {
				return ckpts{}, err
			}
		}
		w.ck.URL = w.url
		if _, err := os.Stat(filepath.Join(dir, w.ck.Name)); err != nil {
			fmt.Fprintf(stderr, "downloading %s (first run only) from %s into %s\n", w.what, w.url, dir)
		}
		p, err := mam.Download(ctx, w.ck, dir, mam.DownloadOptions{Progress: stderr})
		if err != nil {
			return ckpts{}, err
		}
		*w.path = p
	}
	return ck, nil
}

// output is one file the command writes: under a temporary name until all
// are written, or to a buffer for standard output.
type output struct {
	path string
	file *mam.AtomicFile
	buf  *bytes.Buffer
}

// target is one matte and the paths its outputs go to ("" for none).
type target struct {
	res                            *mam.Result
	alpha, cutout, composite, mask string
}

// extraFile is one more output written as it is (the -json file).
type extraFile struct {
	path string
	data []byte
}

// writeOutputs writes every output asked for of one matte; on any error
// none is left behind.
func writeOutputs(ctx context.Context, cfg *config, res *mam.Result, img, background image.Image, stdout, stderr io.Writer) error {
	return writeTargets(ctx, cfg, []target{{res: res, alpha: cfg.out, cutout: cfg.cutout, composite: cfg.compOut, mask: cfg.mask}}, nil, img, background, stdout, stderr)
}

// writeTargets writes every output of every target, and the extra files;
// on any error none is left behind (the files written so far are removed,
// nothing goes to stdout). The directories of -all are created first.
func writeTargets(ctx context.Context, cfg *config, targets []target, extra []extraFile, img, background image.Image, stdout, stderr io.Writer) error {
	var outs []*output
	ok := false
	defer func() {
		if !ok {
			for _, o := range outs {
				if o.file != nil {
					o.file.Abort()
				}
			}
		}
	}()
	save := func(path string, fill func(io.Writer) error) error {
		o := &output{path: path}
		var w io.Writer
		if path == "-" {
			o.buf = new(bytes.Buffer)
			w = o.buf
		} else {
			if cfg.all {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					return err
				}
			}
			f, err := mam.CreateAtomic(path)
			if err != nil {
				return err
			}
			o.file, w = f, f
		}
		outs = append(outs, o)
		return fill(w)
	}
	savePNG := func(path string, im image.Image) error {
		return save(path, func(w io.Writer) error { return mam.EncodePNG(w, im, cfg.png) })
	}
	var fgTime time.Duration
	fgCount := 0
	for _, t := range targets {
		res := t.res
		var alpha image.Image = res.Gray()
		if cfg.bits == 16 {
			alpha = res.Gray16()
		}
		if err := savePNG(t.alpha, alpha); err != nil {
			return err
		}
		var oopts []mam.OutputOption
		if cfg.plain {
			oopts = append(oopts, mam.WithPlainColors())
		}
		// The composite is made from the cutout's colours when there is
		// one, so that the foreground is estimated once.
		colors := img
		if t.cutout != "" {
			t0 := time.Now()
			cut, err := res.Cutout(img, oopts...)
			if err != nil {
				return err
			}
			fgTime += time.Since(t0)
			fgCount++
			var im image.Image = cut
			if cfg.premul {
				p, err := res.CutoutPremultiplied(cut, mam.WithPlainColors())
				if err != nil {
					return err
				}
				// The premultiplied values, written as they are.
				im = &image.NRGBA{Pix: p.Pix, Stride: p.Stride, Rect: p.Rect}
			}
			if err := savePNG(t.cutout, im); err != nil {
				return err
			}
			colors, oopts = cut, []mam.OutputOption{mam.WithPlainColors()}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if t.composite != "" {
			t0 := time.Now()
			var comp image.Image
			var err error
			if cfg.compColor != nil {
				comp, err = res.Composite(colors, *cfg.compColor, oopts...)
			} else {
				comp, err = res.CompositeOver(colors, background, oopts...)
			}
			if err != nil {
				return err
			}
			if t.cutout == "" {
				fgTime += time.Since(t0)
				fgCount++
			}
			if err := savePNG(t.composite, comp); err != nil {
				return err
			}
		}
		if t.mask != "" {
			if err := savePNG(t.mask, res.MaskImage()); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if fgCount > 0 && !cfg.plain {
		if fgCount > 1 {
			fmt.Fprintf(stderr, "foreground  %8.3fs (%d mattes)\n", fgTime.Seconds(), fgCount)
		} else {
			fmt.Fprintf(stderr, "foreground  %8.3fs\n", fgTime.Seconds())
		}
	}
	for _, e := range extra {
		if err := save(e.path, func(w io.Writer) error { _, err := w.Write(e.data); return err }); err != nil {
			return err
		}
	}
	for i, o := range outs {
		if o.file != nil {
			if err := o.file.Commit(); err != nil {
				for _, later := range outs[i+1:] {
					if later.file != nil {
						later.file.Abort()
					}
				}
				ok = true // the committed files are complete; the rest are gone
				return err
			}
		}
	}
	ok = true
	for _, o := range outs {
		if o.buf != nil {
			if _, err := stdout.Write(o.buf.Bytes()); err != nil {
				return fmt.Errorf("standard output: %w", err)
			}
		} else {
			fmt.Fprintf(stderr, "wrote %s\n", o.path)
		}
	}
	return nil
}
