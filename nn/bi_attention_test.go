package nn

import (
	"context"
	"math"
	"math/rand"
	"testing"
)

// biAttentionRef is BiMultiHeadAttention's core as the reference writes
// it, in float64.
func biAttentionRef(q, k, vv, vl []float32, s, n, heads, d int, scale float64) (outV, outL []float64) {
	dim := heads * d
	cl := func(x float64) float64 { return math.Min(math.Max(x, -50000), 50000) }
	a := make([]float64, heads*s*n)
	m := math.Inf(-1)
	for h := 0; h < heads; h++ {
		for i := 0; i < s; i++ {
			for j := 0; j < n; j++ {
				var dot float64
				for c := 0; c < d; c++ {
					dot += float64(q[i*dim+h*d+c]) * scale * float64(k[j*dim+h*d+c])
				}
				a[(h*s+i)*n+j] = dot
				m = math.Max(m, dot)
			}
		}
	}
	for i := range a {
		a[i] = cl(a[i] - m)
	}
	softmax := func(x []float64) {
		mx := math.Inf(-1)
		for _, v := range x {
			mx = math.Max(mx, v)
		}
		var sum float64
		for i, v := range x {
			x[i] = math.Exp(v - mx)
			sum += x[i]
		}
		for i := range x {
			x[i] /= sum
		}
	}
	outV, outL = make([]float64, s*dim), make([]float64, n*dim)
	for h := 0; h < heads; h++ {
		for i := 0; i < s; i++ {
			p := append([]float64(nil), a[(h*s+i)*n:(h*s+i+1)*n]...)
			softmax(p)
			for j, w := range p {
				for c := 0; c < d; c++ {
					outV[i*dim+h*d+c] += w * float64(vl[j*dim+h*d+c])
				}
			}
		}
		for j := 0; j < n; j++ {
			p := make([]float64, s)
			mx := math.Inf(-1)
			for i := range p {
				p[i] = a[(h*s+i)*n+j]
				mx = math.Max(mx, p[i])
			}
			for i := range p {
				p[i] = cl(p[i] - mx)
			}
			softmax(p)
			for i, w := range p {
				for c := 0; c < d; c++ {
					outL[j*dim+h*d+c] += w * float64(vv[i*dim+h*d+c])
				}
			}
		}
	}
	return outV, outL
}

func biRand(rng *rand.Rand, n int, scale float32) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = (rng.Float32()*2 - 1) * scale
	}
	return x
}

func biClose(t *testing.T, name string, got []float32, want []float64, tol float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol) {
			t.Fatalf("%s[%d]: got %v want %v", name, i, got[i], want[i])
		}
	}
}

func TestBiAttentionInto(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, c := range []struct {
		name           string
		s, n, heads, d int
		big            bool
	}{{"small", 37, 5, 4, 8, false}, {"one token", 70, 1, 2, 3, false}, {"clamped", 40, 6, 2, 4, true}} {
		t.Run(c.name, func(t *testing.T) {
			dim := c.heads * c.d
			q, vv := biRand(rng, c.s*dim, 1), biRand(rng, c.s*dim, 1)
			k, vl := biRand(rng, c.n*dim, 1), biRand(rng, c.n*dim, 1)
			if c.big {
				// Image token 0 of head 0 scores far above every other
				// token (by more than 50000), so the clamps decide the
				// other rows and the text columns of the other heads.
				for j := 0; j < c.n; j++ {
					copy(k[j*dim:j*dim+c.d], []float32{1, 1, 1, 1})
				}
				for i := 0; i < c.d; i++ {
					q[i] = 1e5
				}
			}
			scale := 1 / math.Sqrt(float64(c.d))
			outV, outL := make([]float32, c.s*dim), make([]float32, c.n*dim)
			if err := BiAttentionInto(outV, outL, q, k, vv, vl, c.s, c.n, c.heads, c.d, float32(scale)); err != nil {
				t.Fatal(err)
			}
			wantV, wantL := biAttentionRef(q, k, vv, vl, c.s, c.n, c.heads, c.d, scale)
			biClose(t, "image side", outV, wantV, 1e-5)
			biClose(t, "text side", outL, wantL, 1e-5)
		})
	}
}

func TestBiAttentionEmpty(t *testing.T) {
	outV := []float32{1, 2, 3, 4}
	if err := BiAttentionInto(outV, nil, make([]float32, 4), nil, make([]float32, 4), nil, 2, 0, 1, 2, 1); err != nil {
		t.Fatal(err)
	}
	for _, v := range outV {
		if v != 0 {
			t.Fatalf("no text token: image side %v, want zeros", outV)
		}
	}
	if err := BiAttentionInto(outV, nil, make([]float32, 3), nil, make([]float32, 4), nil, 2, 0, 1, 2, 1); err == nil {
		t.Error("short queries accepted")
	}
}

func TestGraphBiAttention(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	s, n, heads, d := 9, 4, 2, 3
	dim := heads * d
	q, vv := biRand(rng, s*dim, 1), biRand(rng, s*dim, 1)
	k, vl := biRand(rng, n*dim, 1), biRand(rng, n*dim, 1)
	g := NewGraph()
	out := g.BiAttention(g.Input("q", s, dim), g.Input("k", n, dim), g.Input("vv", s, dim), g.Input("vl", n, dim), heads, 0.5)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(context.Background(), map[string][]float32{"q": q, "k": k, "vv": vv, "vl": vl}); err != nil {
		t.Fatal(err)
	}
	wantV, wantL := biAttentionRef(q, k, vv, vl, s, n, heads, d, 0.5)
	got := Values(out)
	biClose(t, "image side", got[:s*dim], wantV, 1e-5)
	biClose(t, "text side", got[s*dim:], wantL, 1e-5)
	g2 := NewGraph()
	g2.BiAttention(g2.Input("q", s, dim), g2.Input("k", n, dim), g2.Input("vv", s+1, dim), g2.Input("vl", n, dim), heads, 1)
	if g2.Err() == nil {
		t.Error("mismatched image values accepted")
	}
}
