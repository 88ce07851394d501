package m2m

import (
	"context"
	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
	"math/rand"
	"slices"
	"testing"
)

func TestLoadDefault(t *testing.T) {
	s := RandomWeights(Default(), 1)
	c, err := DetectConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	if c != Default() {
		t.Fatalf("detected %+v, want %+v", c, Default())
	}
	d, err := New(s, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(RandomWeights(Default(), 1), Tiny()); err == nil {
		t.Error("released weights with the tiny config: no error")
	}
	// a small forward pass through the released architecture: E = 2, S = 32
	e := 2
	feat := nn.NewTensor(make([]float32, 256*e*e), 1, 256, e, e)
	img := nn.NewTensor(make([]float32, 3*256*e*e), 1, 3, 16*e, 16*e)
	mask := nn.NewTensor(make([]float32, 16*e*e), 1, 1, 4*e, 4*e)
	out, err := d.Forward(context.Background(), feat, img, mask)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []*nn.Tensor{out.OS1, out.OS4, out.OS8} {
		if !slices.Equal(o.Shape, []int{1, 1, 16 * e, 16 * e}) {
			t.Fatalf("output shape %v", o.Shape)
		}
		for _, v := range o.Data {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("alpha %v outside [0, 1]", v)
			}
		}
	}
}

func benchForward(b *testing.B, cfg Config, e int) {
	d, err := New(RandomWeights(cfg, 2), cfg)
	if err != nil {
		b.Fatal(err)
	}
	s := 16 * e
	rng := rand.New(rand.NewSource(3))
	mk := func(shape ...int) *nn.Tensor {
		n := 1
		for _, x := range shape {
			n *= x
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = rng.Float32()
		}
		return nn.NewTensor(v, shape...)
	}
	feat, img, mask := mk(1, cfg.FeatDim, e, e), mk(1, 3, s, s), mk(1, 1, 4*e, 4*e)
	ctx := context.Background()
	testutil.Bench(b, func() error {
		_, err := d.Forward(ctx, feat, img, mask)
		return err
	})
}

// BenchmarkForwardTiny runs the golden test size (S = 256, 32-channel
// embeddings).
func BenchmarkForwardTiny(b *testing.B) { benchForward(b, Tiny(), 16) }

// BenchmarkForwardReleased runs the released architecture at S = 1024.
func BenchmarkForwardReleased(b *testing.B) { benchForward(b, Default(), 64) }
