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

	"github.com/mam-go/mam-go/mam"
)

// config is the command line, parsed and checked: everything that can be
// wrong with it is found before an image is read or a model loaded.
type config struct {
	samPath, mamPath string // "" for the cached ViT-B checkpoints
	samURL, mamURL   string
	download         bool // fetch the checkpoints only (unless -image is given)
	preset           string

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
	mask       string
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

The box (or -point clicks) is in pixels of the photo as a viewer shows it.
Without -sam and -mam, SAM ViT-B and MAM ViT-B are taken from the cache
directory ($MAM_CACHE, else %s), downloaded there on first use
(about 400 MB; MAM_SAM_URL, MAM_MAM_URL or MAM_MIRROR point elsewhere).
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
	)
	fs.StringVar(&c.image, "image", "", "input image: PNG, JPEG, GIF or WebP (\"-\" reads standard input)")
	fs.StringVar(&boxFlag, "box", "", "box prompt `x0,y0,x1,y1` in pixels")
	fs.Var(&points, "point", "point prompt `x,y[,label]` (repeatable; label 1 = foreground, the default, 0 = background)")
	fs.StringVar(&c.out, "o", "", "alpha matte PNG (default out/NAME_alpha.png; \"-\" writes standard output)")
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
	fs.BoolVar(&c.download, "download", false, "download the ViT-B checkpoints into the cache and stop (unless -image is given)")
	fs.StringVar(&c.preset, "preset", "", "force the SAM configuration: vit_b, vit_l, vit_h or tiny")
	fs.BoolVar(&c.exif, "exif", true, "apply the JPEG EXIF orientation (-exif=false keeps the pixels as stored)")
	fs.StringVar(&maxPixels, "max-pixels", "64M", "refuse images (and -composite backgrounds) larger than this many pixels, e.g. 64M, 120M, 2000000")
	fs.StringVar(&pngFlag, "png", "fast", "PNG compression: fast, default, small or none")
	fs.IntVar(&c.threads, "threads", 0, "threads to use (default: GOMAXPROCS, all cores)")
	fs.StringVar(&c.dump, "dump", "", "write every stage as .npy into this directory")
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
	if c.image == "" {
		if c.download {
			return &c, nil
		}
		return nil, usagef("-image is required: matte -image photo.jpg -box x0,y0,x1,y1 (see -h)")
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
	if len(c.prompt.Points) == 0 && c.prompt.Box == nil {
		return nil, usagef("no prompt: give -box x0,y0,x1,y1 or -point x,y (see -h)")
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

// outputs fills in the default output paths and checks that every output
// can be written: its directory exists (the default out/ is created), no
// two outputs share a path, none overwrites the input, at most one is
// standard output.
func (c *config) outputs() error {
	name := "stdin"
	if c.image != "-" {
		name = strings.TrimSuffix(filepath.Base(c.image), filepath.Ext(c.image))
	}
	if c.out == "" {
		c.out = filepath.Join("out", name+"_alpha.png")
		c.outputsDir = "out"
	}
	if c.composite != "" && c.compOut == "" {
		c.compOut = filepath.Join("out", name+"_composite.png")
		c.outputsDir = "out"
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
	stdout := ""
	for _, o := range []struct{ flag, path string }{{"-o", c.out}, {"-cutout", c.cutout}, {"-composite-out", c.compOut}, {"-mask", c.mask}} {
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
