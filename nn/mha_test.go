package nn

import (
	"context"
	"math"
	"math/rand"
	"testing"
)

// naiveMHA is the attention formula written out in float64.
func naiveMHA(q, k, v []float32, nq, nk, heads, d int) []float64 {
	dim := heads * d
	out := make([]float64, nq*dim)
	for h := 0; h < heads; h++ {
		for i := 0; i < nq; i++ {
			s := make([]float64, nk)
			mx := math.Inf(-1)
			for j := 0; j < nk; j++ {
				var dot float64
				for c := 0; c < d; c++ {
					dot += float64(q[i*dim+h*d+c]) * float64(k[j*dim+h*d+c])
				}
				s[j] = dot / math.Sqrt(float64(d))
				mx = math.Max(mx, s[j])
			}
			var sum float64
			for j := range s {
				s[j] = math.Exp(s[j] - mx)
				sum += s[j]
			}
			for j := range s {
				for c := 0; c < d; c++ {
					out[i*dim+h*d+c] += s[j] / sum * float64(v[j*dim+h*d+c])
				}
			}
		}
	}
	return out
}

func randSlice(r *rand.Rand, n int, scale float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64() * scale)
	}
	return s
}

func TestMHAInto(t *testing.T) {
	for _, tc := range []struct {
		name             string
		nq, nk, heads, d int
	}{
		{"tokens-to-image", 7, 256, 2, 8},
		{"image-to-tokens", 256, 7, 2, 8},
		{"self", 9, 9, 8, 16},
		{"one-key", 70, 1, 3, 4},
		{"odd-block", 129, 5, 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewSource(int64(tc.nq*1000 + tc.nk)))
			dim := tc.heads * tc.d
			q := randSlice(r, tc.nq*dim, 2)
			k := randSlice(r, tc.nk*dim, 2)
			v := randSlice(r, tc.nk*dim, 1)
			got := make([]float32, tc.nq*dim)
			MHAInto(got, q, k, v, tc.nq, tc.nk, tc.heads, tc.d)
			want := naiveMHA(q, k, v, tc.nq, tc.nk, tc.heads, tc.d)
			var maxd float64
			for i := range want {
				maxd = math.Max(maxd, math.Abs(float64(got[i])-want[i]))
			}
			t.Logf("max abs diff %.3g", maxd)
			if maxd > 1e-5 {
				t.Fatalf("max abs diff %.3g > 1e-5", maxd)
			}
		})
	}
}

func TestGraphMHA(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	const b, nq, nk, heads, d = 2, 5, 11, 2, 4
	dim := heads * d
	g := NewGraph()
	out := g.MHA(g.Input("q", b, nq, dim), g.Input("k", b, nk, dim), g.Input("v", b, nk, dim), heads)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	q, k, v := randSlice(r, b*nq*dim, 1), randSlice(r, b*nk*dim, 1), randSlice(r, b*nk*dim, 1)
	err = m.Run(context.Background(), map[string]*Tensor{
		"q": NewTensor(q, b, nq, dim), "k": NewTensor(k, b, nk, dim), "v": NewTensor(v, b, nk, dim),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := Values(out)
	for bi := 0; bi < b; bi++ {
		want := naiveMHA(q[bi*nq*dim:], k[bi*nk*dim:], v[bi*nk*dim:], nq, nk, heads, d)
		for i, w := range want {
			if e := math.Abs(float64(got[bi*nq*dim+i]) - w); e > 1e-5 {
				t.Fatalf("batch %d element %d: got %g want %g", bi, i, got[bi*nq*dim+i], w)
			}
		}
	}
}

func TestGraphMHAErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		q, k, v []int
		heads   int
	}{
		{"heads do not divide", []int{3, 8}, []int{4, 8}, []int{4, 8}, 3},
		{"zero heads", []int{3, 8}, []int{4, 8}, []int{4, 8}, 0},
		{"k width", []int{3, 8}, []int{4, 6}, []int{4, 8}, 2},
		{"v rows", []int{3, 8}, []int{4, 8}, []int{5, 8}, 2},
		{"rank", []int{8}, []int{8}, []int{8}, 2},
		{"batch", []int{2, 3, 8}, []int{1, 4, 8}, []int{1, 4, 8}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGraph()
			if n := g.MHA(g.Input("q", tc.q...), g.Input("k", tc.k...), g.Input("v", tc.v...), tc.heads); n != nil || g.Err() == nil {
				t.Fatalf("no error for q %v k %v v %v heads %d", tc.q, tc.k, tc.v, tc.heads)
			}
		})
	}
}

func TestMaskedMHA(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	nq, nk, heads, d := 5, 7, 2, 3
	dim := heads * d
	rnd := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	q, k, v := rnd(nq*dim), rnd(nk*dim), rnd(nk*dim)
	mask := make([]bool, nq*nk)
	for i := range mask {
		mask[i] = rng.Intn(3) > 0
	}
	for j := 0; j < nk; j++ {
		mask[2*nk+j] = false // row 2: nothing allowed -> uniform
	}
	got := make([]float32, nq*dim)
	MaskedMHAInto(got, q, k, v, nq, nk, heads, d, mask)
	for i := 0; i < nq; i++ {
		for h := 0; h < heads; h++ {
			var s []float64
			mx := math.Inf(-1)
			any := false
			for j := 0; j < nk; j++ {
				any = any || mask[i*nk+j]
			}
			for j := 0; j < nk; j++ {
				var dot float64
				for c := 0; c < d; c++ {
					dot += float64(q[i*dim+h*d+c]) * float64(k[j*dim+h*d+c])
				}
				dot /= math.Sqrt(float64(d))
				if any && !mask[i*nk+j] {
					dot = math.Inf(-1)
				}
				if !any {
					dot = 0
				}
				s = append(s, dot)
				mx = math.Max(mx, dot)
			}
			var sum float64
			for j := range s {
				s[j] = math.Exp(s[j] - mx)
				sum += s[j]
			}
			for c := 0; c < d; c++ {
				var want float64
				for j := range s {
					want += s[j] / sum * float64(v[j*dim+h*d+c])
				}
				if diff := math.Abs(want - float64(got[i*dim+h*d+c])); diff > 1e-5 {
					t.Fatalf("out[%d][%d] = %v, want %v", i, h*d+c, got[i*dim+h*d+c], want)
				}
			}
		}
	}
}
