package mam

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mam-go/mam-go/gdino"
	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/weights"
)

// tinyTextModel is the tiny SAM + M2M test model with the golden tiny
// GroundingDINO, loaded as a user would (Load with WithDetector).
func tinyTextModel(t testing.TB) *Model {
	t.Helper()
	w := testutil.Golden("gdino_tiny", "weights")
	m, err := Load(context.Background(), testutil.Golden("tiny", "weights", "sam.pth"), testutil.Golden("tiny", "weights", "mam.pth"),
		WithDetector(filepath.Join(w, "gdino.pth"), filepath.Join(w, "vocab.txt")))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTextPrompt: referring matting from a caption is the box prompt of the
// detector's best box (the reference's best_box_xyxy), as the demo runs it.
func TestTextPrompt(t *testing.T) {
	m := tinyTextModel(t)
	ctx := context.Background()
	img := testutil.Image(t, testutil.Golden("gdino_tiny", "cat_dog_240", "image.png"))
	s, err := m.NewSession(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Caption string `json:"caption"`
		Result  struct {
			Best     [4]float64   `json:"best_box_xyxy"`
			AfterNMS [][4]float64 `json:"boxes_xyxy_after_nms"`
		} `json:"result"`
	}
	testutil.JSON(t, testutil.Golden("gdino_tiny", "cat_dog_240", "cat_dog", "case.json"), &g)
	for _, mode := range []Mode{PostProcess, MaskGuide} {
		byText, err := s.Matte(ctx, Prompt{Text: g.Caption}, WithMode(mode))
		if err != nil {
			t.Fatal(err)
		}
		if byText.Detection == nil {
			t.Fatal("text result without its detection")
		}
		for k := range 4 {
			if d := math.Abs(float64(byText.Detection.Box[k]) - g.Result.Best[k]); d > 1e-3 {
				t.Fatalf("chosen box %v, want %v", byText.Detection.Box, g.Result.Best)
			}
		}
		byBox, err := s.Matte(ctx, Prompt{Box: detectionBox(*byText.Detection)}, WithMode(mode))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(byText.Alpha, byBox.Alpha) || !slices.Equal(byText.Mask, byBox.Mask) {
			t.Fatalf("%s: the text prompt's matte differs from its box's", mode)
		}
		// Points added to a text prompt reach SAM.
		withPt, err := s.Matte(ctx, Prompt{Text: g.Caption, Points: []Point{{X: 20, Y: 150, Label: 0}}}, WithMode(mode))
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(withPt.Scores, byText.Scores) {
			t.Errorf("%s: a background point did not change SAM's scores", mode)
		}
	}

	inst, err := s.MatteInstances(ctx, Prompt{Text: g.Caption})
	if err != nil {
		t.Fatal(err)
	}
	if len(inst) != len(g.Result.AfterNMS) {
		t.Fatalf("%d instances, want %d", len(inst), len(g.Result.AfterNMS))
	}
	for i, r := range inst {
		one, err := s.Matte(ctx, Prompt{Box: detectionBox(*r.Detection)})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(one.Alpha, r.Alpha) {
			t.Fatalf("instance %d differs from its box's matte", i)
		}
	}
	sem, err := s.MatteSemantic(ctx, Prompt{Text: g.Caption})
	if err != nil {
		t.Fatal(err)
	}
	for i := range sem.Alpha {
		var want float32
		for _, r := range inst {
			want = max(want, r.Alpha[i])
		}
		if sem.Alpha[i] != want {
			t.Fatalf("semantic alpha[%d] = %v, want the instances' max %v", i, sem.Alpha[i], want)
		}
	}
	phrases, order, err := s.MattePhrases(ctx, Prompt{Text: g.Caption})
	if err != nil || len(order) == 0 || len(phrases) != len(order) {
		t.Fatalf("phrases %v %v %v", len(phrases), order, err)
	}
}

func TestTextPromptErrors(t *testing.T) {
	ctx := context.Background()
	img := testutil.Image(t, testutil.Golden("gdino_tiny", "cat_dog_240", "image.png"))
	m := tinyTextModel(t)
	cases := []struct {
		name string
		p    Prompt
		opts []MatteOption
		want error
	}{
		{"text and box", Prompt{Text: "cat", Box: &Box{X1: 10, Y1: 10}}, nil, ErrBadPrompt},
		{"blank text", Prompt{Text: "  "}, nil, ErrNoPrompt},
		{"nothing found", Prompt{Text: "cat"}, []MatteOption{WithThresholds(0.999, 0.25, 0.5)}, ErrNoDetection},
		{"bad threshold", Prompt{Text: "cat"}, []MatteOption{WithThresholds(float32(math.NaN()), 0.25, 0.5)}, ErrBadPrompt},
		{"empty caption", Prompt{Text: "\x00"}, nil, gdino.ErrEmptyCaption},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := m.Matte(ctx, img, c.p, c.opts...); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	plain := tinyModel(t)
	if _, err := plain.Matte(ctx, img, Prompt{Text: "cat"}); !errors.Is(err, ErrNoDetector) {
		t.Fatalf("no detector: err = %v", err)
	}
	s, err := m.NewSession(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if rs, err := s.MatteInstances(ctx, Prompt{Text: "cat"}, WithThresholds(0.999, 0.25, 0.5)); err != nil || len(rs) != 0 {
		t.Fatalf("instances with nothing found: %d, %v", len(rs), err)
	}
	if _, err := s.MatteSemantic(ctx, Prompt{Text: "cat"}, WithThresholds(0.999, 0.25, 0.5)); !errors.Is(err, ErrNoDetection) {
		t.Fatalf("semantic with nothing found: %v", err)
	}
	if _, err := Load(ctx, testutil.Golden("tiny", "weights", "sam.pth"), testutil.Golden("tiny", "weights", "mam.pth"),
		WithDetector(testutil.Golden("tiny", "weights", "sam.pth"), "x")); !errors.Is(err, weights.ErrMissing) {
		t.Fatalf("a SAM checkpoint as the detector: %v", err)
	}
}

// TestDetectReused: the same caption at the same thresholds reuses the
// session's last detection (a text prompt corrected with points does not
// run the detector again), as a copy the caller may change; another
// caption or other thresholds run it.
func TestDetectReused(t *testing.T) {
	m := tinyTextModel(t)
	ctx := context.Background()
	s, err := m.NewSession(ctx, testutil.Image(t, testutil.Golden("gdino_tiny", "cat_dog_240", "image.png")))
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Detect(ctx, "cat . dog .")
	if err != nil {
		t.Fatal(err)
	}
	want := cloneResult(first)
	first.Detections[0].Box[0] = -1e9 // the caller's copy
	if s.lastDet == nil || s.lastDet.res.Detections[0].Box != want.Detections[0].Box {
		t.Fatal("the session's detection is not kept apart from the caller's")
	}
	cached := s.lastDet.res
	again, err := s.Detect(ctx, "cat . dog .")
	if err != nil {
		t.Fatal(err)
	}
	if s.lastDet.res != cached {
		t.Fatal("the same caption ran the detector again")
	}
	if !slices.Equal(again.Detections, want.Detections) || again.Caption != want.Caption {
		t.Fatalf("reused detection %v, want %v", again.Detections, want.Detections)
	}
	// Other thresholds and another caption run the detector.
	if _, err := s.Detect(ctx, "cat . dog .", WithThresholds(0.3, 0.25, 0.5)); err != nil {
		t.Fatal(err)
	}
	if s.lastDet.res == cached || s.lastDet.opts.BoxThreshold != 0.3 {
		t.Fatal("other thresholds reused the last detection")
	}
	other, err := s.Detect(ctx, "a sleepy cat")
	if err != nil {
		t.Fatal(err)
	}
	if other.Caption == want.Caption {
		t.Fatalf("another caption gave the last one's result (%q)", other.Caption)
	}
	// A fresh session's detection of the same caption is the reused one.
	s2, err := m.NewSession(ctx, testutil.Image(t, testutil.Golden("gdino_tiny", "cat_dog_240", "image.png")))
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := s2.Detect(ctx, "cat . dog .")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fresh.Detections, want.Detections) {
		t.Fatalf("fresh detection %v, reused %v", fresh.Detections, want.Detections)
	}
}
