package nn

import (
	"context"
	"math"
	"math/rand"
	"testing"
)

// groupNormNaive is torch.nn.GroupNorm written out in float64.
func groupNormNaive(x []float32, n, c, hw, groups int, w, b []float32, eps float64) []float64 {
	out := make([]float64, len(x))
	cg := c / groups
	for s := 0; s < n; s++ {
		for gi := 0; gi < groups; gi++ {
			var sum, sq float64
			cnt := float64(cg * hw)
			for ch := gi * cg; ch < (gi+1)*cg; ch++ {
				for p := 0; p < hw; p++ {
					sum += float64(x[(s*c+ch)*hw+p])
				}
			}
			mean := sum / cnt
			for ch := gi * cg; ch < (gi+1)*cg; ch++ {
				for p := 0; p < hw; p++ {
					d := float64(x[(s*c+ch)*hw+p]) - mean
					sq += d * d
				}
			}
			sd := math.Sqrt(sq/cnt + eps)
			for ch := gi * cg; ch < (gi+1)*cg; ch++ {
				for p := 0; p < hw; p++ {
					i := (s*c+ch)*hw + p
					out[i] = (float64(x[i])-mean)/sd*float64(w[ch]) + float64(b[ch])
				}
			}
		}
	}
	return out
}

func TestGroupNormInto(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, tc := range []struct{ n, c, hw, groups int }{
		{1, 64, 35, 32}, {2, 12, 1, 4}, {1, 8, 5, 1}, {1, 6, 7, 6},
	} {
		x := make([]float32, tc.n*tc.c*tc.hw)
		for i := range x {
			x[i] = rng.Float32()*6 - 2
		}
		w, b := make([]float32, tc.c), make([]float32, tc.c)
		for i := range w {
			w[i], b[i] = rng.Float32()*2-1, rng.Float32()-0.5
		}
		got := make([]float32, len(x))
		GroupNormInto(got, x, tc.n, tc.c, tc.hw, tc.groups, w, b, 1e-5)
		want := groupNormNaive(x, tc.n, tc.c, tc.hw, tc.groups, w, b, 1e-5)
		for i := range want {
			if math.Abs(float64(got[i])-want[i]) > 2e-6*(1+math.Abs(want[i])) {
				t.Fatalf("%+v: element %d: got %v want %v", tc, i, got[i], want[i])
			}
		}
	}
}

func TestGraphGroupNorm(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	n, c, h, w := 1, 16, 3, 5
	x := make([]float32, n*c*h*w)
	for i := range x {
		x[i] = rng.Float32()
	}
	wt, bs := make([]float32, c), make([]float32, c)
	for i := range wt {
		wt[i], bs[i] = 1+rng.Float32(), rng.Float32()
	}
	g := NewGraph()
	in := g.Input("x", n, c, h, w)
	out := g.GroupNorm(in, g.Param("w", wt, c), g.Param("b", bs, c), 4, 1e-5)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(context.Background(), map[string][]float32{"x": x}); err != nil {
		t.Fatal(err)
	}
	want := groupNormNaive(x, n, c, h*w, 4, wt, bs, 1e-5)
	for i, v := range Values(out) {
		if math.Abs(float64(v)-want[i]) > 1e-5 {
			t.Fatalf("element %d: got %v want %v", i, v, want[i])
		}
	}
	if g2 := NewGraph(); g2.GroupNorm(g2.Input("x", 1, 6, 2), g2.Param("w", wt[:6], 6), g2.Param("b", bs[:6], 6), 4, 1e-5) != nil || g2.Err() == nil {
		t.Fatal("6 channels in 4 groups: no error")
	}
}
