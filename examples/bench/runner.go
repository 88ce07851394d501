package main

import (
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mam-go/mam-go/mam"
)

// benchmark is one of the evaluation sets of the paper, with the folder
// layout and refinement mode that inference_benchmark.py and
// GETTING_STARTED.md use for it.
type benchmark struct {
	Name string
	Mode mam.Mode
	// Instances: the ground truth of image "x.jpg" is a folder "x/" of
	// instance alphas, each predicted separately (HIM2K).
	Instances bool
	// Metrics the reference's evaluation script reports for the set.
	About string
}

// benchmarks are the six sets of the paper. Semantic sets and RWP636 use
// postprocess, HIM2K and RefMatte-RW100 maskguide.
var benchmarks = []benchmark{
	{Name: "ppm100", Mode: mam.PostProcess, About: "PPM-100: image/x.jpg, matte/x.jpg (same name)"},
	{Name: "am2k", Mode: mam.PostProcess, About: "AM2K validation: original/x.jpg, mask/x.png, trimap/x.png"},
	{Name: "pm10k", Mode: mam.PostProcess, About: "P3M-500-NP: blurred_image/x.jpg, mask/x.png, trimap/x.png"},
	{Name: "rwp636", Mode: mam.PostProcess, About: "RealWorldPortrait-636: image/x.jpg, alpha/x.png"},
	{Name: "him2k", Mode: mam.MaskGuide, Instances: true, About: "HIM2K: images/natural/x.jpg, alphas/natural/x/<instance>.png"},
	{Name: "rw100", Mode: mam.MaskGuide, About: "RefMatte-RW100: image/x.jpg, mask/x.png"},
}

// findBenchmark returns the benchmark named name.
func findBenchmark(name string) (benchmark, error) {
	var names []string
	for _, b := range benchmarks {
		if b.Name == strings.ToLower(name) {
			return b, nil
		}
		names = append(names, b.Name)
	}
	return benchmark{}, fmt.Errorf("unknown benchmark %q (want one of %s)", name, strings.Join(names, ", "))
}

// imageExts are the file types read as images (Go decodes PNG and JPEG).
var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true}

func isImage(name string) bool {
	return imageExts[strings.ToLower(filepath.Ext(name))] && !strings.HasPrefix(name, ".")
}

func stem(name string) string { return strings.TrimSuffix(name, filepath.Ext(name)) }

// item is one matte to predict: an input image, the ground-truth alpha the
// prompt is derived from, and the output name (slash-separated, relative to
// the output folder, ".png").
type item struct {
	Name  string
	Image string
	GT    string
}

// listImages returns the image files of dir, sorted.
func listImages(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() && isImage(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// findGT returns the ground-truth file of image name in gtDir: the same
// file name (PPM-100), else the stem with .png, .jpg or .jpeg.
func findGT(gtDir, name string) (string, bool) {
	for _, c := range []string{name, stem(name) + ".png", stem(name) + ".jpg", stem(name) + ".jpeg"} {
		p := filepath.Join(gtDir, c)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, true
		}
	}
	return "", false
}

// listItems pairs every image of imageDir with its ground truth in gtDir
// as benchmark b lays them out. Images without ground truth are returned
// in missing.
func listItems(b benchmark, imageDir, gtDir string) (items []item, missing []string, err error) {
	names, err := listImages(imageDir)
	if err != nil {
		return nil, nil, fmt.Errorf("images: %w", err)
	}
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("images: %s holds no PNG or JPEG files", imageDir)
	}
	for _, name := range names {
		img := filepath.Join(imageDir, name)
		if b.Instances {
			dir := filepath.Join(gtDir, stem(name))
			insts, err := listImages(dir)
			if err != nil || len(insts) == 0 {
				missing = append(missing, name)
				continue
			}
			for _, inst := range insts {
				items = append(items, item{Name: stem(name) + "/" + stem(inst) + ".png", Image: img, GT: filepath.Join(dir, inst)})
			}
			continue
		}
		gt, ok := findGT(gtDir, name)
		if !ok {
			missing = append(missing, name)
			continue
		}
		items = append(items, item{Name: stem(name) + ".png", Image: img, GT: gt})
	}
	return items, missing, nil
}

// errEmptyGT reports a ground truth with no pixel above the threshold,
// from which no prompt can be derived.
var errEmptyGT = errors.New("ground truth has no foreground (no value > 127)")

// promptFromAlpha derives the benchmark prompt from a ground-truth alpha as
// generator_tensor_dict does: threshold at 127 (> 127 is foreground), take
// the bounding box [x_min, y_min, x_max, y_max] of the foreground (both
// ends inclusive), and give that box, or its centre as one foreground
// point.
func promptFromAlpha(a *image.Gray, kind string) (mam.Prompt, error) {
	b := a.Bounds()
	x0, y0, x1, y1 := b.Dx(), b.Dy(), -1, -1
	for y := 0; y < b.Dy(); y++ {
		row := a.Pix[a.PixOffset(b.Min.X, b.Min.Y+y):a.PixOffset(b.Max.X, b.Min.Y+y)]
		for x, v := range row {
			if v > 127 {
				x0, x1 = min(x0, x), max(x1, x)
				y0, y1 = min(y0, y), max(y1, y)
			}
		}
	}
	if x1 < 0 {
		return mam.Prompt{}, errEmptyGT
	}
	box := mam.Box{X0: float64(x0), Y0: float64(y0), X1: float64(x1), Y1: float64(y1)}
	switch kind {
	case "box":
		return mam.Prompt{Box: &box}, nil
	case "point":
		return mam.Prompt{Points: []mam.Point{{X: (box.X0 + box.X1) / 2, Y: (box.Y0 + box.Y1) / 2, Label: 1}}}, nil
	}
	return mam.Prompt{}, fmt.Errorf("unknown prompt kind %q (want box or point)", kind)
}

// matter mattes one image; *mam.Model through modelMatter, or a fake in
// tests.
type matter interface {
	Matte(ctx context.Context, img image.Image, p mam.Prompt, mode mam.Mode) (*mam.Result, error)
}

// predictConfig says how to predict a benchmark.
type predictConfig struct {
	OutDir    string
	Mode      mam.Mode
	Prompt    string           // "box", "point" or "text"
	Captions  *textAnnotations // the text prompts' captions
	Overwrite bool             // predict again even where an output exists
}

// predictStats counts what predict did.
type predictStats struct {
	Done, Skipped int
	Failed        []string // "name: error"
}

// predict mattes every item not yet predicted (resumption: an existing
// output file is kept unless Overwrite) and writes uint8(alpha*255) as a
// grayscale PNG under OutDir. A failing item is recorded and skipped; a
// cancelled ctx stops the run with ctx's error.
func predict(ctx context.Context, m matter, items []item, cfg predictConfig, bar *progress) (predictStats, error) {
	var st predictStats
	var cache imageCache
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		out := filepath.Join(cfg.OutDir, filepath.FromSlash(it.Name))
		if !cfg.Overwrite {
			if fi, err := os.Stat(out); err == nil && fi.Size() > 0 {
				st.Skipped++
				bar.step(it.Name)
				continue
			}
		}
		if err := predictOne(ctx, m, it, out, cfg, &cache); err != nil {
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			st.Failed = append(st.Failed, fmt.Sprintf("%s: %v", it.Name, err))
		} else {
			st.Done++
		}
		bar.step(it.Name)
	}
	return st, nil
}

// predictOne mattes one item into out: its prompt is derived from the
// ground truth, or with text prompts is the caption of its annotations.
func predictOne(ctx context.Context, m matter, it item, out string, cfg predictConfig, cache *imageCache) error {
	gt, err := loadGray(it.GT)
	if err != nil {
		return fmt.Errorf("ground truth: %w", err)
	}
	var p mam.Prompt
	if cfg.Prompt == "text" {
		// The caption comes from the annotations, not the ground truth.
		if cfg.Captions == nil {
			return errors.New("text prompts without annotations")
		}
		if p.Text, err = cfg.Captions.caption(filepath.Base(it.Image)); err != nil {
			return err
		}
	} else if p, err = promptFromAlpha(gt, cfg.Prompt); err != nil {
		return fmt.Errorf("%s: %w", it.GT, err)
	}
	img, err := cache.load(it.Image)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if ib, gb := img.Bounds(), gt.Bounds(); ib.Dx() != gb.Dx() || ib.Dy() != gb.Dy() {
		return fmt.Errorf("image is %dx%d but ground truth %s is %dx%d", ib.Dx(), ib.Dy(), it.GT, gb.Dx(), gb.Dy())
	}
	r, err := m.Matte(ctx, img, p, cfg.Mode)
	if err != nil {
		return err
	}
	if b := img.Bounds(); r.Width != b.Dx() || r.Height != b.Dy() || len(r.Alpha) != r.Width*r.Height {
		return fmt.Errorf("matte is %dx%d (%d values), image %dx%d", r.Width, r.Height, len(r.Alpha), b.Dx(), b.Dy())
	}
	return writePNGAtomic(out, r.Gray())
}

// imageCache keeps the last decoded input image, so that consecutive items
// of one image (HIM2K instances) get the same image value, which lets
// modelMatter reuse its encoding.
type imageCache struct {
	path string
	img  image.Image
}

func (c *imageCache) load(path string) (image.Image, error) {
	if c.img != nil && c.path == path {
		return c.img, nil
	}
	img, err := loadRGB(path)
	if err != nil {
		return nil, err
	}
	c.path, c.img = path, img
	return img, nil
}
