package nn

import (
	"context"
	"math"
	"math/rand"
	"testing"
)

// biLinearRef is x (rows, in) w^T + b in float64.
func biLinearRef(x []float64, rows, in int, w, b []float32, out int) []float64 {
	y := make([]float64, rows*out)
	for r := 0; r < rows; r++ {
		for o := 0; o < out; o++ {
			acc := float64(b[o])
			for i := 0; i < in; i++ {
				acc += x[r*in+i] * float64(w[o*in+i])
			}
			y[r*out+o] = acc
		}
	}
	return y
}

func biF64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// biAttentionRef is BiMultiHeadAttention.forward as the reference writes
// it (projections, one scaled score map, global max, clamps, the two
// softmaxes, output projections), in float64.
func biAttentionRef(v, l []float32, s, n, dim, embed, heads int, w *BiAttentionWeights) (deltaV, deltaL []float64) {
	hd := embed / heads
	scale := math.Pow(float64(hd), -0.5)
	vf, lf := biF64(v), biF64(l)
	q := biLinearRef(vf, s, dim, w.V, w.VB, embed)
	for i := range q {
		q[i] *= scale
	}
	k := biLinearRef(lf, n, dim, w.L, w.LB, embed)
	vv := biLinearRef(vf, s, dim, w.ValuesV, w.ValuesVB, embed)
	vl := biLinearRef(lf, n, dim, w.ValuesL, w.ValuesLB, embed)
	cl := func(x float64) float64 { return math.Min(math.Max(x, -50000), 50000) }
	a := make([]float64, heads*s*n)
	m := math.Inf(-1)
	for h := 0; h < heads; h++ {
		for i := 0; i < s; i++ {
			for j := 0; j < n; j++ {
				var dot float64
				for c := 0; c < hd; c++ {
					dot += q[i*embed+h*hd+c] * k[j*embed+h*hd+c]
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
	outV, outL := make([]float64, s*embed), make([]float64, n*embed)
	for h := 0; h < heads; h++ {
		for i := 0; i < s; i++ {
			p := append([]float64(nil), a[(h*s+i)*n:(h*s+i+1)*n]...)
			softmax(p)
			for j, wt := range p {
				for c := 0; c < hd; c++ {
					outV[i*embed+h*hd+c] += wt * vl[j*embed+h*hd+c]
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
			for i, wt := range p {
				for c := 0; c < hd; c++ {
					outL[j*embed+h*hd+c] += wt * vv[i*embed+h*hd+c]
				}
			}
		}
	}
	return biLinearRef(outV, s, embed, w.OutV, w.OutVB, dim), biLinearRef(outL, n, embed, w.OutL, w.OutLB, dim)
}

func biRand(rng *rand.Rand, n int, scale float32) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = (rng.Float32()*2 - 1) * scale
	}
	return x
}

func biRandWeights(rng *rand.Rand, dim, embed int) *BiAttentionWeights {
	in, out := 1/float32(math.Sqrt(float64(dim))), 1/float32(math.Sqrt(float64(embed)))
	return &BiAttentionWeights{
		V: biRand(rng, embed*dim, in), VB: biRand(rng, embed, 0.1),
		L: biRand(rng, embed*dim, in), LB: biRand(rng, embed, 0.1),
		ValuesV: biRand(rng, embed*dim, in), ValuesVB: biRand(rng, embed, 0.1),
		ValuesL: biRand(rng, embed*dim, in), ValuesLB: biRand(rng, embed, 0.1),
		OutV: biRand(rng, dim*embed, out), OutVB: biRand(rng, dim, 0.1),
		OutL: biRand(rng, dim*embed, out), OutLB: biRand(rng, dim, 0.1),
	}
}

// biClose compares got with want to within tol times the largest of 1 and
// want's largest magnitude.
func biClose(t *testing.T, name string, got []float32, want []float64, tol float64) {
	t.Helper()
	top := 1.0
	for _, v := range want {
		top = math.Max(top, math.Abs(v))
	}
	tol *= top
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol) {
			t.Fatalf("%s[%d]: got %v want %v", name, i, got[i], want[i])
		}
	}
}

func TestBiAttentionInto(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, c := range []struct {
		name                    string
		s, n, dim, embed, heads int
		big                     bool
	}{
		{"small", 37, 5, 12, 16, 4, false},
		{"one token", 70, 1, 8, 6, 2, false},
		{"more tokens than the width", 50, 20, 8, 8, 2, false},
		{"clamped", 40, 6, 8, 8, 2, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, l := biRand(rng, c.s*c.dim, 1), biRand(rng, c.n*c.dim, 1)
			w := biRandWeights(rng, c.dim, c.embed)
			if c.big {
				// Image token 0 scores far above (or below) every other
				// token, by more than 50000: the clamps decide the other
				// rows and many text columns.
				for i := 0; i < c.dim; i++ {
					v[i] = 1e8
				}
			}
			dv, dl := make([]float32, c.s*c.dim), make([]float32, c.n*c.dim)
			if err := BiAttentionInto(dv, dl, v, l, c.s, c.n, c.dim, c.embed, c.heads, w); err != nil {
				t.Fatal(err)
			}
			wantV, wantL := biAttentionRef(v, l, c.s, c.n, c.dim, c.embed, c.heads, w)
			biClose(t, "image side", dv, wantV, 2e-5)
			biClose(t, "text side", dl, wantL, 2e-5)
		})
	}
}

func TestBiAttentionEmpty(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	w := biRandWeights(rng, 2, 4)
	dv := []float32{1, 2, 3, 4}
	if err := BiAttentionInto(dv, nil, make([]float32, 4), nil, 2, 0, 2, 4, 2, w); err != nil {
		t.Fatal(err)
	}
	for i, v := range dv {
		if v != w.OutVB[i%2] {
			t.Fatalf("no text token: image side %v, want out_v_proj's bias %v", dv, w.OutVB)
		}
	}
	if err := BiAttentionInto(dv, nil, make([]float32, 3), nil, 2, 0, 2, 4, 2, w); err == nil {
		t.Error("short image tokens accepted")
	}
	w.OutLB = w.OutLB[:1]
	if err := BiAttentionInto(dv, nil, make([]float32, 4), nil, 2, 0, 2, 4, 2, w); err == nil {
		t.Error("short bias accepted")
	}
}

func TestGraphBiAttention(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	s, n, dim, embed, heads := 9, 4, 6, 8, 2
	v, l := biRand(rng, s*dim, 1), biRand(rng, n*dim, 1)
	w := biRandWeights(rng, dim, embed)
	g := NewGraph()
	out := g.BiAttention(g.Input("v", s, dim), g.Input("l", n, dim), w, embed, heads)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(context.Background(), map[string][]float32{"v": v, "l": l}); err != nil {
		t.Fatal(err)
	}
	wantV, wantL := biAttentionRef(v, l, s, n, dim, embed, heads, w)
	got := Values(out)
	biClose(t, "image side", got[:s*dim], wantV, 2e-5)
	biClose(t, "text side", got[s*dim:], wantL, 2e-5)
	g2 := NewGraph()
	g2.BiAttention(g2.Input("v", s, dim), g2.Input("l", n, dim+1), w, embed, heads)
	if g2.Err() == nil {
		t.Error("mismatched widths accepted")
	}
}
