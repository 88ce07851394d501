package server

// The tests' use of the mam API (the library results the server's answers
// are compared with), next to model.go.

import (
	"context"
	"image"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/m2m"
	"github.com/mam-go/mam-go/mam"
	"github.com/mam-go/mam-go/sam"
)

var (
	tinyOnce sync.Once
	tinyM    *Model
	tinyErr  error
)

// tinyModel is the random-weight test model of testdata/golden/tiny,
// loaded once per test binary (a Model is safe for concurrent use).
func tinyModel(t testing.TB) *Model {
	t.Helper()
	tinyOnce.Do(func() {
		tinyM, tinyErr = LoadModel(testutil.Golden("tiny", "weights", "sam.pth"), testutil.Golden("tiny", "weights", "mam.pth"))
	})
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	return tinyM
}

// libraryAlpha is the library's 8-bit matte of img for the prompt: what
// every answer of the server must equal.
func libraryAlpha(t testing.TB, m *Model, img image.Image, p prompt) []uint8 {
	t.Helper()
	return libraryResult(t, m, img, p).Gray().Pix
}

// TestMattePipelineEqualsLibrary checks that the engine's own pipeline
// (used for mask prompts) gives, without a mask, bit for bit the matte of
// mam.Session.Matte, in every mode.
func TestMattePipelineEqualsLibrary(t *testing.T) {
	m := tinyModel(t)
	eng, err := newEngine(m)
	if err != nil {
		t.Fatal(err)
	}
	// The dog photo, or the small strip under the race detector.
	var img image.Image = testImg
	cases := []struct {
		name string
		p    prompt
	}{
		{"box", prompt{Box: testBox}},
		{"point", prompt{Points: []point{testPoint}}},
		{"points", prompt{Points: []point{testPoint, {10, 8, 0}}}},
	}
	if !raceEnabled {
		img = testutil.Image(t, testutil.Golden("tiny", "dog_240", "image.png"))
		cases = append(cases, []struct {
			name string
			p    prompt
		}{
			{"dog box", prompt{Box: &box{52.8, 28.8, 187.2, 137.6}}},
			{"dog point", prompt{Points: []point{{120, 80, 1}}}},
		}...)
	}
	x, err := eng.encode(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		for _, mode := range modes {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				p := tc.p
				p.Mode = mode
				want, err := eng.matte(context.Background(), x, p) // mam.Session.Matte
				if err != nil {
					t.Fatal(err)
				}
				got := &result{res: libraryResult(t, eng.m, img, p)} // a session of the library's own
				if got.iou() != want.iou() || got.width() != want.width() || got.height() != want.height() {
					t.Fatalf("IoU %v %dx%d, library %v %dx%d", got.iou(), got.width(), got.height(), want.iou(), want.width(), want.height())
				}
				for i, v := range want.alpha() {
					if got.alpha()[i] != v {
						t.Fatalf("alpha %d = %v, library %v", i, got.alpha()[i], v)
					}
				}
			})
		}
	}
}

// TestMaskPrompt runs a mask prompt (the logits of a first result) and
// checks its shape and that the logits of a prompt are SAM's best mask.
func TestMaskPrompt(t *testing.T) {
	m := tinyModel(t)
	eng, err := newEngine(m)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	x, err := eng.encode(ctx, testImg)
	if err != nil {
		t.Fatal(err)
	}
	first := prompt{Points: []point{testPoint}, Mode: "postprocess"}
	logits, err := eng.logits(ctx, x, first)
	if err != nil {
		t.Fatal(err)
	}
	if side := eng.logitsSide(); len(logits) != side*side {
		t.Fatalf("%d logits, want %d^2", len(logits), side)
	}
	second := first
	second.Mask = logits
	r, err := eng.matte(ctx, x, second)
	if err != nil {
		t.Fatal(err)
	}
	if r.width() != 160 || r.height() != 16 || len(r.alpha()) != 160*16 {
		t.Fatalf("result %dx%d with %d values", r.width(), r.height(), len(r.alpha()))
	}
	if _, err := eng.matte(ctx, x, prompt{Text: "a dog", Mode: "postprocess"}); !isPromptError(err) { // no detector
		t.Fatalf("text prompt: got %v, want a prompt error", err)
	}
}

// libraryResult is the library's result for the prompt on img.
func libraryResult(t testing.TB, m *Model, img image.Image, p prompt) *mam.Result {
	t.Helper()
	sess, err := m.NewSession(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	mode, err := mam.ParseMode(p.Mode)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sess.Matte(context.Background(), (&engine{m: m}).mam(p), mam.WithMode(mode))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// libraryCutout is the library's cutout (straight alpha) of img.
func libraryCutout(t testing.TB, m *Model, img image.Image, p prompt) *image.NRGBA {
	t.Helper()
	c, err := libraryResult(t, m, img, p).Cutout(img)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// resultForTest is a result with the given matte.
func resultForTest(w, h int, alpha []float32) *result {
	return &result{res: &mam.Result{Width: w, Height: h, Alpha: alpha, Mask: make([]uint8, w*h), Mode: mam.PostProcess}}
}

var (
	vitbOnce sync.Once
	vitbM    *Model
	vitbErr  error
)

// vitbModel is ViT-B SAM and M2M at the released sizes with seeded random
// weights (the speed does not depend on the values): no checkpoint needed.
func vitbModel(b testing.TB) *Model {
	b.Helper()
	vitbOnce.Do(func() {
		vitbM, vitbErr = mam.New(sam.RandomWeights(sam.ViTB(), 1), m2m.RandomWeights(m2m.Default(), 2))
	})
	if vitbErr != nil {
		b.Fatal(vitbErr)
	}
	return vitbM
}

// TestTextPromptEngine: with a detector the engine takes text prompts, and
// mattes them as the library does.
func TestTextPromptEngine(t *testing.T) {
	w := testutil.Golden("gdino_tiny", "weights")
	m, err := LoadModel(testutil.Golden("tiny", "weights", "sam.pth"), testutil.Golden("tiny", "weights", "mam.pth"),
		mam.WithDetector(filepath.Join(w, "gdino.pth"), filepath.Join(w, "vocab.txt")))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := newEngine(m)
	if err != nil {
		t.Fatal(err)
	}
	if !eng.textPrompts() {
		t.Fatal("a model with a detector does not say it takes text prompts")
	}
	img := testutil.Image(t, testutil.Golden("gdino_tiny", "cat_dog_240", "image.png"))
	x, err := eng.encode(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	p := prompt{Text: "cat . dog .", Mode: "postprocess"}
	got, err := eng.matte(context.Background(), x, p)
	if err != nil {
		t.Fatal(err)
	}
	want := libraryResult(t, m, img, p)
	if !slices.Equal(got.alpha(), want.Alpha) {
		t.Fatal("the server's text matte differs from the library's")
	}
	if _, err := eng.matte(context.Background(), x, prompt{Text: "cat", Mode: "postprocess", Box: &box{1, 1, 5, 5}}); !isPromptError(err) {
		t.Fatalf("text and box: %v, want a prompt error", err)
	}
}
