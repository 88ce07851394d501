package sam

import (
	"context"
	"errors"
	"math/rand"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// TestMaskDecoderGolden feeds the decoder the golden image embeddings,
// dense PE and prompt embeddings of every case, so it tests the decoder
// alone.
func TestMaskDecoderGolden(t *testing.T) {
	d := tinyMaskDecoder(t)
	forEachDecCase(t, func(t *testing.T, r decCaseRun) {
		emb := denseOf(testutil.NPY(t, r.imageFile("image_embeddings.npy")))
		pe := denseOf(testutil.NPY(t, r.imageFile("dense_pe.npy")))
		sparse := denseOf(testutil.NPY(t, r.file("sparse.npy")))
		dns := denseOf(testutil.NPY(t, r.file("dense.npy")))
		masks, iou, err := d.Forward(context.Background(), emb, pe, sparse, dns, r.c.multimask())
		r.check(t, err, golden{"low_res_masks", masks, decRelTol, true}, golden{"iou_predictions", iou, decAbsTol, false})
	})
}

// TestMaskDecoderGraphCache checks that graphs are kept per token count and
// that a cached graph gives the same result as a fresh decoder, whatever
// ran in between.
func TestMaskDecoderGraphCache(t *testing.T) {
	d := tinyMaskDecoder(t)
	cfg := Tiny()
	dim, e := cfg.PromptDim, cfg.EmbedSize()
	r := rand.New(rand.NewSource(7))
	rnd := func(shape ...int) *nn.Tensor {
		t := nn.NewTensor(nil, shape...)
		for i := range t.Data {
			t.Data[i] = float32(r.NormFloat64())
		}
		return t
	}
	emb, pe, dns := rnd(1, dim, e, e), rnd(1, dim, e, e), rnd(1, dim, e, e)
	ctx := context.Background()
	var first [4][]float32
	for round := 0; round < 2; round++ {
		for _, n := range []int{0, 2, 3, 5} {
			var sparse *nn.Tensor
			if n > 0 {
				sparse = nn.NewTensor(nil, 1, n, dim)
				for i := range sparse.Data {
					sparse.Data[i] = float32(i%7) * 0.1
				}
			}
			masks, iou, err := d.Forward(ctx, emb, pe, sparse, dns, true)
			if err != nil {
				t.Fatalf("%d tokens: %v", n, err)
			}
			if !masks.HasShape(1, 3, 4*e, 4*e) {
				t.Fatalf("%d tokens: masks %v, want (1, 3, %d, %d)", n, masks.Shape, 4*e, 4*e)
			}
			if !iou.HasShape(1, 3) {
				t.Fatalf("%d tokens: iou %v, want (1, 3)", n, iou.Shape)
			}
			k := map[int]int{0: 0, 2: 1, 3: 2, 5: 3}[n]
			if round == 0 {
				first[k] = masks.Data
				continue
			}
			for i, v := range masks.Data {
				if v != first[k][i] {
					t.Fatalf("%d tokens: second run differs at %d: %g vs %g", n, i, v, first[k][i])
				}
			}
		}
	}
	if len(d.graphs) != 4 {
		t.Fatalf("%d graphs cached, want 4", len(d.graphs))
	}
	// Single-mask output is token 0 of the same run.
	all, allIoU, err := d.PredictMasks(ctx, emb, pe, nil, dns)
	if err != nil {
		t.Fatal(err)
	}
	one, oneIoU, err := d.Forward(ctx, emb, pe, nil, dns, false)
	if err != nil {
		t.Fatal(err)
	}
	plane := 16 * e * e
	for i, v := range one.Data {
		if v != all.Data[i] {
			t.Fatalf("single mask differs from token 0 at %d", i)
		}
	}
	if oneIoU.Data[0] != allIoU.Data[0] || len(one.Data) != plane {
		t.Fatalf("single output: iou %v of %v, %d values", oneIoU.Data, allIoU.Data, len(one.Data))
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := d.Forward(cctx, emb, pe, nil, dns, true); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: got %v", err)
	}
}

func TestMaskDecoderErrors(t *testing.T) {
	d := tinyMaskDecoder(t)
	cfg := Tiny()
	dim, e := cfg.PromptDim, cfg.EmbedSize()
	good := nn.NewTensor(nil, 1, dim, e, e)
	sparse := nn.NewTensor(nil, 1, 2, dim)
	for _, tc := range []struct {
		name                   string
		emb, pe, sparse, dense *nn.Tensor
		want                   string
	}{
		{"nil embeddings", nil, good, sparse, good, "image_embeddings is nil"},
		{"embeddings size", nn.NewTensor(nil, 1, dim, e+1, e), good, sparse, good, "image_embeddings has shape"},
		{"pe width", good, nn.NewTensor(nil, 1, dim/2, e, e), sparse, good, "image_pe has shape"},
		{"dense missing", good, good, sparse, nil, "dense_prompt_embeddings is nil"},
		{"sparse width", good, good, nn.NewTensor(nil, 1, 2, dim+1), good, "sparse prompt embeddings have shape"},
		{"sparse rank", good, good, nn.NewTensor(nil, 2, dim), good, "sparse prompt embeddings have shape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := d.Forward(context.Background(), tc.emb, tc.pe, tc.sparse, tc.dense, true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	wrong := Tiny()
	wrong.DecoderMLP = 128
	if _, err := NewMaskDecoder(tinySAMStore(t).Sub("mask_decoder"), wrong); !errors.Is(err, weights.ErrShape) {
		t.Fatalf("mlp 128 on a 64 checkpoint: got %v, want a shape error", err)
	}
}

func BenchmarkMaskDecoderTiny(b *testing.B) {
	d := tinyMaskDecoder(b)
	r := decCaseRun{image: "dog_240", dir: testutil.Golden("tiny", "dog_240", "points_neg")}
	emb := denseOf(testutil.NPY(b, r.imageFile("image_embeddings.npy")))
	pe := denseOf(testutil.NPY(b, r.imageFile("dense_pe.npy")))
	sparse := denseOf(testutil.NPY(b, r.file("sparse.npy")))
	dns := denseOf(testutil.NPY(b, r.file("dense.npy")))
	testutil.Bench(b, func() error {
		_, _, err := d.Forward(context.Background(), emb, pe, sparse, dns, true)
		return err
	})
}

// BenchmarkMaskDecoderViTB times one prompt (a box) through the prompt
// encoder, the mask decoder and the postprocessing to a 1024 x 768 image,
// at the released ViT-B size with seeded random weights and embeddings
// (no image encoding):
//
//	go test ./sam/ -run '^$' -bench MaskDecoderViTB -benchtime 10x -cpu 2
func BenchmarkMaskDecoderViTB(b *testing.B) {
	cfg := ViTB()
	m, err := New(RandomWeights(cfg, 1), cfg)
	if err != nil {
		b.Fatal(err)
	}
	e := cfg.EmbedSize()
	rng := rand.New(rand.NewSource(2))
	emb := make([]float32, cfg.PromptDim*e*e)
	for i := range emb {
		emb[i] = rng.Float32()*2 - 1
	}
	p := NewPredictor(m)
	if err := p.SetEmbedding(nn.NewTensor(emb, 1, cfg.PromptDim, e, e), nil, 768, 1024); err != nil {
		b.Fatal(err)
	}
	in := Prompt{Box: &Box{X0: 200, Y0: 150, X1: 800, Y1: 650}}
	testutil.Bench(b, func() error {
		_, err := p.Predict(context.Background(), in)
		return err
	})
}
