package sam

import (
	"context"
	"errors"
	"image"
	"math"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
)

// checkPrediction fails on err, then compares a prediction with the case's
// golden outputs.
func checkPrediction(t *testing.T, r decCaseRun, pred *Prediction, err error) {
	t.Helper()
	r.check(t, err,
		golden{"low_res_masks", pred.LowRes, decRelTol, true},
		golden{"iou_predictions", nn.NewTensor(pred.IoU, 1, len(pred.IoU)), decAbsTol, false},
		golden{"masks", pred.Masks(), decRelTol, true})
	if b := pred.Best(); b != r.c.Best {
		t.Errorf("best mask %d, golden %d (iou %v)", b, r.c.Best, pred.IoU)
	}
	// The best mask binarised: identical except where |logit| < 1e-4.
	post := testutil.NPY(t, r.file("post_mask.npy")).Float32s()
	bin, logits := pred.Binary(pred.Best()), pred.Mask(pred.Best())
	if len(bin) != len(post) {
		t.Fatalf("binary mask has %d values, post_mask %d", len(bin), len(post))
	}
	for i, b := range bin {
		if b != (post[i] > 0.5) && math.Abs(float64(logits[i])) >= 1e-4 {
			t.Fatalf("binary mask pixel %d: %v, golden %g (logit %g)", i, b, post[i], logits[i])
		}
	}
}

// casePrompt is the case's prompt for Predict, in original pixels.
func casePrompt(t *testing.T, r decCaseRun) Prompt {
	pts, box := r.c.originalPrompt()
	return Prompt{Points: pts, Box: box, Mask: r.maskInput(t), SingleMask: !r.c.multimask()}
}

// TestPredictorGolden runs prompt encoder, decoder and post-processing from
// prompts in original pixels, on the golden image embeddings.
func TestPredictorGolden(t *testing.T) {
	m := tinyModel(t)
	forEachDecCase(t, func(t *testing.T, r decCaseRun) {
		p := NewPredictor(m)
		emb := denseOf(testutil.NPY(t, r.imageFile("image_embeddings.npy")))
		input := denseOf(testutil.NPY(t, r.imageFile("input.npy")))
		h, w := r.info.Orig[0], r.info.Orig[1]
		if err := p.SetEmbedding(emb, input, h, w); err != nil {
			t.Fatal(err)
		}
		if nh, nw := p.InputSize(); nh != r.info.Resized[0] || nw != r.info.Resized[1] {
			t.Fatalf("input size %dx%d, golden %v", nh, nw, r.info.Resized)
		}
		pred, err := p.Predict(context.Background(), casePrompt(t, r))
		checkPrediction(t, r, pred, err)
	})
}

// TestPredictorEndToEnd runs the whole SAM from image.png for every case.
func TestPredictorEndToEnd(t *testing.T) {
	m := tinyModel(t)
	ctx := context.Background()
	preds := map[string]*Predictor{}
	forEachDecCase(t, func(t *testing.T, r decCaseRun) {
		p := preds[r.image]
		if p == nil {
			p = NewPredictor(m)
			if err := p.SetImage(ctx, testutil.Image(t, r.imageFile("image.png"))); err != nil {
				t.Fatal(err)
			}
			testutil.Check(t, "input", p.Input().Data, p.Input().Shape, testutil.NPY(t, r.imageFile("input.npy")), decAbsTol, false)
			testutil.Check(t, "image_embeddings", p.Embeddings().Data, p.Embeddings().Shape, testutil.NPY(t, r.imageFile("image_embeddings.npy")), decRelTol, true)
			preds[r.image] = p
		}
		if h, w := p.OriginalSize(); h != r.info.Orig[0] || w != r.info.Orig[1] {
			t.Fatalf("original size %dx%d, golden %v", h, w, r.info.Orig)
		}
		pred, err := p.Predict(ctx, casePrompt(t, r))
		checkPrediction(t, r, pred, err)
	})
}

// TestPredictorMaskFeedback feeds a prediction's best low-res mask back as
// the mask prompt, as the golden point_mask case was made.
func TestPredictorMaskFeedback(t *testing.T) {
	m := tinyModel(t)
	ctx := context.Background()
	dir := testutil.Golden("tiny", "dog_240")
	r := decCaseRun{image: "dog_240", dir: dir + "/point_mask"}
	testutil.JSON(t, r.imageFile("image.json"), &r.info)
	testutil.JSON(t, r.file("case.json"), &r.c)
	p := NewPredictor(m)
	if err := p.SetEmbedding(denseOf(testutil.NPY(t, r.imageFile("image_embeddings.npy"))), nil, r.info.Orig[0], r.info.Orig[1]); err != nil {
		t.Fatal(err)
	}
	in := casePrompt(t, r)
	in.Mask = nil
	first, err := p.Predict(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	prev := first.LowResMask(first.Best())
	testutil.Check(t, "mask_input", prev.Data, prev.Shape, testutil.NPY(t, r.file("mask_input.npy")), decRelTol, true)
	in.Mask = prev
	second, err := p.Predict(ctx, in)
	checkPrediction(t, r, second, err)
	if p.Input() != nil {
		t.Error("Input() is not nil after SetEmbedding without input")
	}
}

// TestPredictorBox checks boxes at the image's edges: a box partly outside
// the image is used unclipped (the reference's numerics), a box wholly
// outside is an error.
func TestPredictorBox(t *testing.T) {
	m := tinyModel(t)
	ctx := context.Background()
	p := NewPredictor(m)
	const h, w = 160, 240
	emb := denseOf(testutil.NPY(t, testutil.Golden("tiny", "dog_240", "image_embeddings.npy")))
	if err := p.SetEmbedding(emb, nil, h, w); err != nil {
		t.Fatal(err)
	}
	box := &Box{-20, 30, 260, 140}
	got, err := p.Predict(ctx, Prompt{Box: box})
	if err != nil {
		t.Fatal(err)
	}
	// The same prompt through the modules, unclipped, in the input frame.
	newh, neww := p.InputSize()
	x0, y0 := ApplyCoords(box.X0, box.Y0, h, w, newh, neww)
	x1, y1 := ApplyCoords(box.X1, box.Y1, h, w, newh, neww)
	sparse, dns, err := m.Prompt.Forward(ctx, nil, &Box{x0, y0, x1, y1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	low, _, err := m.Decoder.Forward(ctx, emb, m.Prompt.DensePE(), sparse, dns, true)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range low.Data {
		if got.LowRes.Data[i] != v {
			t.Fatalf("low-res logit %d: predictor %g, unclipped modules %g", i, got.LowRes.Data[i], v)
		}
	}
	if got.K() != 3 || len(got.Mask(2)) != h*w || got.Mask(3) != nil || got.LowResMask(-1) != nil {
		t.Fatalf("K %d, mask 2 has %d values", got.K(), len(got.Mask(2)))
	}
	bin, logits := got.Binary(0), got.Mask(0)
	for i := range bin {
		if bin[i] != (logits[i] > 0) {
			t.Fatalf("binary mask %d: %v for logit %g", i, bin[i], logits[i])
		}
	}
}

func TestPredictorErrors(t *testing.T) {
	m := tinyModel(t)
	ctx := context.Background()
	side := 4 * m.EmbedSize()
	emb := denseOf(testutil.NPY(t, testutil.Golden("tiny", "dog_240", "image_embeddings.npy")))
	nan, inf := math.NaN(), math.Inf(1)
	pt := []Point{{X: 100, Y: 80, Label: 1}}
	nanMask := nn.NewTensor(nil, 1, 1, side, side)
	nanMask.Data[5] = float32(nan)
	for _, tc := range []struct {
		name string
		in   Prompt
		is   error
		want string
	}{
		{"no prompt", Prompt{}, ErrNoPrompt, "no prompt"},
		{"empty points", Prompt{Points: []Point{}}, ErrNoPrompt, "no prompt"},
		{"nan x", Prompt{Points: []Point{{X: nan, Y: 3, Label: 1}}}, ErrBadPrompt, "not finite"},
		{"inf y", Prompt{Points: []Point{{X: 3, Y: -inf, Label: 0}}}, ErrBadPrompt, "not finite"},
		{"label 2", Prompt{Points: []Point{{X: 3, Y: 3, Label: 2}}}, ErrBadPrompt, "label 2"},
		{"label -1", Prompt{Points: []Point{{X: 3, Y: 3, Label: -1}}}, ErrBadPrompt, "label -1"},
		{"nan box", Prompt{Box: &Box{0, 0, nan, 10}}, ErrBadPrompt, "not finite"},
		{"inf box", Prompt{Points: pt, Box: &Box{0, 0, inf, 10}}, ErrBadPrompt, "not finite"},
		{"box right of image", Prompt{Box: &Box{250, 10, 300, 50}}, ErrBadPrompt, "wholly outside"},
		{"box above image", Prompt{Box: &Box{10, -50, 100, -1}}, ErrBadPrompt, "wholly outside"},
		{"point outside", Prompt{Points: []Point{{X: -1, Y: 10, Label: 1}}}, ErrBadPrompt, "outside"},
		{"box reversed", Prompt{Box: &Box{150, 10, 50, 90}}, ErrBadPrompt, "reversed"},
		{"mask too small", Prompt{Points: pt, Mask: nn.NewTensor(nil, 1, 1, side/2, side/2)}, ErrBadPrompt, "mask prompt has shape"},
		{"mask of 3", Prompt{Points: pt, Mask: nn.NewTensor(nil, 1, 3, side, side)}, ErrBadPrompt, "mask prompt has shape"},
		{"mask not square", Prompt{Mask: nn.NewTensor(nil, side, side+1)}, ErrBadPrompt, "mask prompt has shape"},
		{"mask nan", Prompt{Points: pt, Mask: nanMask}, ErrBadPrompt, "NaN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPredictor(m)
			if err := p.SetEmbedding(emb, nil, 160, 240); err != nil {
				t.Fatal(err)
			}
			_, err := p.Predict(ctx, tc.in)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %v containing %q", err, tc.is, tc.want)
			}
		})
	}

	t.Run("before SetImage", func(t *testing.T) {
		if _, err := NewPredictor(m).Predict(ctx, Prompt{Points: pt}); !errors.Is(err, ErrNoImage) {
			t.Fatalf("got %v, want ErrNoImage", err)
		}
	})
	t.Run("zero-width image", func(t *testing.T) {
		p := NewPredictor(m)
		if err := p.SetImage(ctx, image.NewRGBA(image.Rect(0, 0, 0, 10))); !errors.Is(err, ErrBadImage) {
			t.Fatalf("got %v, want ErrBadImage", err)
		}
		if p.IsImageSet() {
			t.Fatal("image set after a failed SetImage")
		}
	})
	t.Run("nil image", func(t *testing.T) {
		if err := NewPredictor(m).SetImage(ctx, nil); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("failed SetImage forgets the old image", func(t *testing.T) {
		p := NewPredictor(m)
		if err := p.SetEmbedding(emb, nil, 160, 240); err != nil {
			t.Fatal(err)
		}
		if err := p.SetImage(ctx, image.NewGray(image.Rect(0, 0, 5, 0))); err == nil {
			t.Fatal("zero-height image: no error")
		}
		if _, err := p.Predict(ctx, Prompt{Points: pt}); !errors.Is(err, ErrNoImage) {
			t.Fatalf("got %v, want ErrNoImage", err)
		}
	})
	for _, tc := range []struct {
		name  string
		emb   *nn.Tensor
		input *nn.Tensor
		h, w  int
		want  string
	}{
		{"nil embeddings", nil, nil, 10, 10, "embeddings have shape"},
		{"embeddings shape", nn.NewTensor(nil, 1, 32, 8, 8), nil, 10, 10, "embeddings have shape"},
		{"input shape", emb, nn.NewTensor(nil, 1, 3, 128, 128), 10, 10, "input has shape"},
		{"zero width", emb, nil, 10, 0, "image is 0x10"},
	} {
		t.Run("SetEmbedding/"+tc.name, func(t *testing.T) {
			if err := NewPredictor(m).SetEmbedding(tc.emb, tc.input, tc.h, tc.w); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		p := NewPredictor(m)
		if err := p.SetEmbedding(emb, nil, 160, 240); err != nil {
			t.Fatal(err)
		}
		c, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := p.Predict(c, Prompt{Points: pt}); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
}

func BenchmarkPredictTiny(b *testing.B) {
	m := tinyModel(b)
	p := NewPredictor(m)
	emb := denseOf(testutil.NPY(b, testutil.Golden("tiny", "dog_240", "image_embeddings.npy")))
	if err := p.SetEmbedding(emb, nil, 160, 240); err != nil {
		b.Fatal(err)
	}
	in := Prompt{Points: []Point{{X: 120, Y: 80, Label: 1}}}
	testutil.Bench(b, func() error {
		_, err := p.Predict(context.Background(), in)
		return err
	})
}
