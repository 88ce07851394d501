// Command detect finds the objects a caption describes with GroundingDINO,
// the open-vocabulary detector Matting Anything uses for text prompts.
//
//	go run ./examples/detect -image photo.jpg -text "the dog . the cat ." -json boxes.json -o boxes.png
//
// -gdino and -vocab name the checkpoint (groundingdino_swint_ogc.pth as
// released, or its .npz) and BERT's vocab.txt; by default both are taken
// from the user cache directory ($MAM_CACHE or ~/.cache/mam-go), downloaded
// there on first use. -json writes {"detections": [{"box": [x0,y0,x1,y1],
// "score": s, "phrase": p}, ...]} (after NMS, highest score first, boxes in
// pixels of the image, unclipped); -o draws the boxes and phrases on the
// image; -dump DIR writes every stage as .npy under the names of the golden
// reference data. Stage times go to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/gif"
	_ "image/jpeg"
	"image/png"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/mam-go/mam-go/gdino"
	"github.com/mam-go/mam-go/mam"
	"github.com/mam-go/mam-go/weights"
)

func main() {
	// A soft heap limit keeps the peak resident memory of a Swin-T run near
	// 1 GB (weights included) instead of letting garbage pile up between
	// collections; GOMEMLIMIT overrides it.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(1000 << 20)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "detect:", err)
		os.Exit(1)
	}
}

type config struct {
	ckpt, vocab, image, text, jsonOut, boxesOut, dump string
	opt                                               gdino.Options
	maxPixels                                         int
}

func parse(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("detect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{opt: gdino.DefaultOptions()}
	fs.StringVar(&c.ckpt, "gdino", "", "GroundingDINO checkpoint (.pth or .npz; default: the cached Swin-T OGC, downloaded on first use)")
	fs.StringVar(&c.vocab, "vocab", "", "BERT vocab.txt (default: the cached bert-base-uncased vocabulary)")
	fs.StringVar(&c.image, "image", "", "input image (PNG, JPEG, GIF)")
	fs.StringVar(&c.text, "text", "", `caption, e.g. "dog . cat ." (phrases separated by " . ")`)
	box := fs.Float64("box-threshold", 0.25, "keep boxes scoring above this")
	txt := fs.Float64("text-threshold", 0.25, "tokens above this make a box's phrase")
	nms := fs.Float64("nms", 0.5, "NMS drops boxes overlapping a better one by more than this IoU")
	fs.StringVar(&c.jsonOut, "json", "", "write the detections as JSON to this file (- for stdout)")
	fs.StringVar(&c.boxesOut, "o", "", "write the image with the boxes and phrases drawn (PNG)")
	fs.StringVar(&c.dump, "dump", "", "write every stage as .npy into this directory")
	fs.IntVar(&c.maxPixels, "max-pixels", 64<<20, "refuse images with more pixels than this")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: detect -image IMG -text CAPTION [-json OUT] [-o boxes.png] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case c.image == "":
		return nil, fmt.Errorf("-image is required")
	case strings.TrimSpace(c.text) == "":
		return nil, fmt.Errorf("-text is required")
	}
	for _, t := range []struct {
		name string
		v    float64
	}{{"-box-threshold", *box}, {"-text-threshold", *txt}, {"-nms", *nms}} {
		if !(t.v >= 0 && t.v <= 1) {
			return nil, fmt.Errorf("%s %v: want a value in [0, 1]", t.name, t.v)
		}
	}
	c.opt.BoxThreshold, c.opt.TextThreshold, c.opt.NMSThreshold = float32(*box), float32(*txt), float32(*nms)
	c.opt.MaxPixels = c.maxPixels
	for _, p := range []string{c.jsonOut, c.boxesOut} {
		if p != "" && p != "-" {
			if fi, err := os.Stat(filepath.Dir(p)); err != nil || !fi.IsDir() {
				return nil, fmt.Errorf("output %s: no directory %s", p, filepath.Dir(p))
			}
		}
	}
	return c, nil
}

// output is the -json file's layout.
type output struct {
	Detections []detection `json:"detections"`
}

type detection struct {
	Box    [4]float32 `json:"box"`
	Score  float32    `json:"score"`
	Phrase string     `json:"phrase"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parse(args, stderr)
	if err != nil {
		return err
	}
	img, err := readImage(c.image, c.maxPixels)
	if err != nil {
		return err
	}
	start := time.Now()
	if c.ckpt == "" || c.vocab == "" {
		dir, err := mam.CacheDir()
		if err != nil {
			return err
		}
		for _, f := range []struct {
			path *string
			ck   mam.Checkpoint
		}{{&c.ckpt, mam.GDINOSwinT}, {&c.vocab, mam.BERTVocab}} {
			if *f.path == "" {
				if *f.path, err = mam.Download(ctx, f.ck, dir, mam.DownloadOptions{Progress: stderr}); err != nil {
					return err
				}
			}
		}
	}
	det, err := gdino.Load(ctx, c.ckpt, c.vocab)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "load: %v (%s)\n", time.Since(start).Round(time.Millisecond), det.Config().Name)
	opt := c.opt
	opt.Stage = func(name string, d time.Duration) { fmt.Fprintf(stderr, "%s: %v\n", name, d.Round(time.Millisecond)) }
	var dumpErr error
	if c.dump != "" {
		if err := os.MkdirAll(c.dump, 0o755); err != nil {
			return err
		}
		opt.Dump = func(name string, shape []int, data []float32) {
			if err := writeStage(c.dump, name, shape, data); err != nil && dumpErr == nil {
				dumpErr = err
			}
		}
	}
	res, err := det.Detect(ctx, img, c.text, opt)
	if err != nil {
		return err
	}
	if dumpErr != nil {
		return dumpErr
	}
	fmt.Fprintf(stderr, "total: %v, %d detections\n", time.Since(start).Round(time.Millisecond), len(res.Detections))
	out := output{Detections: []detection{}}
	for _, d := range res.Detections {
		out.Detections = append(out.Detections, detection{Box: d.Box, Score: d.Score, Phrase: d.Phrase})
	}
	if c.jsonOut != "" {
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		b = append(b, '\n')
		if c.jsonOut == "-" {
			if _, err := stdout.Write(b); err != nil {
				return err
			}
		} else if err := writeFile(c.jsonOut, func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
			return err
		}
	}
	if c.boxesOut != "" {
		canvas := drawBoxes(img, res.Detections)
		if err := writeFile(c.boxesOut, func(w io.Writer) error { return png.Encode(w, canvas) }); err != nil {
			return err
		}
	}
	if c.jsonOut == "" && c.boxesOut == "" {
		for _, d := range out.Detections {
			fmt.Fprintf(stdout, "%.3f  [%.1f %.1f %.1f %.1f]  %s\n", d.Score, d.Box[0], d.Box[1], d.Box[2], d.Box[3], d.Phrase)
		}
	}
	return nil
}

// readImage decodes an image after checking its declared size against the
// pixel limit, so a decompression bomb is refused before it is decoded.
func readImage(path string, maxPixels int) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg, _, err := image.DecodeConfig(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > int64(maxPixels) {
		return nil, fmt.Errorf("%s: %dx%d pixels (limit %d)", path, cfg.Width, cfg.Height, maxPixels)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// writeFile writes through a temporary file in the target's directory,
// renamed into place only when fill succeeds: no partial output.
func writeFile(path string, fill func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".detect-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := fill(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Stage tensors the golden data stores as integers or booleans.
var (
	intStages  = map[string]bool{"input_ids": true, "position_ids": true, "token_type_ids": true, "attention_mask": true, "topk_proposals": true, "spatial_shapes": true, "level_start_index": true}
	boolStages = map[string]bool{"text_self_attention_masks": true, "text_token_mask": true, "cate_to_token_mask": true, "mask_flatten": true}
)

func writeStage(dir, name string, shape []int, data []float32) error {
	t := &weights.Tensor{Shape: shape, Stored: weights.Float32, F32: data}
	switch {
	case intStages[name]:
		t.Stored, t.F32, t.I64 = weights.Int64, nil, make([]int64, len(data))
		for i, v := range data {
			t.I64[i] = int64(v)
		}
	case boolStages[name] || strings.HasPrefix(name, "mask_l"):
		t.Stored = weights.Bool
	}
	return writeFile(filepath.Join(dir, name+".npy"), func(w io.Writer) error { return weights.WriteNPY(w, t) })
}

// drawBoxes returns img with each detection's box outlined and its score
// and phrase written above it.
func drawBoxes(img image.Image, dets []gdino.Detection) *image.RGBA {
	b := img.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(out, out.Bounds(), img, b.Min, draw.Src)
	palette := []color.RGBA{{255, 64, 64, 255}, {64, 200, 64, 255}, {64, 128, 255, 255}, {255, 200, 0, 255}, {200, 64, 255, 255}}
	thick := max(1, min(b.Dx(), b.Dy())/300)
	for i, d := range dets {
		col := palette[i%len(palette)]
		x0, y0, x1, y1 := int(d.Box[0]), int(d.Box[1]), int(d.Box[2]), int(d.Box[3])
		for t := 0; t < thick; t++ {
			for x := x0; x <= x1; x++ {
				setIn(out, x, y0+t, col)
				setIn(out, x, y1-t, col)
			}
			for y := y0; y <= y1; y++ {
				setIn(out, x0+t, y, col)
				setIn(out, x1-t, y, col)
			}
		}
		label := fmt.Sprintf("%.2f %s", d.Score, d.Phrase)
		face := basicfont.Face7x13
		w := font.MeasureString(face, label).Ceil()
		ty := max(y0, 13)
		draw.Draw(out, image.Rect(x0, ty-13, x0+w+2, ty), &image.Uniform{col}, image.Point{}, draw.Over)
		dr := font.Drawer{Dst: out, Src: image.White, Face: face, Dot: fixed.P(x0+1, ty-3)}
		dr.DrawString(label)
	}
	return out
}

func setIn(m *image.RGBA, x, y int, c color.RGBA) {
	if image.Pt(x, y).In(m.Rect) {
		m.SetRGBA(x, y, c)
	}
}
