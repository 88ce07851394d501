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
package main

import (
	"bytes"
	"context"
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
var packagePrefix = regexp.MustCompile(`(^|: )(?:mam|sam|m2m|nn|weights|png|jpeg|gif|webp|image): `)

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
		_, _, err := checkpoints(ctx, cfg, stderr)
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
		setMemoryLimit(int64(w) * int64(h))
		samPath, mamPath, err := checkpoints(ctx, cfg, stderr)
		if err != nil {
			return err
		}
		loading = make(chan loaded, 1)
		go func() {
			t0 := time.Now()
			var opts []mam.Option
			if cfg.preset != "" {
				opts = append(opts, mam.WithPreset(cfg.preset))
			}
			m, err := mam.Load(ctx, samPath, mamPath, opts...)
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
	fmt.Fprintf(stderr, "load        %8.3fs (SAM %s, while the image decoded)\n", ld.took.Seconds(), model.SAM.Name)

	t0 = time.Now()
	sess, err := model.NewSession(ctx, img)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "encoder     %8.3fs\n", time.Since(t0).Seconds())

	mopts := []mam.MatteOption{mam.WithMode(cfg.mode)}
	var dumps []*mam.AtomicFile
	var derr error
	if cfg.dump != "" {
		if err := os.MkdirAll(cfg.dump, 0o755); err != nil {
			return fmt.Errorf("-dump: %w", err)
		}
		mopts = append(mopts, mam.WithDump(func(name string, shape []int, data []float32) {
			if derr == nil {
				var f *mam.AtomicFile
				if f, derr = mam.CreateAtomic(filepath.Join(cfg.dump, name+".npy")); derr == nil {
					dumps = append(dumps, f)
					derr = weights.WriteNPY(f, &weights.Tensor{Shape: append([]int(nil), shape...), Stored: weights.Float32, F32: data})
				}
			}
		}))
	}
	abortDumps := func() {
		for _, f := range dumps {
			f.Abort()
		}
	}
	t0 = time.Now()
	res, err := sess.Matte(ctx, cfg.prompt, mopts...)
	if err == nil {
		err = derr
	}
	if err != nil {
		abortDumps()
		return err
	}
	fmt.Fprintf(stderr, "decode+m2m  %8.3fs (IoU %.3f, mode %s)\n", time.Since(t0).Seconds(), res.IoU, res.Mode)
	// The model is no longer needed: let its memory go before the outputs.
	model, sess = nil, nil

	t0 = time.Now()
	err = writeOutputs(ctx, cfg, res, img, background, stdout, stderr)
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

// setMemoryLimit sets a soft heap limit (unless GOMEMLIMIT is set) that
// keeps the peak resident memory of a ViT-B run near 1.3 GB for a photo
// of a few megapixels instead of letting garbage pile up between
// collections, with room for the per-pixel buffers of larger photos.
func setMemoryLimit(pixels int64) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(1200<<20 + 40*pixels)
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

// checkpoints returns the SAM and MAM checkpoint paths: the ones given,
// else the cached ViT-B files, downloaded on first use.
func checkpoints(ctx context.Context, cfg *config, stderr io.Writer) (string, string, error) {
	samPath, mamPath := cfg.samPath, cfg.mamPath
	if samPath != "" && mamPath != "" {
		return samPath, mamPath, nil
	}
	dir, err := mam.CacheDir()
	if err != nil {
		return "", "", err
	}
	get := func(ck mam.Checkpoint, url, what string) (string, error) {
		ck.URL = url
		if _, err := os.Stat(filepath.Join(dir, ck.Name)); err != nil {
			fmt.Fprintf(stderr, "downloading %s (first run only) from %s into %s\n", what, url, dir)
		}
		return mam.Download(ctx, ck, dir, mam.DownloadOptions{Progress: stderr})
	}
	if samPath == "" {
		if samPath, err = get(mam.SAMViTB, cfg.samURL, "SAM ViT-B"); err != nil {
			return "", "", err
		}
	}
	if mamPath == "" {
		if mamPath, err = get(mam.MAMViTB, cfg.mamURL, "MAM ViT-B"); err != nil {
			return "", "", err
		}
	}
	return samPath, mamPath, nil
}

// output is one file the command writes: under a temporary name until all
// are written, or to a buffer for standard output.
type output struct {
	path string
	file *mam.AtomicFile
	buf  *bytes.Buffer
}

// writeOutputs writes every output asked for; on any error none is left
// behind (the files written so far are removed, nothing goes to stdout).
func writeOutputs(ctx context.Context, cfg *config, res *mam.Result, img, background image.Image, stdout, stderr io.Writer) error {
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
	save := func(path string, im image.Image) error {
		o := &output{path: path}
		var w io.Writer
		if path == "-" {
			o.buf = new(bytes.Buffer)
			w = o.buf
		} else {
			f, err := mam.CreateAtomic(path)
			if err != nil {
				return err
			}
			o.file, w = f, f
		}
		outs = append(outs, o)
		return mam.EncodePNG(w, im, cfg.png)
	}
	var alpha image.Image = res.Gray()
	if cfg.bits == 16 {
		alpha = res.Gray16()
	}
	if err := save(cfg.out, alpha); err != nil {
		return err
	}
	var oopts []mam.OutputOption
	if cfg.plain {
		oopts = append(oopts, mam.WithPlainColors())
	}
	// The composite is made from the cutout's colours when there is one,
	// so that the foreground is estimated once.
	colors := img
	if cfg.cutout != "" {
		t0 := time.Now()
		cut, err := res.Cutout(img, oopts...)
		if err != nil {
			return err
		}
		if !cfg.plain {
			fmt.Fprintf(stderr, "foreground  %8.3fs\n", time.Since(t0).Seconds())
		}
		var im image.Image = cut
		if cfg.premul {
			p, err := res.CutoutPremultiplied(cut, mam.WithPlainColors())
			if err != nil {
				return err
			}
			// The premultiplied values, written as they are.
			im = &image.NRGBA{Pix: p.Pix, Stride: p.Stride, Rect: p.Rect}
		}
		if err := save(cfg.cutout, im); err != nil {
			return err
		}
		colors, oopts = cut, []mam.OutputOption{mam.WithPlainColors()}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if cfg.composite != "" {
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
		if cfg.cutout == "" && !cfg.plain {
			fmt.Fprintf(stderr, "foreground  %8.3fs\n", time.Since(t0).Seconds())
		}
		if err := save(cfg.compOut, comp); err != nil {
			return err
		}
	}
	if cfg.mask != "" {
		if err := save(cfg.mask, res.MaskImage()); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
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
