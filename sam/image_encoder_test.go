package sam

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// encTol is the golden README's tolerance for encoder outputs: relative
// 1e-4 of the tensor's largest magnitude.
const encTol = 1e-4

func newTinyEncoder(t testing.TB) *ImageEncoder {
	return testutil.Must(NewImageEncoder(tinySAMStore(t).Sub("image_encoder"), Tiny()))(t)
}

// goldenDense loads a golden .npy as a dense tensor.
func goldenDense(t testing.TB, path string) *nn.Tensor {
	t.Helper()
	w := testutil.NPY(t, path)
	return nn.NewTensor(append([]float32(nil), w.Float32s()...), w.Shape...)
}

func TestImageEncoderGolden(t *testing.T) {
	e := newTinyEncoder(t)
	for _, name := range goldenImages {
		t.Run(name, func(t *testing.T) {
			x := goldenDense(t, testutil.Golden("tiny", name, "input.npy"))
			got := map[string]*nn.Tensor{}
			out, err := e.ForwardTrace(context.Background(), x, func(stage string, v *nn.Tensor) {
				got[stage] = v
			})
			if err != nil {
				t.Fatal(err)
			}
			stages := []struct{ stage, file string }{
				{"embed", "enc_embed.npy"},
				{"block00", "enc_block00.npy"},
				{"block01", "enc_block01.npy"},
				{"neck", "image_embeddings.npy"},
			}
			checked := 0
			for _, s := range stages {
				path := testutil.Golden("tiny", name, s.file)
				if _, err := os.Stat(path); err != nil {
					t.Logf("%s: no golden %s", s.stage, s.file)
					continue
				}
				v, ok := got[s.stage]
				if !ok {
					t.Errorf("trace has no stage %q", s.stage)
					continue
				}
				testutil.Check(t, s.stage, v.Data, v.Shape, testutil.NPY(t, path), encTol, true)
				checked++
			}
			if checked < 2 {
				t.Errorf("only %d golden stages checked", checked)
			}
			testutil.Check(t, "image_embeddings", out.Data, out.Shape, testutil.NPY(t, testutil.Golden("tiny", name, "image_embeddings.npy")), encTol, true)
		})
	}
}

// TestImageEncoderFromPNG runs the whole front end: PNG -> Preprocess ->
// Forward, against the golden embeddings.
func TestImageEncoderFromPNG(t *testing.T) {
	e := newTinyEncoder(t)
	for _, name := range goldenImages {
		t.Run(name, func(t *testing.T) {
			x, _, _ := e.Config().Preprocess(loadPNG(t, name))
			out, err := e.Forward(context.Background(), x)
			if err != nil {
				t.Fatal(err)
			}
			testutil.Check(t, "image_embeddings", out.Data, out.Shape, testutil.NPY(t, testutil.Golden("tiny", name, "image_embeddings.npy")), encTol, true)
		})
	}
}

// TestImageEncoderReuse checks that the shared compiled graphs give the
// same result on repeated and concurrent runs.
func TestImageEncoderReuse(t *testing.T) {
	e := newTinyEncoder(t)
	xs := []*nn.Tensor{
		goldenDense(t, testutil.Golden("tiny", "dog_240", "input.npy")),
		goldenDense(t, testutil.Golden("tiny", "demo_120", "input.npy")),
	}
	first := make([][]float32, len(xs))
	for i, x := range xs {
		out, err := e.Forward(context.Background(), x)
		if err != nil {
			t.Fatal(err)
		}
		first[i] = append([]float32(nil), out.Data...)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for k := range errs {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			out, err := e.Forward(context.Background(), xs[k%2])
			if err != nil {
				errs[k] = err
				return
			}
			for i, v := range out.Data {
				if v != first[k%2][i] {
					errs[k] = errors.New("result differs from the first run")
					return
				}
			}
		}(k)
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			t.Errorf("run %d: %v", k, err)
		}
	}
}

func TestImageEncoderErrors(t *testing.T) {
	e := newTinyEncoder(t)
	s := e.Config().ImageSize
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		x    *nn.Tensor
	}{
		{"nil", nil},
		{"shape", nn.NewTensor(nil, 1, 3, s, s/2)},
		{"short data", &nn.Tensor{Shape: []int{1, 3, s, s}, Data: make([]float32, 5)}},
	} {
		if _, err := e.Forward(ctx, tc.x); !errors.Is(err, ErrInput) {
			t.Errorf("input %s: err = %v, want ErrInput", tc.name, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.Forward(cctx, nn.NewTensor(nil, 1, 3, s, s)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v, want context.Canceled", err)
	}

	// Checkpoint problems, each named in the error.
	edits := []struct {
		name string
		edit func(m map[string]*weights.Tensor)
		want string
		is   error
	}{
		{"missing", func(m map[string]*weights.Tensor) { delete(m, "image_encoder.blocks.1.attn.rel_pos_w") },
			"image_encoder.blocks.1.attn.rel_pos_w", weights.ErrMissing},
		{"shape", func(m map[string]*weights.Tensor) {
			// A windowed table where the global block needs 2E-1 rows.
			m["image_encoder.blocks.1.attn.rel_pos_h"] = m["image_encoder.blocks.0.attn.rel_pos_h"]
		}, "image_encoder.blocks.1.attn.rel_pos_h", weights.ErrShape},
		{"extra block", func(m map[string]*weights.Tensor) {
			m["image_encoder.blocks.2.norm1.weight"] = m["image_encoder.blocks.1.norm1.weight"]
		}, "image_encoder.blocks.2.norm1.weight", nil},
		{"neck", func(m map[string]*weights.Tensor) { delete(m, "image_encoder.neck.3.bias") },
			"image_encoder.neck.3.bias", weights.ErrMissing},
	}
	for _, tc := range edits {
		_, err := NewImageEncoder(testutil.StoreCopy(t, tinySAMStore(t), tc.edit).Sub("image_encoder"), Tiny())
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.want)
		}
	}

	// Configurations the encoder cannot be built for.
	store := tinySAMStore(t).Sub("image_encoder")
	for _, tc := range []struct {
		name string
		edit func(c *Config)
	}{
		{"heads", func(c *Config) { c.EncoderHeads = 3 }},
		{"patch", func(c *Config) { c.PatchSize = 0 }},
		{"window", func(c *Config) { c.WindowSize = 0 }},
		{"depth", func(c *Config) { c.EncoderDepth = 3 }},
		{"vit_b", func(c *Config) { *c = ViTB() }},
	} {
		c := Tiny()
		tc.edit(&c)
		if _, err := NewImageEncoder(store, c); err == nil {
			t.Errorf("config %s: no error", tc.name)
		}
	}
	if _, err := NewImageEncoder(nil, Tiny()); err == nil {
		t.Error("nil store: no error")
	}
}

func BenchmarkImageEncoderTiny(b *testing.B) {
	e := newTinyEncoder(b)
	x := goldenDense(b, testutil.Golden("tiny", "dog_240", "input.npy"))
	testutil.Bench(b, func() error {
		_, err := e.Forward(context.Background(), x)
		return err
	})
}

// BenchmarkImageEncoderViTB times the ViT-B encoder alone at 1024 px with
// seeded random weights:
//
//	go test ./sam/ -run '^$' -bench ImageEncoderViTB -benchtime 1x -cpu 2
func BenchmarkImageEncoderViTB(b *testing.B) {
	cfg := ViTB()
	e, err := NewImageEncoder(RandomWeights(cfg, 1).Sub("image_encoder"), cfg)
	if err != nil {
		b.Fatal(err)
	}
	s := cfg.ImageSize
	x := nn.NewTensor(nil, 1, 3, s, s)
	for i, v := 0, x.Data; i < len(v); i++ {
		v[i] = float32((i*7919)%2001)/1000 - 1
	}
	testutil.Bench(b, func() error {
		_, err := e.Forward(context.Background(), x)
		return err
	})
}
