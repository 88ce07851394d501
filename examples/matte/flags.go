package main

import (
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/mam-go/mam-go/gdino"
	"github.com/mam-go/mam-go/mam"
)

// config is the command line, parsed and checked: everything that can be
// wrong with it is found before an image is read or a model loaded.
type config struct {
	samPath, mamPath string // "" for the cached ViT-B checkpoints
	samURL, mamURL   string
	download         bool // fetch the checkpoints only (unless -image is given)
	preset           string

	// Text prompts: GroundingDINO finds the boxes text describes.
	text                    string // "" without -text
	gdinoPath, vocabPath    string // "" for the cached Swin-T and vocabulary
	gdinoURL, vocabURL      string
	boxThr, textThr, nmsThr float32
	jsonOut                 string // the detections as JSON; "-" for standard output
	all                     bool   // one matte per detection, into directories
	semantic                bool   // the union of the detections' mattes

	image     string // "-" for standard input
	exif      bool
	maxPixels int64
	prompt    mam.Prompt
	mode      mam.Mode

	out        string // alpha matte; "-" for standard output
	bits       int
	cutout     string
	premul     bool
	plain      bool
	composite  string // a colour or an image file
	compColor  *color.RGBA
	compOut    string
	mask       string // with -all, -o, -cutout, -composite-out and -mask are directories
	dump       string
	png        mam.PNGCompression
	threads    int
	outputsDir string // the default outputs' directory, created when used
}

// errHelp is returned for -h: the usage went to standard output.
var errHelp = errors.New("help requested")

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

type pointList []mam.Point

func (p *pointList) String() string { return "" }
func (p *pointList) Set(s string) error {
	v, err := floats(s)
	if err != nil || (len(v) != 2 && len(v) != 3) {
		return fmt.Errorf("want x,y or x,y,label, got %q", s)
	}
	pt := mam.Point{X: v[0], Y: v[1], Label: 1}
	if len(v) == 3 {
		if v[2] != 0 && v[2] != 1 {
			return fmt.Errorf("label %v: want 0 (background) or 1 (foreground)", v[2])
		}
		pt.Label = int(v[2])
	}
	*p = append(*p, pt)
	return nil
}

func floats(s string) ([]float64, error) {
	parts := strings.Split(s, ",")
	out := make([]float64, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

const usageHead = `matte cuts an object out of a photo with Matting Anything.

Usage:
  go run ./examples/matte -image photo.jpg -box x0,y0,x1,y1 [flags]
  go run ./examples/matte -image photo.jpg -text "the dog" [-all | -semantic] [-json boxes.json] [flags]

The box (or -point clicks) is in pixels of the photo as a viewer shows it.
-text finds the object with GroundingDINO: its best box is the box prompt
(-point clicks may be added; -box may not). -all mattes every box found
(-o, -cutout, -composite-out and -mask then name directories holding
alpha_<i>.png, cutout_<i>.png, composite_<i>.png and mask_<i>.png, i
counting the boxes from 0, highest score first); -semantic writes their
union (the pixelwise maximum) as one matte. A text that matches nothing is
an error and writes nothing, -all included.
Without -sam and -mam, SAM ViT-B and MAM ViT-B are taken from the cache
directory ($MAM_CACHE, else %s), downloaded there on first use
(about 400 MB; MAM_SAM_URL, MAM_MAM_URL or MAM_MIRROR point elsewhere);
with -text and without -gdino and -vocab, GroundingDINO Swin-T and BERT's
vocabulary likewise (about 700 MB; MAM_GDINO_URL, MAM_VOCAB_URL).
Outputs go to out/ unless -o says otherwise; "-" is standard input or output.
Threads: all cores, or GOMAXPROCS, or -threads.

Flags:
`

// defaultURL is the download URL of ck: $env, else $MAM_MIRROR/name,
// else the published one.
func defaultURL(env string, ck mam.Checkpoint) string {
	if u := os.Getenv(env); u != "" {
		return u
	}
	if m := os.Getenv("MAM_MIRROR"); m != "" {
		return strings.TrimRight(m, "/") + "/" + ck.Name
	}
	return ck.URL
}

// parseFlags parses and checks the command line. Usage goes to stdout for
// -h; parse errors are returned as one line.
func parseFlags(args []string, stdout io.Writer) (*config, error) {
	fs := flag.NewFlagSet("matte", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		c         config
		points    pointList
		boxFlag   string
		modeFlag  string
		pngFlag   string
		maxPixels string
		thr       [3]float64 // -box-threshold, -text-threshold, -nms
	)
	fs.StringVar(&c.image, "image", "", "input image: PNG, JPEG, GIF or WebP (\"-\" reads standard input)")
	fs.StringVar(&boxFlag, "box", "", "box prompt `x0,y0,x1,y1` in pixels")
	fs.Var(&points, "point", "point prompt `x,y[,label]` (repeatable; label 1 = foreground, the default, 0 = background)")
	fs.StringVar(&c.out, "o", "", "alpha matte PNG (default out/NAME_alpha.png; \"-\" writes standard output); with -all a directory (default out/NAME)")
	fs.IntVar(&c.bits, "bits", 8, "alpha PNG depth: 8 or 16")
	fs.StringVar(&c.cutout, "cutout", "", "also write the object on a transparent background (RGBA PNG)")
	fs.BoolVar(&c.premul, "premultiplied", false, "write the cutout's colours premultiplied by its alpha")
	fs.BoolVar(&c.plain, "plain-colors", false, "cutout and composite with the photo's own colours instead of the estimated foreground (faster; the old background shows in soft edges)")
	fs.StringVar(&c.composite, "composite", "", "also write the object over a colour (green, blue, white, black, red, #rrggbb) or an image file")
	fs.StringVar(&c.compOut, "composite-out", "", "where -composite writes (default out/NAME_composite.png)")
	fs.StringVar(&c.mask, "mask", "", "also write SAM's mask as a PNG")
	fs.StringVar(&modeFlag, "mode", "postprocess", "refinement: postprocess (one object), maskguide (several instances) or plain")
	fs.StringVar(&c.samPath, "sam", "", "SAM checkpoint: .pth, .npz or a directory of .npy (default: SAM ViT-B in the cache, downloaded on first use)")
	fs.StringVar(&c.mamPath, "mam", "", "MAM checkpoint: .pth, .npz or a directory of .npy (default: MAM ViT-B in the cache, downloaded on first use)")
	fs.StringVar(&c.samURL, "sam-url", defaultURL("MAM_SAM_URL", mam.SAMViTB), "where the SAM ViT-B checkpoint is downloaded from")
	fs.StringVar(&c.mamURL, "mam-url", defaultURL("MAM_MAM_URL", mam.MAMViTB), "where the MAM ViT-B checkpoint is downloaded from")
	fs.BoolVar(&c.download, "download", false, "download the ViT-B checkpoints (with -text, GroundingDINO's too) into the cache and stop (unless -image is given)")
	fs.StringVar(&c.preset, "preset", "", "force the SAM configuration: vit_b, vit_l, vit_h or tiny")
	fs.BoolVar(&c.exif, "exif", true, "apply the JPEG EXIF orientation (-exif=false keeps the pixels as stored)")
	fs.StringVar(&maxPixels, "max-pixels", "64M", "refuse images (and -composite backgrounds) larger than this many pixels, e.g. 64M, 120M, 2000000")
	fs.StringVar(&pngFlag, "png", "fast", "PNG compression: fast, default, small or none")
	fs.IntVar(&c.threads, "threads", 0, "threads to use (default: GOMAXPROCS, all cores)")
	fs.StringVar(&c.dump, "dump", "", "write every stage as .npy into this directory (with -text: the best box's matte)")
	fs.StringVar(&c.text, "text", "", "text prompt, e.g. \"the dog\" or \"cat . dog .\": GroundingDINO's best box becomes the box prompt")
	fs.StringVar(&c.gdinoPath, "gdino", "", "GroundingDINO checkpoint for -text: .pth or .npz (default: Swin-T OGC in the cache, downloaded on first use)")
	fs.StringVar(&c.vocabPath, "vocab", "", "BERT vocab.txt for -text (default: bert-base-uncased's in the cache, downloaded on first use)")
	fs.StringVar(&c.gdinoURL, "gdino-url", defaultURL("MAM_GDINO_URL", mam.GDINOSwinT), "where the GroundingDINO Swin-T checkpoint is downloaded from")
	fs.StringVar(&c.vocabURL, "vocab-url", defaultURL("MAM_VOCAB_URL", mam.BERTVocab), "where BERT's vocab.txt is downloaded from")
	fs.Float64Var(&thr[0], "box-threshold", 0.25, "-text keeps the boxes scoring above this (0 to 1)")
	fs.Float64Var(&thr[1], "text-threshold", 0.25, "-text: the tokens above this make a box's phrase (0 to 1)")
	fs.Float64Var(&thr[2], "nms", 0.5, "-text drops boxes overlapping a better one by more than this IoU (0 to 1)")
	fs.StringVar(&c.jsonOut, "json", "", "with -text, also write the boxes found as JSON: {\"detections\": [{\"box\": [x0,y0,x1,y1], \"score\": s, \"phrase\": p}, ...]}, highest score first (\"-\": standard output)")
	fs.BoolVar(&c.all, "all", false, "with -text, matte every box found: -o (and -cutout, -composite-out, -mask) name directories of alpha_<i>.png, ...")
	fs.BoolVar(&c.semantic, "semantic", false, "with -text, write the union of every box's matte (the pixelwise maximum) as one matte")
	usage := func() {
		dir, err := mam.CacheDir()
		if err != nil {
			dir = "the user cache directory's mam-go"
		}
		fmt.Fprintf(stdout, usageHead, dir)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	fs.Usage = func() {} // errors are one line; the usage is for -h
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return nil, errHelp
		}
		return nil, usagef("%v (see -h)", err)
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q: flags come as -name value (see -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := c.textFlags(set, thr, boxFlag); err != nil {
		return nil, err
	}
	if c.image == "" {
		if c.download {
			return &c, nil
		}
		return nil, usagef("-image is required: matte -image photo.jpg -box x0,y0,x1,y1 (or -text \"the dog\"; see -h)")
	}
	var err error
	if c.mode, err = mam.ParseMode(modeFlag); err != nil {
		return nil, usagef("-mode %q: want postprocess, maskguide or plain", modeFlag)
	}
	if c.bits != 8 && c.bits != 16 {
		return nil, usagef("-bits %d: want 8 or 16", c.bits)
	}
	if c.png, err = mam.ParsePNGCompression(pngFlag); err != nil {
		return nil, usagef("-png %q: want fast, default, small or none", pngFlag)
	}
	if c.threads < 0 || c.threads > 1024 {
		return nil, usagef("-threads %d: want 1 to 1024 (0: all cores)", c.threads)
	}
	if c.maxPixels, err = parsePixels(maxPixels); err != nil {
		return nil, usagef("-max-pixels %q: want a positive number of pixels such as 64M or 2000000", maxPixels)
	}
	if c.preset != "" {
		switch c.preset {
		case "vit_b", "vit_l", "vit_h", "tiny":
		default:
			return nil, usagef("-preset %q: want vit_b, vit_l, vit_h or tiny", c.preset)
		}
	}
	c.prompt.Points = points
	if boxFlag != "" {
		v, err := floats(boxFlag)
		if err != nil || len(v) != 4 {
			return nil, usagef("-box %q: want x0,y0,x1,y1", boxFlag)
		}
		c.prompt.Box = &mam.Box{X0: v[0], Y0: v[1], X1: v[2], Y1: v[3]}
	}
	c.prompt.Text = c.text
	if len(c.prompt.Points) == 0 && c.prompt.Box == nil && c.text == "" {
		return nil, usagef("no prompt: give -box x0,y0,x1,y1, -point x,y or -text \"the dog\" (see -h)")
	}
	if err := c.prompt.Validate(); err != nil {
		return nil, err
	}
	if c.composite != "" {
		if col, err := mam.ParseColor(c.composite); err == nil {
			c.compColor = &col
		} else if fi, serr := os.Stat(c.composite); serr != nil || fi.IsDir() {
			return nil, usagef("-composite %q is neither a colour (green, blue, white, black, red, #rrggbb) nor an image file", c.composite)
		}
	}
	if c.samPath != "" {
		if err := checkInput("-sam", c.samPath, true); err != nil {
			return nil, err
		}
	}
	if c.mamPath != "" {
		if err := checkInput("-mam", c.mamPath, true); err != nil {
			return nil, err
		}
	}
	if c.gdinoPath != "" {
		if err := checkInput("-gdino", c.gdinoPath, true); err != nil {
			return nil, err
		}
	}
	if c.vocabPath != "" {
		if err := checkInput("-vocab", c.vocabPath, false); err != nil {
			return nil, err
		}
		if err := checkCaption(c.vocabPath, c.text); err != nil {
			return nil, err
		}
	}
	if c.image != "-" {
		if err := checkInput("-image", c.image, false); err != nil {
			return nil, err
		}
	}
	if err := c.outputs(); err != nil {
		return nil, err
	}
	return &c, nil
}

// parsePixels reads a pixel count: an integer, or a number with a K, M or
// G suffix (thousands, millions, billions) or "MP".
func parsePixels(s string) (int64, error) {
	m := regexp.MustCompile(`^([0-9]*\.?[0-9]+)\s*(k|K|m|M|MP|g|G)?$`).FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("bad pixel count")
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, err
	}
	switch strings.ToUpper(m[2]) {
	case "K":
		v *= 1e3
	case "M", "MP":
		v *= 1e6
	case "G":
		v *= 1e9
	}
	if v < 1 || v > 1e12 {
		return 0, fmt.Errorf("out of range")
	}
	return int64(v), nil
}

// checkInput checks that an input path exists (a directory is allowed for
// checkpoints: one .npy per tensor).
func checkInput(flagName, path string, dirOK bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return usagef("%s %s: %v", flagName, path, err)
	}
	if fi.IsDir() && !dirOK {
		return usagef("%s %s is a directory", flagName, path)
	}
	return nil
}

// textFlags checks the text prompt's flags: the others need -text, -text
// needs a caption and excludes -box, -all excludes -semantic, and the
// thresholds lie in [0, 1].
func (c *config) textFlags(set map[string]bool, thr [3]float64, boxFlag string) error {
	if !set["text"] {
		for _, f := range []string{"gdino", "vocab", "box-threshold", "text-threshold", "nms", "json"} {
			if set[f] {
				return usagef("-%s is for text prompts: add -text \"the dog\" (see -h)", f)
			}
		}
		if c.all {
			return usagef("-all mattes every box a text prompt finds: add -text \"the dog\" (see -h)")
		}
		if c.semantic {
			return usagef("-semantic merges the boxes a text prompt finds: add -text \"the dog\" (see -h)")
		}
		return nil
	}
	if strings.TrimSpace(c.text) == "" {
		return usagef("-text is empty: give a caption such as -text \"the dog\"")
	}
	if boxFlag != "" {
		return usagef("-text and -box: the text gives the box (-point x,y[,label] clicks may be added)")
	}
	if c.all && c.semantic {
		return usagef("-all and -semantic: one matte per box, or their union, not both")
	}
	for i, name := range []string{"-box-threshold", "-text-threshold", "-nms"} {
		if !(thr[i] >= 0 && thr[i] <= 1) {
			return usagef("%s %v: want a value in [0, 1]", name, thr[i])
		}
	}
	c.boxThr, c.textThr, c.nmsThr = float32(thr[0]), float32(thr[1]), float32(thr[2])
	return nil
}

// checkCaption reads the vocabulary and tokenizes the caption as the
// detector will, so that a file that is not BERT's vocab.txt, or a caption
// with nothing to ground, fails before the model loads.
func checkCaption(vocab, caption string) error {
	tok, err := gdino.LoadVocab(vocab)
	if err != nil {
		return fmt.Errorf("-vocab: %w", err)
	}
	if _, err := tok.Prepare(caption, 256); err != nil {
		return fmt.Errorf("-text: %w", err)
	}
	return nil
}

// outputs fills in the default output paths and checks that every output
// can be written: its directory exists (the default out/ is created), no
// two outputs share a path, none overwrites the input, at most one is
// standard output. With -all, -o, -cutout, -composite-out and -mask are
// directories, created when the mattes are written.
func (c *config) outputs() error {
	name := "stdin"
	if c.image != "-" {
		name = strings.TrimSuffix(filepath.Base(c.image), filepath.Ext(c.image))
	}
	if c.out == "" {
		c.out = filepath.Join("out", name+"_alpha.png")
		if c.all {
			c.out = filepath.Join("out", name)
		}
		c.outputsDir = "out"
	}
	if c.composite != "" && c.compOut == "" {
		if c.all {
			c.compOut = c.out
		} else {
			c.compOut = filepath.Join("out", name+"_composite.png")
			c.outputsDir = "out"
		}
	}
	if c.composite == "" && c.compOut != "" {
		return usagef("-composite-out without -composite")
	}
	if c.premul && c.cutout == "" {
		return usagef("-premultiplied without -cutout")
	}
	if c.outputsDir != "" {
		if err := os.MkdirAll(c.outputsDir, 0o755); err != nil {
			return usagef("cannot create the output directory %s: %v", c.outputsDir, err)
		}
	}
	seen := map[string]string{}
	if c.image != "-" {
		if abs, err := filepath.Abs(c.image); err == nil {
			seen[abs] = "-image"
		}
	}
	files := []struct{ flag, path string }{{"-o", c.out}, {"-cutout", c.cutout}, {"-composite-out", c.compOut}, {"-mask", c.mask}, {"-json", c.jsonOut}}
	if c.all {
		for _, o := range files[:4] {
			if err := checkDir(o.flag, o.path); err != nil {
				return err
			}
		}
		files = files[4:]
	}
	stdout := ""
	for _, o := range files {
		if o.path == "" {
			continue
		}
		if o.path == "-" {
			if stdout != "" {
				return usagef("%s and %s both write standard output", stdout, o.flag)
			}
			stdout = o.flag
			continue
		}
		abs, err := filepath.Abs(o.path)
		if err != nil {
			return usagef("%s %s: %v", o.flag, o.path, err)
		}
		if prev, ok := seen[abs]; ok {
			return usagef("%s and %s are the same file %s", prev, o.flag, o.path)
		}
		seen[abs] = o.flag
		if err := checkWritable(o.flag, o.path); err != nil {
			return err
		}
	}
	if c.dump != "" {
		if fi, err := os.Stat(c.dump); err == nil && !fi.IsDir() {
			return usagef("-dump %s is not a directory", c.dump)
		} else if err != nil {
			if err := checkWritable("-dump", c.dump); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkDir checks an output directory of -all: an existing directory that
// takes new files, or one that can be created (its parent exists).
func checkDir(flagName, path string) error {
	if path == "" {
		return nil
	}
	if path == "-" {
		return usagef("%s -: with -all, %s names a directory (one file per box), not standard output", flagName, flagName)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return checkWritable(flagName, path)
	}
	if !fi.IsDir() {
		return usagef("%s %s is a file: with -all, %s names a directory (one file per box)", flagName, path, flagName)
	}
	f, err := os.CreateTemp(path, ".matte-check-*")
	if err != nil {
		return usagef("%s %s: cannot write in it", flagName, path)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// checkWritable checks that path could be created: its directory exists
// and takes a new file, and path itself is not a directory.
func checkWritable(flagName, path string) error {
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return usagef("%s %s is a directory", flagName, path)
		}
		if !fi.Mode().IsRegular() { // a device or a pipe: written directly
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return usagef("%s %s: cannot write it", flagName, path)
			}
			f.Close()
			return nil
		}
		if t, err := filepath.EvalSymlinks(path); err == nil {
			path = t
		}
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return usagef("%s %s: directory %s does not exist", flagName, path, dir)
	}
	if !fi.IsDir() {
		return usagef("%s %s: %s is not a directory", flagName, path, dir)
	}
	f, err := os.CreateTemp(dir, ".matte-check-*")
	if err != nil {
		return usagef("%s %s: cannot write in %s", flagName, path, dir)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}
