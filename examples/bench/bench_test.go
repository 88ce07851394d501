package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mam-go/mam-go/mam"
	"github.com/mam-go/mam-go/metrics"
)

// shape is a soft-edged ellipse: the known alpha of a synthetic image.
type shape struct {
	cx, cy, rx, ry float64
}

// alpha returns the shape's alpha at pixel (x, y): 1 inside, 0 outside, a
// linear ramp about 3 pixels wide across the edge.
func (s shape) alpha(x, y int) float64 {
	dx := (float64(x) - s.cx) / s.rx
	dy := (float64(y) - s.cy) / s.ry
	d := (math.Sqrt(dx*dx+dy*dy) - 1) * math.Min(s.rx, s.ry) // ~pixels outside the edge
	return math.Min(math.Max(0.5-d/3, 0), 1)
}

// alphaImage renders the shape's alpha as 8-bit gray.
func (s shape) alphaImage(w, h int) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			g.Pix[y*w+x] = uint8(math.Round(s.alpha(x, y) * 255))
		}
	}
	return g
}

// trimapImage is 255 inside, 0 outside, 128 on the soft edge.
func (s shape) trimapImage(w, h int) *image.Gray {
	a := s.alphaImage(w, h)
	g := image.NewGray(a.Rect)
	for i, v := range a.Pix {
		switch v {
		case 0:
		case 255:
			g.Pix[i] = 255
		default:
			g.Pix[i] = 128
		}
	}
	return g
}

// composite renders the shapes over a gradient background, each in its
// own colour, alpha-blended.
func composite(w, h int, shapes []shape, r *rand.Rand) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := [3]float64{float64(40 + 150*x/w), float64(60 + 100*y/h), 90}
			for _, s := range shapes {
				a := s.alpha(x, y)
				fg := [3]float64{float64(r.IntN(60) + 190), float64(r.IntN(60) + 20), float64(r.IntN(40) + 200)}
				for k := range c {
					c[k] = a*fg[k] + (1-a)*c[k]
				}
			}
			o := img.PixOffset(x, y)
			img.Pix[o], img.Pix[o+1], img.Pix[o+2], img.Pix[o+3] = uint8(c[0]), uint8(c[1]), uint8(c[2]), 255
		}
	}
	return img
}

func savePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// synthBench is a small benchmark folder made by makeBench.
type synthBench struct {
	root, images, gt, trimap string
	shapes                   map[string]shape // by output name
	w, h                     int
}

// makeBench writes a synthetic benchmark of n images under a temporary
// folder: images/img_i.png, gt/img_i.png and trimap/img_i.png, or for an
// instance layout gt/img_i/inst_j.png with two shapes per image.
func makeBench(t *testing.T, n int, instances bool) synthBench {
	t.Helper()
	r := rand.New(rand.NewPCG(7, uint64(n)))
	b := synthBench{root: t.TempDir(), w: 48, h: 40, shapes: map[string]shape{}}
	b.images = filepath.Join(b.root, "images")
	b.gt = filepath.Join(b.root, "gt")
	b.trimap = filepath.Join(b.root, "trimap")
	for i := range n {
		name := fmt.Sprintf("img_%d", i)
		s1 := shape{cx: 14 + float64(r.IntN(8)), cy: 18 + float64(r.IntN(6)), rx: 8 + float64(r.IntN(4)), ry: 10}
		shapes := []shape{s1}
		if instances {
			shapes = append(shapes, shape{cx: 36, cy: 16 + float64(r.IntN(8)), rx: 6, ry: 7 + float64(r.IntN(3))})
		}
		savePNG(t, filepath.Join(b.images, name+".png"), composite(b.w, b.h, shapes, r))
		if instances {
			for j, s := range shapes {
				inst := fmt.Sprintf("inst_%d.png", j)
				savePNG(t, filepath.Join(b.gt, name, inst), s.alphaImage(b.w, b.h))
				savePNG(t, filepath.Join(b.trimap, name, inst), s.trimapImage(b.w, b.h))
				b.shapes[name+"/"+inst] = s
			}
			continue
		}
		savePNG(t, filepath.Join(b.gt, name+".png"), s1.alphaImage(b.w, b.h))
		savePNG(t, filepath.Join(b.trimap, name+".png"), s1.trimapImage(b.w, b.h))
		b.shapes[name+".png"] = s1
	}
	return b
}

// fakeMatter mattes by filling the prompt box (or a 7x7 square around a
// point) with 1 and putting 0.5 on its border pixels, recording its calls.
type fakeMatter struct {
	mu      sync.Mutex
	calls   int
	modes   []mam.Mode
	prompts []mam.Prompt
	fail    map[int]bool // call numbers (1-based) that fail
}

func (f *fakeMatter) Matte(ctx context.Context, img image.Image, p mam.Prompt, mode mam.Mode) (*mam.Result, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.modes = append(f.modes, mode)
	f.prompts = append(f.prompts, p)
	f.mu.Unlock()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if f.fail[n] {
		return nil, fmt.Errorf("fake failure %d", n)
	}
	if p.Text == "nothing" {
		return nil, fmt.Errorf("text %q: %w", p.Text, mam.ErrNoDetection)
	}
	b := img.Bounds()
	box := fakeBox(p)
	r := &mam.Result{Width: b.Dx(), Height: b.Dy(), Alpha: make([]float32, b.Dx()*b.Dy()), Mode: mode}
	for y := range b.Dy() {
		for x := range b.Dx() {
			fx, fy := float64(x), float64(y)
			if fx < box.X0 || fx > box.X1 || fy < box.Y0 || fy > box.Y1 {
				continue
			}
			a := float32(1)
			if fx == box.X0 || fx == box.X1 || fy == box.Y0 || fy == box.Y1 {
				a = 0.5
			}
			r.Alpha[y*b.Dx()+x] = a
		}
	}
	return r, nil
}

// fakeBox is the region fakeMatter fills for p.
func fakeBox(p mam.Prompt) mam.Box {
	if p.Box != nil {
		return *p.Box
	}
	if p.Text != "" { // the fake detector's one box
		return fakeTextBox
	}
	pt := p.Points[0]
	return mam.Box{X0: math.Floor(pt.X) - 3, Y0: math.Floor(pt.Y) - 3, X1: math.Floor(pt.X) + 3, Y1: math.Floor(pt.Y) + 3}
}

// fakeTextBox is the box fakeMatter "detects" for any text.
var fakeTextBox = mam.Box{X0: 2, Y0: 3, X1: 12, Y1: 9}

// fakeAlpha is the 0..255 image fakeMatter writes for p, as uint8(a*255).
func fakeAlpha(p mam.Prompt, w, h int) []float32 {
	box := fakeBox(p)
	out := make([]float32, w*h)
	for y := range h {
		for x := range w {
			fx, fy := float64(x), float64(y)
			if fx < box.X0 || fx > box.X1 || fy < box.Y0 || fy > box.Y1 {
				continue
			}
			out[y*w+x] = 255
			if fx == box.X0 || fx == box.X1 || fy == box.Y0 || fy == box.Y1 {
				out[y*w+x] = 127 // uint8(0.5 * 255), truncated
			}
		}
	}
	return out
}

// bboxOf is the inclusive bounding box of the pixels > 127 of g.
func bboxOf(g *image.Gray) mam.Box {
	w, h := g.Rect.Dx(), g.Rect.Dy()
	b := mam.Box{X0: math.Inf(1), Y0: math.Inf(1), X1: math.Inf(-1), Y1: math.Inf(-1)}
	for y := range h {
		for x := range w {
			if g.Pix[y*w+x] > 127 {
				b.X0, b.X1 = math.Min(b.X0, float64(x)), math.Max(b.X1, float64(x))
				b.Y0, b.Y1 = math.Min(b.Y0, float64(y)), math.Max(b.Y1, float64(y))
			}
		}
	}
	return b
}

func readGrayFloats(t *testing.T, path string) []float32 {
	t.Helper()
	g, err := loadGray(path)
	if err != nil {
		t.Fatal(err)
	}
	return grayFloats(g)
}

func TestFindBenchmark(t *testing.T) {
	tests := []struct {
		name      string
		mode      mam.Mode
		instances bool
	}{
		{"ppm100", mam.PostProcess, false},
		{"am2k", mam.PostProcess, false},
		{"PM10K", mam.PostProcess, false},
		{"rwp636", mam.PostProcess, false},
		{"him2k", mam.MaskGuide, true},
		{"rw100", mam.MaskGuide, false},
	}
	for _, tc := range tests {
		b, err := findBenchmark(tc.name)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if b.Mode != tc.mode || b.Instances != tc.instances {
			t.Errorf("%s: mode %s instances %v, want %s %v", tc.name, b.Mode, b.Instances, tc.mode, tc.instances)
		}
	}
	if _, err := findBenchmark("coco"); err == nil {
		t.Error("unknown benchmark: no error")
	}
}

func TestListItems(t *testing.T) {
	root := t.TempDir()
	touch := func(rel string) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// PPM-100: image and matte both x.jpg; AM2K-like: x.jpg with x.png;
	// HIM2K: a folder per image; plus an image without ground truth and a
	// non-image file.
	for _, f := range []string{
		"ppm/image/b.jpg", "ppm/image/a.jpg", "ppm/matte/a.jpg", "ppm/matte/b.jpg",
		"am2k/original/m_1.jpg", "am2k/original/m_2.jpg", "am2k/original/notes.txt", "am2k/mask/m_1.png",
		"him/images/h1.jpg", "him/alphas/h1/01.png", "him/alphas/h1/00.png", "him/images/h2.jpg",
	} {
		touch(f)
	}
	get := func(name string) benchmark {
		b, err := findBenchmark(name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name        string
		b           benchmark
		images, gt  string
		want        []item
		wantMissing []string
	}{
		{"ppm100", get("ppm100"), "ppm/image", "ppm/matte", []item{
			{"a.png", "ppm/image/a.jpg", "ppm/matte/a.jpg"},
			{"b.png", "ppm/image/b.jpg", "ppm/matte/b.jpg"},
		}, nil},
		{"am2k", get("am2k"), "am2k/original", "am2k/mask", []item{
			{"m_1.png", "am2k/original/m_1.jpg", "am2k/mask/m_1.png"},
		}, []string{"m_2.jpg"}},
		{"him2k", get("him2k"), "him/images", "him/alphas", []item{
			{"h1/00.png", "him/images/h1.jpg", "him/alphas/h1/00.png"},
			{"h1/01.png", "him/images/h1.jpg", "him/alphas/h1/01.png"},
		}, []string{"h2.jpg"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			items, missing, err := listItems(tc.b, filepath.Join(root, tc.images), filepath.Join(root, tc.gt))
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.want {
				tc.want[i].Image = filepath.Join(root, filepath.FromSlash(tc.want[i].Image))
				tc.want[i].GT = filepath.Join(root, filepath.FromSlash(tc.want[i].GT))
			}
			if fmt.Sprint(items) != fmt.Sprint(tc.want) {
				t.Errorf("items\n got %v\nwant %v", items, tc.want)
			}
			if fmt.Sprint(missing) != fmt.Sprint(tc.wantMissing) {
				t.Errorf("missing %v, want %v", missing, tc.wantMissing)
			}
		})
	}
	if _, _, err := listItems(get("am2k"), filepath.Join(root, "nope"), root); err == nil {
		t.Error("missing image folder: no error")
	}
}

func TestPromptFromAlpha(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 10, 8))
	g.Pix[2*10+3] = 128 // (3,2): foreground (> 127)
	g.Pix[6*10+8] = 255 // (8,6)
	g.Pix[7*10+9] = 127 // (9,7): not foreground (== 127)
	g.Pix[0] = 100
	tests := []struct {
		kind string
		want mam.Prompt
	}{
		{"box", mam.Prompt{Box: &mam.Box{X0: 3, Y0: 2, X1: 8, Y1: 6}}},
		{"point", mam.Prompt{Points: []mam.Point{{X: 5.5, Y: 4, Label: 1}}}},
	}
	for _, tc := range tests {
		p, err := promptFromAlpha(g, tc.kind)
		if err != nil {
			t.Fatalf("%s: %v", tc.kind, err)
		}
		if fmt.Sprintf("%+v %v", p.Points, p.Box) != fmt.Sprintf("%+v %v", tc.want.Points, tc.want.Box) {
			t.Errorf("%s: prompt %+v %v, want %+v %v", tc.kind, p.Points, p.Box, tc.want.Points, tc.want.Box)
		}
	}
	if _, err := promptFromAlpha(g, "text"); err == nil {
		t.Error("text prompt: no error")
	}
	empty := image.NewGray(image.Rect(0, 0, 4, 4))
	for i := range empty.Pix {
		empty.Pix[i] = 127
	}
	if _, err := promptFromAlpha(empty, "box"); err != errEmptyGT {
		t.Errorf("empty ground truth: err %v, want errEmptyGT", err)
	}
}

func TestPredictAndResume(t *testing.T) {
	for _, tc := range []struct {
		bench  string
		prompt string
		mode   mam.Mode
		inst   bool
	}{
		{"am2k", "box", mam.PostProcess, false},
		{"rw100", "point", mam.MaskGuide, false},
		{"him2k", "box", mam.MaskGuide, true},
	} {
		t.Run(tc.bench+"_"+tc.prompt, func(t *testing.T) {
			sb := makeBench(t, 3, tc.inst)
			b, err := findBenchmark(tc.bench)
			if err != nil {
				t.Fatal(err)
			}
			items, missing, err := listItems(b, sb.images, sb.gt)
			if err != nil || len(missing) > 0 {
				t.Fatalf("listItems: %v, missing %v", err, missing)
			}
			if len(items) != len(sb.shapes) {
				t.Fatalf("%d items, want %d", len(items), len(sb.shapes))
			}
			out := filepath.Join(sb.root, "out")
			cfg := predictConfig{OutDir: out, Mode: b.Mode, Prompt: tc.prompt}
			f := &fakeMatter{}
			var log bytes.Buffer
			st, err := predict(context.Background(), f, items, cfg, newProgress(&log, "predict", len(items), false))
			if err != nil {
				t.Fatal(err)
			}
			if st.Done != len(items) || st.Skipped != 0 || len(st.Failed) != 0 {
				t.Fatalf("stats %+v, want %d done", st, len(items))
			}
			if !strings.Contains(log.String(), fmt.Sprintf("predict %d/%d", len(items), len(items))) {
				t.Errorf("progress log %q lacks the final count", log.String())
			}
			for i, it := range items {
				if f.modes[i] != tc.mode {
					t.Errorf("%s: mode %s, want %s", it.Name, f.modes[i], tc.mode)
				}
				// the prompt is the box (or its centre) of the ground truth > 127.
				gt, err := loadGray(it.GT)
				if err != nil {
					t.Fatal(err)
				}
				box := bboxOf(gt)
				p := f.prompts[i]
				switch tc.prompt {
				case "box":
					if p.Box == nil || *p.Box != box || len(p.Points) != 0 {
						t.Errorf("%s: prompt %+v, want box %+v", it.Name, p, box)
					}
				case "point":
					want := mam.Point{X: (box.X0 + box.X1) / 2, Y: (box.Y0 + box.Y1) / 2, Label: 1}
					if p.Box != nil || len(p.Points) != 1 || p.Points[0] != want {
						t.Errorf("%s: prompt %+v, want point %+v", it.Name, p, want)
					}
				}
				got := readGrayFloats(t, filepath.Join(out, filepath.FromSlash(it.Name)))
				want := fakeAlpha(p, sb.w, sb.h)
				for j := range want {
					if got[j] != want[j] {
						t.Fatalf("%s: pixel %d = %v, want %v", it.Name, j, got[j], want[j])
					}
				}
			}
			// A second run predicts nothing; after removing one output it
			// predicts that one only.
			f2 := &fakeMatter{}
			st, err = predict(context.Background(), f2, items, cfg, nil)
			if err != nil || st.Skipped != len(items) || st.Done != 0 || f2.calls != 0 {
				t.Fatalf("resume: stats %+v, %d calls, err %v; want all skipped", st, f2.calls, err)
			}
			if err := os.Remove(filepath.Join(out, filepath.FromSlash(items[1].Name))); err != nil {
				t.Fatal(err)
			}
			st, err = predict(context.Background(), f2, items, cfg, nil)
			if err != nil || st.Done != 1 || st.Skipped != len(items)-1 || f2.calls != 1 {
				t.Fatalf("resume after removal: stats %+v, %d calls, err %v", st, f2.calls, err)
			}
			// -overwrite predicts everything again.
			cfg.Overwrite = true
			st, err = predict(context.Background(), f2, items, cfg, nil)
			if err != nil || st.Done != len(items) || f2.calls != 1+len(items) {
				t.Fatalf("overwrite: stats %+v, %d calls, err %v", st, f2.calls, err)
			}
		})
	}
}

func TestPredictFailuresAndCancel(t *testing.T) {
	sb := makeBench(t, 3, false)
	b, _ := findBenchmark("am2k")
	items, _, err := listItems(b, sb.images, sb.gt)
	if err != nil {
		t.Fatal(err)
	}
	// an empty ground truth cannot give a prompt: that item fails, the
	// others are predicted.
	savePNG(t, items[0].GT, image.NewGray(image.Rect(0, 0, sb.w, sb.h)))
	f := &fakeMatter{fail: map[int]bool{2: true}} // the second model call (items[2]) fails
	out := filepath.Join(sb.root, "out")
	st, err := predict(context.Background(), f, items, predictConfig{OutDir: out, Mode: b.Mode, Prompt: "box"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Done != 1 || len(st.Failed) != 2 {
		t.Fatalf("stats %+v, want 1 done, 2 failed", st)
	}
	if !strings.Contains(st.Failed[0], "no foreground") || !strings.Contains(st.Failed[1], "fake failure") {
		t.Errorf("failures %q", st.Failed)
	}
	for i, it := range items {
		_, err := os.Stat(filepath.Join(out, it.Name))
		if (err == nil) != (i == 1) {
			t.Errorf("%s: output exists %v", it.Name, err == nil)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := predict(ctx, &fakeMatter{}, items, predictConfig{OutDir: out, Mode: b.Mode, Prompt: "box", Overwrite: true}, nil); err != context.Canceled {
		t.Errorf("cancelled: err %v, want context.Canceled", err)
	}
}

// TestEvaluate scores predictions made by hand against metrics.Compute on
// the same arrays, over each region.
func TestEvaluate(t *testing.T) {
	sb := makeBench(t, 3, false)
	pred := filepath.Join(sb.root, "pred")
	// img_0: perfect; img_1: all zero; img_2: the fake's box matte. A
	// ground truth of .jpg type must match a .png prediction.
	for i, name := range []string{"img_0.png", "img_1.png", "img_2.png"} {
		gt, err := loadGray(filepath.Join(sb.gt, name))
		if err != nil {
			t.Fatal(err)
		}
		var p *image.Gray
		switch i {
		case 0:
			p = gt
		case 1:
			p = image.NewGray(gt.Rect)
		case 2:
			box := bboxOf(gt)
			p = image.NewGray(gt.Rect)
			for j, v := range fakeAlpha(mam.Prompt{Box: &box}, sb.w, sb.h) {
				p.Pix[j] = uint8(v)
			}
		}
		savePNG(t, filepath.Join(pred, name), p)
	}
	for _, reg := range []region{regionWhole, regionUnknown, regionDetail} {
		t.Run(reg.String(), func(t *testing.T) {
			tri := ""
			if reg != regionWhole {
				tri = sb.trimap
			}
			pairs, missing, err := pairsFromDirs(pred, sb.gt, tri)
			if err != nil || len(missing) != 0 || len(pairs) != 3 {
				t.Fatalf("pairs %v missing %v err %v", pairs, missing, err)
			}
			rows, err := evaluate(context.Background(), pairs, reg, allMetrics, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				p := readGrayFloats(t, filepath.Join(pred, r.Name))
				g := readGrayFloats(t, filepath.Join(sb.gt, r.Name))
				var tm []float32
				if reg != regionWhole {
					tm = readGrayFloats(t, filepath.Join(sb.trimap, r.Name))
					if reg == regionDetail {
						tm = metrics.DetailTrimap(tm)
					}
				}
				want, err := metrics.Compute(p, g, tm, sb.w, sb.h)
				if err != nil {
					t.Fatal(err)
				}
				if r.Scores != want {
					t.Errorf("%s: scores %+v, want %+v", r.Name, r.Scores, want)
				}
				if r.Name == "img_0.png" && r.Scores != (metrics.Scores{}) {
					t.Errorf("perfect prediction scores %+v", r.Scores)
				}
				if r.Name == "img_1.png" {
					// all-zero prediction: SAD = sum(gt)/255/1000 over the region.
					var s float64
					for i, v := range g {
						if tm == nil || tm[i] == 128 {
							s += float64(v) / 255
						}
					}
					if math.Abs(r.Scores.SAD-s/1000) > 1e-6*s/1000 || s == 0 {
						t.Errorf("zero prediction: SAD %v, want %v", r.Scores.SAD, s/1000)
					}
				}
			}
		})
	}
	// a missing prediction is reported, not scored.
	if err := os.Remove(filepath.Join(pred, "img_1.png")); err != nil {
		t.Fatal(err)
	}
	pairs, missing, err := pairsFromDirs(pred, sb.gt, "")
	if err != nil || len(pairs) != 2 || fmt.Sprint(missing) != "[img_1.png]" {
		t.Errorf("after removal: %d pairs, missing %v, err %v", len(pairs), missing, err)
	}
	// a trimap folder lacking a file is an error.
	if err := os.Remove(filepath.Join(sb.trimap, "img_2.png")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pairsFromDirs(pred, sb.gt, sb.trimap); err == nil {
		t.Error("missing trimap: no error")
	}
}

// parseCSV reads the CSV written by writeCSV.
func parseCSV(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// checkCSV checks the header, that every image has a row, and that the
// mean row is the mean of the rows.
func checkCSV(t *testing.T, recs [][]string, names []string) {
	t.Helper()
	if len(recs) != len(names)+2 {
		t.Fatalf("%d CSV records, want header + %d + mean", len(recs), len(names))
	}
	if strings.Join(recs[0], ",") != "name,sad,mse,mad,grad,conn" {
		t.Errorf("header %v", recs[0])
	}
	last := recs[len(recs)-1]
	if last[0] != "mean" {
		t.Errorf("last row %v, want mean", last)
	}
	for col := 1; col <= 5; col++ {
		var sum float64
		for i, n := range names {
			r := recs[1+i]
			if r[0] != n {
				t.Errorf("row %d named %s, want %s", i, r[0], n)
			}
			v, err := strconv.ParseFloat(r[col], 64)
			if err != nil {
				t.Fatalf("row %v: %v", r, err)
			}
			sum += v
		}
		m, err := strconv.ParseFloat(last[col], 64)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(m-sum/float64(len(names))) > 1e-12*math.Max(1, math.Abs(m)) {
			t.Errorf("column %s: mean %v, want %v", recs[0][col], m, sum/float64(len(names)))
		}
	}
}

// TestRunPredictCLI runs the command in prediction mode with a fake model,
// then again (resumed), then in evaluation-only mode on its output.
func TestRunPredictCLI(t *testing.T) {
	sb := makeBench(t, 4, false)
	f := &fakeMatter{}
	saved := loadModel
	loadModel = func(_ context.Context, mf modelFiles) (matter, error) {
		if mf != (modelFiles{sam: "sam.npz", mam: "mam.npz"}) {
			return nil, fmt.Errorf("paths %+v", mf)
		}
		return f, nil
	}
	t.Cleanup(func() { loadModel = saved })
	out := filepath.Join(sb.root, "out")
	csv1 := filepath.Join(sb.root, "res", "pred.csv")
	md := filepath.Join(sb.root, "res", "pred.md")
	args := []string{"-benchmark", "am2k", "-images", sb.images, "-gt", sb.gt, "-out", out,
		"-sam", "sam.npz", "-mam", "mam.npz", "-trimap", sb.trimap, "-csv", csv1, "-md", md}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if f.calls != 4 {
		t.Errorf("%d model calls, want 4", f.calls)
	}
	names := []string{"img_0.png", "img_1.png", "img_2.png", "img_3.png"}
	recs := parseCSV(t, csv1)
	checkCSV(t, recs, names)
	table := stdout.String()
	if !strings.Contains(table, "| am2k | 4 | trimap==128 |") {
		t.Errorf("table:\n%s", table)
	}
	if b, err := os.ReadFile(md); err != nil || string(b) != table {
		t.Errorf("markdown file %q (err %v), want the printed table", b, err)
	}

	// resumed: no model call, same scores.
	stdout.Reset()
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 || f.calls != 4 {
		t.Fatalf("resume: exit %d, %d calls: %s", code, f.calls, stderr.String())
	}
	if stdout.String() != table {
		t.Errorf("resumed table\n%s\nwant\n%s", stdout.String(), table)
	}

	// evaluation only, on the same predictions: same per-image rows.
	csv2 := filepath.Join(sb.root, "eval.csv")
	stdout.Reset()
	code := run(context.Background(), []string{"-pred", out, "-gt", sb.gt, "-trimap", sb.trimap, "-csv", csv2, "-quiet"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, stderr.String())
	}
	if got := parseCSV(t, csv2); fmt.Sprint(got) != fmt.Sprint(recs) {
		t.Errorf("eval-only CSV\n%v\nwant\n%v", got, recs)
	}
	if !strings.Contains(stdout.String(), "| out | 4 | trimap==128 |") {
		t.Errorf("eval table:\n%s", stdout.String())
	}

	// whole image differs from the trimap region.
	csv3 := filepath.Join(sb.root, "whole.csv")
	if code := run(context.Background(), []string{"-pred", out, "-gt", sb.gt, "-csv", csv3, "-quiet", "-metrics", "sad,mad"}, &stdout, &stderr); code != 0 {
		t.Fatalf("whole: exit %d: %s", code, stderr.String())
	}
	whole := parseCSV(t, csv3)
	if whole[1][1] == recs[1][1] || whole[1][4] != "" || whole[1][5] != "" {
		t.Errorf("whole-image row %v vs trimap row %v: want a different SAD and no grad/conn", whole[1], recs[1])
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-gt", "x"},
		{"-pred", "p", "-gt", "g", "-images", "i"},
		{"-benchmark", "coco", "-images", "i", "-gt", "g", "-out", "o", "-sam", "s", "-mam", "m"},
		{"-benchmark", "am2k", "-images", "i", "-gt", "g", "-out", "o", "-sam", "s", "-mam", "m", "-prompt", "text"},
		{"-benchmark", "am2k", "-images", "i", "-gt", "g", "-out", "o", "-sam", "s", "-mam", "m", "-prompt", "text",
			"-text-json", "t", "-index-json", "x", "-gdino", "d", "-vocab", "v"},
		{"-benchmark", "rw100", "-images", "i", "-gt", "g", "-out", "o", "-sam", "s", "-mam", "m", "-prompt", "text"},
		{"-benchmark", "rw100", "-images", "i", "-gt", "g", "-out", "o", "-sam", "s", "-mam", "m", "-prompt", "text",
			"-text-json", "t", "-index-json", "x", "-gdino", "d"},
		{"-benchmark", "rw100", "-images", "i", "-gt", "g", "-out", "o", "-sam", "s", "-mam", "m", "-text-json", "t"},
		{"-benchmark", "rw100", "-images", "i", "-gt", "g", "-out", "o", "-sam", "s", "-mam", "m", "-prompt", "words"},
		{"-benchmark", "am2k", "-images", "i", "-gt", "g", "-out", "o", "-sam", "s", "-mam", "m", "-mode", "fancy"},
		{"-pred", "p", "-gt", "g", "-metrics", "iou"},
		{"-pred", "p", "-gt", "g", "-detail"},
		{"-nosuchflag"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-pred", t.TempDir(), "-gt", t.TempDir()}, &stdout, &stderr); code != 1 {
		t.Errorf("nothing to score: exit %d, want 1", code)
	}
}

// TestLoadGray checks cv2.imread(path, 0) semantics on each PNG/JPEG kind.
func TestLoadGray(t *testing.T) {
	dir := t.TempDir()
	// 16-bit gray: the high byte.
	g16 := image.NewGray16(image.Rect(0, 0, 2, 1))
	g16.SetGray16(0, 0, color.Gray16{Y: 0x80ff})
	g16.SetGray16(1, 0, color.Gray16{Y: 0x0100})
	// RGB: equal channels pass, others libpng's truncated weighted sum.
	rgb := image.NewNRGBA(image.Rect(0, 0, 3, 1))
	rgb.SetNRGBA(0, 0, color.NRGBA{77, 77, 77, 255})
	rgb.SetNRGBA(1, 0, color.NRGBA{255, 0, 0, 255})
	rgb.SetNRGBA(2, 0, color.NRGBA{10, 200, 30, 0}) // alpha ignored
	tests := []struct {
		name string
		img  image.Image
		want []uint8
	}{
		{"gray16.png", g16, []uint8{0x80, 0x01}},
		{"rgb.png", rgb, []uint8{77, 255 * 9797 >> 15, (10*9797 + 200*19234 + 30*3737) >> 15}},
	}
	for _, tc := range tests {
		p := filepath.Join(dir, tc.name)
		savePNG(t, p, tc.img)
		g, err := loadGray(p)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(g.Pix) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, g.Pix, tc.want)
		}
	}
	// colour JPEG: its luma plane.
	col := composite(16, 16, []shape{{8, 8, 4, 4}}, rand.New(rand.NewPCG(1, 1)))
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, col, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "c.jpg")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	dec, err := jpeg.Decode(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	ycc := dec.(*image.YCbCr)
	g, err := loadGray(p)
	if err != nil {
		t.Fatal(err)
	}
	for y := range 16 {
		for x := range 16 {
			if g.GrayAt(x, y).Y != ycc.Y[ycc.YOffset(x, y)] {
				t.Fatalf("jpeg (%d,%d): %d, want luma %d", x, y, g.GrayAt(x, y).Y, ycc.Y[ycc.YOffset(x, y)])
			}
		}
	}
}
