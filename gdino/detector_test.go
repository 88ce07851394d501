package gdino

import (
	"context"
	"errors"
	"image"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
)

var (
	tinyOnce sync.Once
	tinyDet  *Detector
	tinyErr  error
)

// tinyDetector loads the golden tiny checkpoint and vocabulary as a user
// would (Load), once per test binary.
func tinyDetector(t testing.TB) *Detector {
	t.Helper()
	tinyOnce.Do(func() {
		dir := testutil.Golden("gdino_tiny", "weights")
		tinyDet, tinyErr = Load(context.Background(), filepath.Join(dir, "gdino.pth"), filepath.Join(dir, "vocab.txt"))
	})
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	return tinyDet
}

type goldenResult struct {
	Caption string `json:"caption"`
	Result  struct {
		BoxesXYXY   [][4]float64 `json:"boxes_xyxy"`
		Scores      []float64    `json:"scores"`
		Phrases     []string     `json:"phrases"`
		NMSKeep     []int        `json:"nms_keep"`
		AfterNMS    [][4]float64 `json:"boxes_xyxy_after_nms"`
		ScoresNMS   []float64    `json:"scores_after_nms"`
		BestBoxXYXY [4]float64   `json:"best_box_xyxy"`
	} `json:"result"`
}

var goldenCaptions = []string{"cat_dog", "a_sleepy_cat", "whiskered_kitty_caf_sofa"}

// TestDetectGolden runs the whole detector through its public API on the
// golden image and captions and compares every dumped stage that the
// golden data has, and the detections, with the official code's.
func TestDetectGolden(t *testing.T) {
	d := tinyDetector(t)
	img := testutil.Image(t, testutil.Golden("gdino_tiny", "cat_dog_240", "image.png"))
	im, err := d.Encode(context.Background(), img, Options{Dump: func(name string, shape []int, data []float32) {
		checkGoldenStage(t, filepath.Join("cat_dog_240", name), shape, data)
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range goldenCaptions {
		t.Run(c, func(t *testing.T) {
			var g goldenResult
			testutil.JSON(t, testutil.Golden("gdino_tiny", "cat_dog_240", c, "case.json"), &g)
			seen := map[string]bool{}
			opt := DefaultOptions()
			opt.Dump = func(name string, shape []int, data []float32) {
				seen[name] = true
				checkGoldenStage(t, filepath.Join("cat_dog_240", c, name), shape, data)
			}
			res, err := im.Detect(context.Background(), g.Caption, opt)
			if err != nil {
				t.Fatal(err)
			}
			for _, must := range []string{"input_ids", "bert_last_hidden_state", "encoded_text", "enc1_memory", "topk_proposals", "pred_logits", "pred_boxes"} {
				if !seen[must] {
					t.Errorf("stage %s was not dumped", must)
				}
			}
			checkDetections(t, res, &g)
			// Without dumps the same detections.
			again, err := im.Detect(context.Background(), g.Caption, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			checkDetections(t, again, &g)
		})
	}
}

func checkDetections(t *testing.T, res *Result, g *goldenResult) {
	t.Helper()
	r := g.Result
	if len(res.All) != len(r.BoxesXYXY) || len(res.Detections) != len(r.AfterNMS) {
		t.Fatalf("%d detections, %d after NMS; want %d, %d", len(res.All), len(res.Detections), len(r.BoxesXYXY), len(r.AfterNMS))
	}
	for i, det := range res.All {
		for k := 0; k < 4; k++ {
			if math.Abs(float64(det.Box[k])-r.BoxesXYXY[i][k]) > 1e-3 {
				t.Errorf("detection %d box %v, want %v", i, det.Box, r.BoxesXYXY[i])
				break
			}
		}
		if math.Abs(float64(det.Score)-r.Scores[i]) > 1e-4 {
			t.Errorf("detection %d score %v, want %v", i, det.Score, r.Scores[i])
		}
		if det.Phrase != r.Phrases[i] {
			t.Errorf("detection %d phrase %q, want %q", i, det.Phrase, r.Phrases[i])
		}
	}
	for i, det := range res.Detections {
		for k := 0; k < 4; k++ {
			if math.Abs(float64(det.Box[k])-r.AfterNMS[i][k]) > 1e-3 {
				t.Errorf("kept %d box %v, want %v", i, det.Box, r.AfterNMS[i])
				break
			}
		}
		if math.Abs(float64(det.Score)-r.ScoresNMS[i]) > 1e-4 {
			t.Errorf("kept %d score %v, want %v", i, det.Score, r.ScoresNMS[i])
		}
	}
	best, err := res.Best()
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 4; k++ {
		if math.Abs(float64(best.Box[k])-r.BestBoxXYXY[k]) > 1e-3 {
			t.Errorf("best box %v, want %v", best.Box, r.BestBoxXYXY)
			break
		}
	}
}

// checkGoldenStage compares a dumped stage with its golden file when the
// golden data has one: integers and masks exactly, -inf at the same
// places, other values within relative 1e-4 of the largest finite
// magnitude (1e-6 absolute for the normalised input).
func checkGoldenStage(t *testing.T, rel string, shape []int, data []float32) {
	t.Helper()
	path := testutil.Golden("gdino_tiny", rel+".npy")
	if _, err := os.Stat(path); err != nil {
		return
	}
	want := testutil.NPY(t, path)
	name := filepath.Base(rel)
	w := want.Float32s()
	if len(w) != len(data) {
		t.Errorf("%s: %d values (shape %v), want %d (shape %v)", name, len(data), shape, len(w), want.Shape)
		return
	}
	if !sameShape(shape, want.Shape) {
		t.Errorf("%s: shape %v, want %v", name, shape, want.Shape)
	}
	exact := want.IsInt() || strings.HasPrefix(string(want.Stored), "bool") || want.Stored == "uint8"
	if exact && name != "resized" {
		for i := range w {
			if w[i] != data[i] {
				t.Errorf("%s: element %s is %v, want %v", name, testutil.Index(i, want.Shape), data[i], w[i])
				return
			}
		}
		return
	}
	// -inf entries at the same positions, compared on the finite ones.
	g2, w2 := make([]float32, 0, len(w)), make([]float32, 0, len(w))
	for i := range w {
		wi, gi := math.IsInf(float64(w[i]), -1), math.IsInf(float64(data[i]), -1)
		if wi != gi {
			t.Errorf("%s: element %s is %v, want %v", name, testutil.Index(i, want.Shape), data[i], w[i])
			return
		}
		if !wi {
			g2, w2 = append(g2, data[i]), append(w2, w[i])
		}
	}
	finite := *want
	finite.Shape, finite.F32, finite.I64 = []int{len(w2)}, w2, nil
	tol, relative := 1e-4, true
	if name == "input" {
		tol, relative = 1e-6, false
	}
	testutil.Check(t, name, g2, []int{len(g2)}, &finite, tol, relative)
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDetectBadInput(t *testing.T) {
	d := tinyDetector(t)
	ctx := context.Background()
	img := image.NewRGBA(image.Rect(0, 0, 40, 30))
	var typedNil *image.RGBA
	cases := []struct {
		name    string
		img     image.Image
		caption string
		want    error
	}{
		{"nil image", nil, "cat", ErrBadImage},
		{"typed nil image", typedNil, "cat", ErrBadImage},
		{"empty image", image.NewRGBA(image.Rect(0, 0, 0, 5)), "cat", ErrBadImage},
		{"empty caption", img, "", ErrEmptyCaption},
		{"blank caption", img, " \t\n", ErrEmptyCaption},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := d.Detect(ctx, c.img, c.caption, DefaultOptions())
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	// Valid but unusual inputs give results, not errors.
	for _, c := range []struct {
		name    string
		img     image.Image
		caption string
	}{
		{"1 pixel", image.NewRGBA(image.Rect(0, 0, 1, 1)), "cat"},
		{"punctuation only", img, "...!?"},
		{"long caption", img, strings.Repeat("a cat . ", 200)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := d.Detect(ctx, c.img, c.caption, DefaultOptions()); err != nil {
				t.Fatal(err)
			}
		})
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := d.Detect(cctx, img, "cat", DefaultOptions()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v", err)
	}
	big := image.NewGray(image.Rect(0, 0, 100, 100))
	if _, err := d.Detect(ctx, big, "cat", Options{MaxPixels: 5000}); !errors.Is(err, ErrBadImage) {
		t.Fatalf("over the pixel limit: err = %v", err)
	}
}

func TestLoadWrongModel(t *testing.T) {
	dir := testutil.Golden("gdino_tiny", "weights")
	_, err := Load(context.Background(), testutil.Golden("tiny", "weights", "sam.pth"), filepath.Join(dir, "vocab.txt"))
	if err == nil {
		t.Fatal("a SAM checkpoint loaded as GroundingDINO")
	}
	trunc := filepath.Join(t.TempDir(), "vocab.txt")
	b, _ := os.ReadFile(filepath.Join(dir, "vocab.txt"))
	os.WriteFile(trunc, b[:len(b)/2], 0o644)
	if _, err := Load(context.Background(), filepath.Join(dir, "gdino.pth"), trunc); !errors.Is(err, ErrBadVocab) {
		t.Fatalf("truncated vocab: err = %v, want ErrBadVocab", err)
	}
}

func TestRandomWeightsBuild(t *testing.T) {
	cfg := Tiny()
	s := RandomWeights(cfg, 7)
	tok := tinyDetector(t).Tokenizer()
	d, err := New(s, cfg, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Detect(context.Background(), image.NewRGBA(image.Rect(0, 0, 50, 40)), "a cat", DefaultOptions()); err != nil {
		t.Fatal(err)
	}
}
