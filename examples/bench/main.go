// Command bench runs Matting Anything over the benchmarks of the paper and
// scores alpha mattes with the reference's metrics (package metrics).
//
// Predict a benchmark, then score the predictions:
//
//	bench -benchmark am2k -images AM2K/validation/original -gt AM2K/validation/mask \
//	      -out outputs/am2k -sam sam_vit_b_01ec64.pth -mam mam_vitb.pth \
//	      [-prompt box|point] [-trimap AM2K/validation/trimap] [-csv am2k.csv] [-md am2k.md]
//
// The prompt of every image is derived from its ground-truth alpha as
// inference_benchmark.py does (threshold 127; the foreground's bounding box,
// or its centre as one point) and the matte is refined in the benchmark's
// mode: postprocess for PPM-100, AM2K, PM-10K and RWP636, maskguide for
// HIM2K and RefMatte-RW100 (-mode overrides). Predicted alphas are written
// as 8-bit grayscale PNGs named like the image (HIM2K: one folder per image,
// one PNG per instance). Images already predicted are skipped, so an
// interrupted run resumes where it stopped (-overwrite predicts again).
//
// Text prompts, as the reference runs RefMatte-RW100 with --prompt text:
//
//	bench -benchmark rw100 -prompt text -images RW100/image -gt RW100/mask \
//	      -text-json RW100/refmatte_rw100_label.json -index-json RW100/rw100_index.json \
//	      -out outputs/rw100_text -sam sam_vit_b_01ec64.pth -mam mam_vitb.pth \
//	      -gdino groundingdino_swint_ogc.pth -vocab vocab.txt
//
// The caption of image X is text[stem(X)]["expressions"][index[text[stem(X)]["image_name"]]]
// (-text-json: {"<stem>": {"image_name": "...", "expressions": [...]}, ...};
// -index-json: {"<image_name>": <index>, ...}); GroundingDINO finds its
// boxes with the reference's thresholds (box 0.25, text 0.5, NMS IoU 0.8)
// and the best box is the box prompt. An image without annotations, or
// whose caption matches nothing, fails with a message; the others go on.
//
// Score existing predictions alone:
//
//	bench -pred outputs/ppm100 -gt PPM-100/matte [-trimap DIR [-detail]] [-csv FILE] [-md FILE]
//
// Every ground-truth image under -gt is matched with the PNG of the same
// name (stem + ".png") under -pred. Without -trimap the metrics cover the
// whole image, as the reference's evaluation scripts report them; with it,
// the pixels where trimap == 128, or trimap > 0 with -detail (the "Detail
// Region" of the AM2K and P3M-10K scripts). The mean of every measure is
// printed as a markdown table (and written with -md); -csv writes one row per
// image (name,sad,mse,mad,grad,conn) and a last row named mean. For HIM2K the
// paper reports IMQ, which this command does not compute: its rows are
// per-instance errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/mam-go/mam-go/mam"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command-line flags.
type options struct {
	benchmark, images, gt, out, pred, trimap string
	samPath, mamPath                         string
	gdinoPath, vocabPath                     string // -prompt text
	textJSON, indexJSON                      string // -prompt text: RefMatte-RW100's annotations
	prompt, mode, metrics, csv, md, name     string
	detail, overwrite, quiet                 bool
}

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("usage")

// run is the command: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.benchmark, "benchmark", "", "benchmark: ppm100, am2k, pm10k, rwp636, him2k or rw100 (prediction mode)")
	fs.StringVar(&o.images, "images", "", "folder of input images (prediction mode)")
	fs.StringVar(&o.gt, "gt", "", "folder of ground-truth alphas (HIM2K: one folder per image)")
	fs.StringVar(&o.out, "out", "", "folder the predicted alphas are written to (prediction mode)")
	fs.StringVar(&o.pred, "pred", "", "folder of predicted alphas to score (evaluation only)")
	fs.StringVar(&o.trimap, "trimap", "", "folder of trimaps: score only where trimap == 128")
	fs.BoolVar(&o.detail, "detail", false, "with -trimap, score where trimap > 0 (AM2K/P3M-10K \"Detail Region\")")
	fs.StringVar(&o.samPath, "sam", "", "SAM checkpoint (.pth or .npz)")
	fs.StringVar(&o.mamPath, "mam", "", "MAM checkpoint (.pth or .npz)")
	fs.StringVar(&o.prompt, "prompt", "box", "prompt: box or point (derived from the ground truth), or text (rw100: the annotations' expression, boxed by GroundingDINO)")
	fs.StringVar(&o.textJSON, "text-json", "", "-prompt text: RefMatte-RW100's expressions, {\"<image stem>\": {\"image_name\": ..., \"expressions\": [...]}, ...}")
	fs.StringVar(&o.indexJSON, "index-json", "", "-prompt text: which expression of each image, {\"<image_name>\": <index>, ...}")
	fs.StringVar(&o.gdinoPath, "gdino", "", "-prompt text: GroundingDINO checkpoint (.pth or .npz)")
	fs.StringVar(&o.vocabPath, "vocab", "", "-prompt text: BERT vocab.txt")
	fs.StringVar(&o.mode, "mode", "", "refinement mode overriding the benchmark's: postprocess, maskguide or plain")
	fs.BoolVar(&o.overwrite, "overwrite", false, "predict again images already predicted")
	fs.StringVar(&o.metrics, "metrics", "sad,mse,mad,grad,conn", "measures to compute")
	fs.StringVar(&o.csv, "csv", "", "write per-image scores and their mean as CSV to this file")
	fs.StringVar(&o.md, "md", "", "write the markdown table of mean scores to this file")
	fs.StringVar(&o.name, "name", "", "name of the set in the table (default: the benchmark or the -pred folder)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage:\n  bench -benchmark NAME -images DIR -gt DIR -out DIR -sam FILE -mam FILE [flags]\n  bench -benchmark rw100 -prompt text -text-json FILE -index-json FILE -gdino FILE -vocab FILE -images DIR -gt DIR -out DIR -sam FILE -mam FILE [flags]\n  bench -pred DIR -gt DIR [-trimap DIR] [flags]\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	err := runOptions(ctx, o, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "bench: %v\n", err)
		fs.Usage()
		return 2
	default:
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
}

// runOptions predicts (unless -pred) and scores.
func runOptions(ctx context.Context, o options, stdout, stderr io.Writer) error {
	set, err := parseMetrics(o.metrics)
	if err != nil {
		return fmt.Errorf("%w: -metrics: %v", errUsage, err)
	}
	reg := regionWhole
	if o.trimap != "" {
		reg = regionUnknown
		if o.detail {
			reg = regionDetail
		}
	} else if o.detail {
		return fmt.Errorf("%w: -detail needs -trimap", errUsage)
	}
	if o.gt == "" {
		return fmt.Errorf("%w: -gt is required", errUsage)
	}
	bar := func(label string, n int) *progress {
		if o.quiet {
			return nil
		}
		return newProgress(stderr, label, n, isTerminal(stderr))
	}

	var pairs []pair
	var failed []string
	title := o.name
	if o.pred != "" {
		// Evaluation only.
		if o.images != "" || o.out != "" || o.benchmark != "" {
			return fmt.Errorf("%w: -pred scores existing predictions; -images, -out and -benchmark are for prediction", errUsage)
		}
		var missing []string
		pairs, missing, err = pairsFromDirs(o.pred, o.gt, o.trimap)
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			fmt.Fprintf(stderr, "bench: %d ground truths have no prediction in %s (first: %s)\n", len(missing), o.pred, missing[0])
		}
		if title == "" {
			title = filepath.Base(filepath.Clean(o.pred))
		}
	} else {
		if o.benchmark == "" || o.images == "" || o.out == "" || o.samPath == "" || o.mamPath == "" {
			return fmt.Errorf("%w: prediction needs -benchmark, -images, -gt, -out, -sam and -mam (or -pred to score existing predictions)", errUsage)
		}
		b, err := findBenchmark(o.benchmark)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		mode := b.Mode
		if o.mode != "" {
			if mode, err = mam.ParseMode(o.mode); err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
		}
		var captions *textAnnotations
		switch o.prompt {
		case "box", "point":
			if o.textJSON != "" || o.indexJSON != "" || o.gdinoPath != "" || o.vocabPath != "" {
				return fmt.Errorf("%w: -text-json, -index-json, -gdino and -vocab are for -prompt text", errUsage)
			}
		case "text":
			if b.Name != "rw100" {
				return fmt.Errorf("%w: -prompt text is for rw100 (RefMatte-RW100's referring expressions), not %s", errUsage, b.Name)
			}
			if o.textJSON == "" || o.indexJSON == "" || o.gdinoPath == "" || o.vocabPath == "" {
				return fmt.Errorf("%w: -prompt text needs -text-json, -index-json, -gdino and -vocab", errUsage)
			}
			if captions, err = loadTextAnnotations(o.textJSON, o.indexJSON); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: -prompt %q: want box, point or text", errUsage, o.prompt)
		}
		items, missing, err := listItems(b, o.images, o.gt)
		if err != nil {
			return err
		}
		for _, m := range missing {
			fmt.Fprintf(stderr, "bench: %s: no ground truth in %s, skipped\n", m, o.gt)
		}
		if len(items) == 0 {
			return fmt.Errorf("no image of %s has a ground truth in %s", o.images, o.gt)
		}
		files := modelFiles{sam: o.samPath, mam: o.mamPath}
		if o.prompt == "text" {
			files.gdino, files.vocab = o.gdinoPath, o.vocabPath
		}
		m, err := loadModel(ctx, files)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: %s: %d mattes, mode %s, %s prompts, into %s\n", b.Name, len(items), mode, o.prompt, o.out)
		st, err := predict(ctx, m, items, predictConfig{OutDir: o.out, Mode: mode, Prompt: o.prompt, Captions: captions, Overwrite: o.overwrite}, bar("predict", len(items)))
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: predicted %d, kept %d already predicted, %d failed\n", st.Done, st.Skipped, len(st.Failed))
		for _, f := range st.Failed {
			fmt.Fprintf(stderr, "bench: failed: %s\n", f)
		}
		failed = st.Failed
		if pairs, err = pairsFromItems(items, o.out, o.gt, o.trimap); err != nil {
			return err
		}
		if title == "" {
			title = b.Name
		}
		if b.Instances {
			fmt.Fprintf(stderr, "bench: %s is scored with IMQ in the paper; the table gives per-instance errors\n", b.Name)
		}
	}
	if len(pairs) == 0 {
		return errors.New("nothing to score")
	}
	rows, err := evaluate(ctx, pairs, reg, set, bar("score", len(pairs)))
	if err != nil {
		return err
	}
	if err := writeMarkdown(stdout, title, rows, reg, set); err != nil {
		return err
	}
	if o.md != "" {
		if err := writeFile(o.md, func(w io.Writer) error { return writeMarkdown(w, title, rows, reg, set) }); err != nil {
			return err
		}
	}
	if o.csv != "" {
		if err := writeFile(o.csv, func(w io.Writer) error { return writeCSV(w, rows, set) }); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d predictions failed", len(failed))
	}
	return nil
}

// isTerminal reports whether w is a character device (a terminal), where
// the progress bar redraws in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
