package main

import (
	"bytes"
	"context"
	"image"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/mam"
)

// rectAlpha is a w x h ground truth that is 255 on the inclusive rectangle
// (x0,y0)-(x1,y1): its derived point prompt is the rectangle's centre.
func rectAlpha(w, h, x0, y0, x1, y1 int) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := y0; y <= y1; y++ {
		for x := x0; x <= x1; x++ {
			g.Pix[y*w+x] = 255
		}
	}
	return g
}

// checkAgainstGolden compares a written 8-bit matte with the golden float
// alpha (H, W): equal to uint8(alpha*255) except where alpha*255 lies
// within 1e-4*255 of an integer (the tolerance on alphas), and never more
// than one level apart.
func checkAgainstGolden(t *testing.T, name, path, golden string) {
	t.Helper()
	got := readGrayFloats(t, path)
	want := testutil.NPY(t, golden)
	wf := want.Float32s()
	if len(got) != len(wf) {
		t.Fatalf("%s: %d pixels, golden %d (shape %v)", name, len(got), len(wf), want.Shape)
	}
	const slack = 1e-4 * 255
	exact, near := 0, 0
	for i, a := range wf {
		v := float64(a) * 255
		trunc := math.Floor(float64(float32(a) * 255))
		d := math.Abs(float64(got[i]) - trunc)
		frac := v - math.Floor(v)
		if frac < slack || frac > 1-slack {
			if d > 1 {
				t.Fatalf("%s: pixel %s = %v, golden alpha %v (uint8 %v)", name, testutil.Index(i, want.Shape), got[i], a, trunc)
			}
			near++
			continue
		}
		if d != 0 {
			t.Fatalf("%s: pixel %s = %v, golden alpha %v (uint8 %v)", name, testutil.Index(i, want.Shape), got[i], a, trunc)
		}
		exact++
	}
	t.Logf("%s: %d pixels equal to the golden matte, %d within the tolerance of a level boundary", name, exact, near)
}

// TestTinyGolden runs the command with the tiny golden weights on a
// benchmark folder holding the golden images, with ground truths whose
// derived point prompts are the golden "point" cases, and compares the
// written mattes with the reference's refined alphas in the benchmark's
// mode (am2k: postprocess; him2k: maskguide, one folder per image).
func TestTinyGolden(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the tiny model")
	}
	samPath := testutil.Golden("tiny", "weights", "sam.npz")
	mamPath := testutil.Golden("tiny", "weights", "mam.npz")
	cases := []struct {
		name               string
		w, h               int
		x0, y0, x1, y1     int // centre = golden point
		gx0, gy0, gx1, gy1 int // a second instance for him2k
	}{
		{"dog_240", 240, 160, 100, 60, 140, 100, 20, 10, 60, 50},
		{"demo_120", 120, 224, 40, 92, 80, 132, 10, 150, 50, 200},
	}
	root := t.TempDir()
	for _, c := range cases {
		b, err := os.ReadFile(testutil.Golden("tiny", c.name, "image.png"))
		if err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{"images", "him/images"} {
			if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, dir, c.name+".png"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		savePNG(t, filepath.Join(root, "gt", c.name+".png"), rectAlpha(c.w, c.h, c.x0, c.y0, c.x1, c.y1))
		savePNG(t, filepath.Join(root, "him/gt", c.name, "a.png"), rectAlpha(c.w, c.h, c.x0, c.y0, c.x1, c.y1))
		savePNG(t, filepath.Join(root, "him/gt", c.name, "b.png"), rectAlpha(c.w, c.h, c.gx0, c.gy0, c.gx1, c.gy1))
	}
	ctx := context.Background()

	// am2k layout, through the command with the real loader.
	var stdout, stderr bytes.Buffer
	out := filepath.Join(root, "out")
	args := []string{"-benchmark", "am2k", "-images", filepath.Join(root, "images"), "-gt", filepath.Join(root, "gt"),
		"-out", out, "-sam", samPath, "-mam", mamPath, "-prompt", "point", "-quiet"}
	if code := run(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	t.Logf("am2k table:\n%s", stdout.String())
	for _, c := range cases {
		checkAgainstGolden(t, c.name+" postprocess", filepath.Join(out, c.name+".png"),
			testutil.Golden("tiny", c.name, "point", "alpha_postprocess.npy"))
	}

	// him2k layout: two instances per image share one encoding; the first
	// is the golden case, the second must equal a separate Matte call.
	m, err := mam.Load(context.Background(), samPath, mamPath)
	if err != nil {
		t.Fatal(err)
	}
	bm, err := findBenchmark("him2k")
	if err != nil {
		t.Fatal(err)
	}
	items, missing, err := listItems(bm, filepath.Join(root, "him/images"), filepath.Join(root, "him/gt"))
	if err != nil || len(missing) != 0 || len(items) != 4 {
		t.Fatalf("him2k items %v, missing %v, err %v", items, missing, err)
	}
	hout := filepath.Join(root, "him/out")
	st, err := predict(ctx, &modelMatter{m: m}, items, predictConfig{OutDir: hout, Mode: bm.Mode, Prompt: "point"}, nil)
	if err != nil || st.Done != 4 {
		t.Fatalf("him2k: stats %+v, err %v", st, err)
	}
	for _, c := range cases {
		checkAgainstGolden(t, c.name+" maskguide", filepath.Join(hout, c.name, "a.png"),
			testutil.Golden("tiny", c.name, "point", "alpha_maskguide.npy"))
		img, err := loadRGB(filepath.Join(root, "him/images", c.name+".png"))
		if err != nil {
			t.Fatal(err)
		}
		gt, err := loadGray(filepath.Join(root, "him/gt", c.name, "b.png"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := promptFromAlpha(gt, "point")
		if err != nil {
			t.Fatal(err)
		}
		r, err := m.Matte(ctx, img, p, mam.WithMode(mam.MaskGuide))
		if err != nil {
			t.Fatal(err)
		}
		got := readGrayFloats(t, filepath.Join(hout, c.name, "b.png"))
		for i, v := range r.Gray().Pix {
			if got[i] != float32(v) {
				t.Fatalf("%s/b.png: pixel %d = %v, separate Matte call gives %d", c.name, i, got[i], v)
			}
		}
	}
}
