package main

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/mam"
)

func decodePNG(t *testing.T, path string) (w, h int) {
	t.Helper()
	b := testutil.Image(t, path).Bounds()
	return b.Dx(), b.Dy()
}

func tinyWeights() (samPath, mamPath string) {
	w := testutil.Golden("tiny", "weights")
	return filepath.Join(w, "sam.pth"), filepath.Join(w, "mam.pth")
}

func runCmd(args []string, stdin []byte) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = run(context.Background(), args, bytes.NewReader(stdin), &o, &e)
	return o.String(), e.String(), err
}

// listDir names the files in dir, hidden ones (temporary files) included.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// The command on the tiny test checkpoints writes an alpha PNG, a cutout,
// a composite and every stage as .npy, and times each stage.
func TestMatteCommand(t *testing.T) {
	dir := t.TempDir()
	sp, mp := tinyWeights()
	args := []string{
		"-sam", sp, "-mam", mp,
		"-image", testutil.Golden("tiny", "dog_240", "image.png"),
		"-box", "52,28,187,137", "-point", "120,96,0",
		"-o", filepath.Join(dir, "alpha.png"), "-cutout", filepath.Join(dir, "cutout.png"),
		"-composite", "green", "-composite-out", filepath.Join(dir, "comp.png"),
		"-dump", filepath.Join(dir, "dump"),
	}
	_, stderr, err := runCmd(args, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, f := range []string{"alpha.png", "cutout.png", "comp.png"} {
		if w, h := decodePNG(t, filepath.Join(dir, f)); w != 240 || h != 160 {
			t.Errorf("%s is %dx%d, want 240x160", f, w, h)
		}
	}
	// The cutout's alpha is the alpha PNG's, exactly.
	alpha := testutil.Image(t, filepath.Join(dir, "alpha.png")).(*image.Gray)
	cut := testutil.Image(t, filepath.Join(dir, "cutout.png")).(*image.NRGBA)
	for i, a := range alpha.Pix {
		if cut.Pix[4*i+3] != a {
			t.Fatalf("pixel %d: cutout alpha %d, alpha PNG %d", i, cut.Pix[4*i+3], a)
		}
	}
	for _, n := range []string{"input", "image_embeddings", "low_res_masks", "iou_predictions", "masks", "guide_mask", "alpha_os1", "alpha_os4", "alpha_os8", "alpha_postprocess"} {
		if _, err := os.Stat(filepath.Join(dir, "dump", n+".npy")); err != nil {
			t.Errorf("dump: %v", err)
		}
	}
	for _, stage := range []string{"image", "load", "encoder", "decode+m2m", "foreground", "write"} {
		if !strings.Contains(stderr, stage) {
			t.Errorf("stderr has no %q timing:\n%s", stage, stderr)
		}
	}
	if names := listDir(t, dir); len(names) != 4 {
		t.Errorf("files left: %v", names)
	}
}

// Mistakes in flags, prompts and paths fail at once, on one line, before
// the model loads, and leave no file behind; -h is not an error.
func TestMatteCommandErrors(t *testing.T) {
	sp, mp := tinyWeights()
	img := testutil.Golden("tiny", "dog_240", "image.png")
	dir := t.TempDir()
	notImage := filepath.Join(dir, "not-image.png")
	os.WriteFile(notImage, []byte("this is not a PNG"), 0o644)
	base := []string{"-sam", sp, "-mam", mp, "-image", img, "-o", filepath.Join(dir, "a.png")}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	for _, c := range []struct {
		name string
		args []string
		want string // in the error
	}{
		{"no prompt", base, "no prompt"},
		{"bad box", with("-box", "1,2,3"), "-box"},
		{"bad point", with("-point", "1"), "x,y"},
		{"bad label", with("-point", "1,2,5"), "label"},
		{"bad mode", with("-box", "1,2,30,40", "-mode", "x"), "-mode"},
		{"bits 12", with("-box", "1,2,30,40", "-bits", "12"), "-bits 12"},
		{"bad png", with("-box", "1,2,30,40", "-png", "tiny"), "-png"},
		{"bad threads", with("-box", "1,2,30,40", "-threads", "-2"), "-threads"},
		{"bad max pixels", with("-box", "1,2,30,40", "-max-pixels", "lots"), "-max-pixels"},
		{"purple", with("-box", "1,2,30,40", "-composite", "purple"), "neither a colour"},
		{"no dir", with("-box", "1,2,30,40", "-cutout", "/no/such/dir/a.png"), "does not exist"},
		{"output is dir", with("-box", "1,2,30,40", "-cutout", dir), "is a directory"},
		{"same outputs", with("-box", "1,2,30,40", "-cutout", filepath.Join(dir, "a.png")), "same file"},
		{"overwrite input", []string{"-sam", sp, "-mam", mp, "-image", img, "-box", "1,2,30,40", "-o", img}, "same file"},
		{"two stdouts", with("-box", "1,2,30,40", "-cutout", "-", "-mask", "-"), "standard output"},
		{"reversed box", with("-box", "100,2,30,40"), "reversed"},
		{"box outside", with("-box", "300,200,400,300"), "outside"},
		{"point outside", with("-point", "-5,10"), "outside"},
		{"NaN point", with("-point", "NaN,10"), "not finite"},
		{"unknown flag", with("-box", "1,2,30,40", "-colour", "red"), "not defined"},
		{"stray argument", with("-box", "1,2,30,40", "photo.jpg"), "unexpected argument"},
		{"no image", []string{"-box", "1,2,30,40"}, "-image is required"},
		{"missing image", []string{"-sam", sp, "-mam", mp, "-image", filepath.Join(dir, "nope.jpg"), "-box", "1,2,30,40"}, "no such file"},
		{"not image", []string{"-sam", sp, "-mam", mp, "-image", notImage, "-box", "1,2,30,40", "-o", filepath.Join(dir, "b.png")}, "not a PNG, JPEG, GIF or WebP"},
		{"missing sam", []string{"-sam", "/nonexistent.pth", "-mam", mp, "-image", img, "-box", "1,2,30,40"}, "-sam"},
		{"too large", with("-box", "1,2,30,40", "-max-pixels", "1000"), "limit"},
		{"bad background", with("-box", "1,2,30,40", "-composite", notImage), "-composite"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, err := runCmd(c.args, nil)
			if err == nil {
				t.Fatal("no error")
			}
			msg := oneLine(err)
			if !strings.Contains(msg, c.want) {
				t.Errorf("error %q does not say %q", msg, c.want)
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg, "mam: ") {
				t.Errorf("error is not one clean line: %q", msg)
			}
			if strings.Contains(stderr, "load ") {
				t.Errorf("the model was loaded before the error:\n%s", stderr)
			}
		})
	}
	if names := listDir(t, dir); len(names) != 1 { // not-image.png
		t.Errorf("files left: %v", names)
	}
	stdout, _, err := runCmd([]string{"-h"}, nil)
	if !errors.Is(err, errHelp) || !strings.Contains(stdout, "-image") || !strings.Contains(stdout, "Usage") {
		t.Errorf("-h: err %v, usage %q", err, stdout)
	}
}

// The swapped checkpoints fail when loaded, after the checks: one line.
func TestMatteCommandSwapped(t *testing.T) {
	sp, mp := tinyWeights()
	dir := t.TempDir()
	_, _, err := runCmd([]string{"-sam", mp, "-mam", sp, "-image", testutil.Golden("tiny", "dog_240", "image.png"), "-box", "1,2,30,40", "-o", filepath.Join(dir, "a.png")}, nil)
	if err == nil {
		t.Fatal("no error")
	}
	if msg := oneLine(err); strings.Count(msg, "checkpoint") > 1 || strings.HasPrefix(msg, "mam:") {
		t.Errorf("error %q", msg)
	}
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("files left: %v", names)
	}
}

// -image - reads standard input, -o - writes standard output.
func TestMatteCommandStdio(t *testing.T) {
	sp, mp := tinyWeights()
	in, err := os.ReadFile(testutil.Golden("tiny", "dog_240", "image.png"))
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runCmd([]string{"-sam", sp, "-mam", mp, "-image", "-", "-point", "120,80", "-o", "-"}, in)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	m, err := png.Decode(strings.NewReader(stdout))
	if err != nil {
		t.Fatal(err)
	}
	if b := m.Bounds(); b.Dx() != 240 || b.Dy() != 160 {
		t.Errorf("matte is %v", b)
	}
}

// A phone photo stored sideways (EXIF orientation 6) is matted as it is
// displayed, with the prompt in displayed pixels; -exif=false keeps the
// stored orientation.
func TestMatteCommandEXIF(t *testing.T) {
	sp, mp := tinyWeights()
	src := testutil.Image(t, testutil.Golden("tiny", "dog_240", "image.png")) // 240x160
	dir := t.TempDir()
	path := filepath.Join(dir, "phone.jpg")
	if err := os.WriteFile(path, testutil.JPEGWithOrientation(src, 6), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		exif string
		w, h int
		box  string
	}{
		{"-exif=true", 160, 240, "20,50,130,190"},
		{"-exif=false", 240, 160, "50,20,190,130"},
	} {
		out := filepath.Join(dir, "alpha"+c.exif+".png")
		_, stderr, err := runCmd([]string{"-sam", sp, "-mam", mp, "-image", path, c.exif, "-box", c.box, "-o", out}, nil)
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.exif, err, stderr)
		}
		if w, h := decodePNG(t, out); w != c.w || h != c.h {
			t.Errorf("%s: matte is %dx%d, want %dx%d", c.exif, w, h, c.w, c.h)
		}
	}
	// In displayed pixels a box beyond 160 in x lies outside the image.
	if _, _, err := runCmd([]string{"-sam", sp, "-mam", mp, "-image", path, "-box", "170,10,230,50", "-o", filepath.Join(dir, "x.png")}, nil); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("box outside the displayed photo: %v", err)
	}
}

// Without -sam and -mam the cached ViT-B checkpoints are used, downloaded
// on first use (here from a local server named by MAM_MIRROR); the second
// run downloads nothing. Unreachable, the download says so on one line.
func TestMatteDefaultCheckpoints(t *testing.T) {
	w := testutil.Golden("tiny", "weights")
	files := map[string]string{"/sam_vit_b_01ec64.pth": "sam.pth", "/mam_vitb.pth": "mam.pth"}
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(rw, r)
			return
		}
		http.ServeFile(rw, r, filepath.Join(w, f))
	}))
	defer srv.Close()
	cache := t.TempDir()
	t.Setenv("MAM_CACHE", cache)
	t.Setenv("MAM_MIRROR", srv.URL)
	out := filepath.Join(t.TempDir(), "alpha.png")
	args := []string{"-image", testutil.Golden("tiny", "dog_240", "image.png"), "-point", "120,80", "-o", out}
	_, stderr, err := runCmd(args, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "downloading SAM ViT-B") || !strings.Contains(stderr, "100.0%") {
		t.Errorf("no download progress:\n%s", stderr)
	}
	for _, f := range []string{"sam_vit_b_01ec64.pth", "mam_vitb.pth"} {
		if _, err := os.Stat(filepath.Join(cache, f)); err != nil {
			t.Errorf("cache: %v", err)
		}
	}
	decodePNG(t, out)
	n := requests.Load()
	if _, stderr, err := runCmd(args, nil); err != nil || strings.Contains(stderr, "downloading") || requests.Load() != n {
		t.Errorf("second run: %v, %d more requests\n%s", err, requests.Load()-n, stderr)
	}

	// Offline: nothing listens on the mirror's port any more.
	srv.Close()
	t.Setenv("MAM_CACHE", t.TempDir())
	_, _, err = runCmd(args, nil)
	if err == nil || !strings.Contains(oneLine(err), "offline?") || !errors.Is(err, mam.ErrDownload) {
		t.Errorf("offline: %v", err)
	}
	// -download alone fetches and stops.
}

// A failure while writing the outputs leaves none of them behind.
func TestWriteOutputsNoPartialFile(t *testing.T) {
	dir := t.TempDir()
	cfg := &config{out: filepath.Join(dir, "alpha.png"), cutout: filepath.Join(dir, "cut.png"), bits: 8, png: mam.PNGFast}
	res := &mam.Result{Width: 4, Height: 3, Alpha: make([]float32, 12)}
	img := image.NewRGBA(image.Rect(0, 0, 5, 3)) // not the matte's size: the cutout fails
	var stdout, stderr bytes.Buffer
	if err := writeOutputs(context.Background(), cfg, res, img, nil, &stdout, &stderr); err == nil {
		t.Fatal("no error")
	}
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("files left: %v", names)
	}
	img = image.NewRGBA(image.Rect(0, 0, 4, 3))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	cfg.composite, cfg.compColor, cfg.compOut = "red", &color.RGBA{255, 0, 0, 255}, filepath.Join(dir, "comp.png")
	if err := writeOutputs(context.Background(), cfg, res, img, nil, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if names := listDir(t, dir); len(names) != 3 {
		t.Errorf("files: %v", names)
	}
}

func TestOneLine(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"mam: SAM checkpoint: weights: open x.pth: no such file", "SAM checkpoint: open x.pth: no such file"},
		{"a.png: mam: decode png: mam: bad\nthing", "a.png: decode png: bad thing"},
		{"-sam x: no such file", "-sam x: no such file"},
	} {
		if got := oneLine(errors.New(c.in)); got != c.want {
			t.Errorf("oneLine(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
