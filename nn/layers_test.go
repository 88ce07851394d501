package nn

import (
	"context"
	"math"
	"math/rand"
	"testing"
)

func TestLayerNormRows(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	rows, d := 3, 7
	x := make([]float32, rows*d)
	w := make([]float32, d)
	b := make([]float32, d)
	for i := range x {
		x[i] = rng.Float32()*4 - 2
	}
	for i := range w {
		w[i], b[i] = rng.Float32(), rng.Float32()
	}
	got := make([]float32, len(x))
	LayerNormRows(got, x, rows, d, w, b, 1e-6)
	for r := 0; r < rows; r++ {
		var m, v float64
		for i := 0; i < d; i++ {
			m += float64(x[r*d+i])
		}
		m /= float64(d)
		for i := 0; i < d; i++ {
			v += (float64(x[r*d+i]) - m) * (float64(x[r*d+i]) - m)
		}
		v /= float64(d)
		for i := 0; i < d; i++ {
			want := (float64(x[r*d+i])-m)/math.Sqrt(v+1e-6)*float64(w[i]) + float64(b[i])
			if math.Abs(want-float64(got[r*d+i])) > 1e-5 {
				t.Fatalf("row %d col %d: got %v want %v", r, i, got[r*d+i], want)
			}
		}
	}
}

func TestGELU(t *testing.T) {
	cases := []struct{ x, want float64 }{{0, 0}, {1, 0.8413447460685429}, {-1, -0.15865525393145707}, {3, 2.9959502}}
	for _, c := range cases {
		if got := GELU(float32(c.x)); math.Abs(float64(got)-c.want) > 1e-6 {
			t.Errorf("GELU(%v) = %v, want %v", c.x, got, c.want)
		}
	}
}

func TestPermuteInto(t *testing.T) {
	src := make([]float32, 24)
	for i := range src {
		src[i] = float32(i)
	}
	dst := make([]float32, 24)
	PermuteInto(dst, src, []int{2, 3, 4}, []int{2, 0, 1}) // -> (4, 2, 3)
	for a := 0; a < 4; a++ {
		for b := 0; b < 2; b++ {
			for c := 0; c < 3; c++ {
				if got, want := dst[a*6+b*3+c], src[b*12+c*4+a]; got != want {
					t.Fatalf("[%d,%d,%d] = %v want %v", a, b, c, got, want)
				}
			}
		}
	}
}

func TestLinearRows(t *testing.T) {
	x := []float32{1, 2, 3, 4, 5, 6} // 2 x 3
	w := []float32{1, 0, 1, 0, 1, 0} // 2 x 3
	b := []float32{10, 20}
	dst := make([]float32, 4)
	LinearRows(dst, x, 2, 3, w, 2, b)
	want := []float32{14, 22, 20, 25}
	for i := range want {
		if dst[i] != want[i] {
			t.Fatalf("got %v want %v", dst, want)
		}
	}
}

// TestPermuteTransposes checks the batched-transpose fast path against the
// generic index walk on the permutations it covers, and one it does not.
func TestPermuteTransposes(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	tests := []struct {
		shape, axes []int
		fast        bool
	}{
		{[]int{2, 5, 7, 3}, []int{0, 3, 1, 2}, true},  // NHWC -> NCHW
		{[]int{2, 3, 5, 7}, []int{0, 2, 3, 1}, true},  // NCHW -> NHWC
		{[]int{33, 70}, []int{1, 0}, true},            // plain transpose
		{[]int{3, 4, 5}, []int{1, 2, 0}, true},        // (3, 20) -> (20, 3)
		{[]int{2, 3, 4, 5}, []int{0, 2, 1, 3}, false}, // not a transpose
		{[]int{2, 3}, []int{0, 1}, false},             // identity
	}
	for _, tc := range tests {
		if _, _, _, ok := batchedTranspose(tc.shape, tc.axes); ok != tc.fast {
			t.Errorf("%v by %v: fast path %v, want %v", tc.shape, tc.axes, ok, tc.fast)
		}
		n := prod(tc.shape)
		src := make([]float32, n)
		for i := range src {
			src[i] = rng.Float32()
		}
		got := make([]float32, n)
		PermuteInto(got, src, tc.shape, tc.axes)
		// want: out[idx] = src[sum idx[i]*stride[axes[i]]]
		nd := len(tc.shape)
		stride := make([]int, nd)
		for i, s := nd-1, 1; i >= 0; i-- {
			stride[i] = s
			s *= tc.shape[i]
		}
		idx := make([]int, nd)
		for o := 0; o < n; o++ {
			off := 0
			for i, a := range tc.axes {
				off += idx[i] * stride[a]
			}
			if got[o] != src[off] {
				t.Fatalf("%v by %v: out[%d] = %v, want %v", tc.shape, tc.axes, o, got[o], src[off])
			}
			for i := nd - 1; i >= 0; i-- {
				idx[i]++
				if idx[i] < tc.shape[tc.axes[i]] {
					break
				}
				idx[i] = 0
			}
		}
	}
}

// TestLinearFused checks the fused Linear ops against the formulas in
// float64: LinearGELU = GELU(x W^T + b), LinearResidual = res + x W^T + b,
// with and without bias, on shapes with tails past the vector width.
func TestLinearFused(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	for _, tc := range []struct {
		rows, in, out int
		bias          bool
	}{{37, 24, 50, true}, {5, 768, 3072 / 16, true}, {3, 7, 9, false}} {
		x, w := attnRand(rng, tc.rows*tc.in, 1), attnRand(rng, tc.out*tc.in, 0.5)
		res := attnRand(rng, tc.rows*tc.out, 1)
		var b []float32
		if tc.bias {
			b = attnRand(rng, tc.out, 0.5)
		}
		lin := make([]float64, tc.rows*tc.out)
		for r := 0; r < tc.rows; r++ {
			for o := 0; o < tc.out; o++ {
				s := 0.0
				if b != nil {
					s = float64(b[o])
				}
				for i := 0; i < tc.in; i++ {
					s += float64(x[r*tc.in+i]) * float64(w[o*tc.in+i])
				}
				lin[r*tc.out+o] = s
			}
		}
		g := NewGraph()
		xn, wn := g.Input("x", tc.rows, tc.in), g.Input("w", tc.out, tc.in)
		var bn *Node
		in := map[string]*Tensor{"x": NewTensor(x, tc.rows, tc.in), "w": NewTensor(w, tc.out, tc.in), "res": NewTensor(res, tc.rows, tc.out)}
		if tc.bias {
			bn = g.Input("b", tc.out)
			in["b"] = NewTensor(b, tc.out)
		}
		gelu := g.LinearGELU(xn, wn, bn)
		resid := g.LinearResidual(xn, wn, bn, g.Input("res", tc.rows, tc.out))
		m, err := g.Compile()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		gg, gr := Values(gelu), Values(resid)
		for i, v := range lin {
			if d := math.Abs(float64(gg[i]) - geluExact(v)); d > 1e-5*math.Max(1, math.Abs(v)) {
				t.Fatalf("%+v: LinearGELU[%d] = %v, want %v", tc, i, gg[i], geluExact(v))
			}
			want := v + float64(res[i])
			if d := math.Abs(float64(gr[i]) - want); d > 1e-5*math.Max(1, math.Abs(want)) {
				t.Fatalf("%+v: LinearResidual[%d] = %v, want %v", tc, i, gr[i], want)
			}
		}
	}
	// Shape errors.
	g := NewGraph()
	x, w := g.Input("x", 4, 8), g.Input("w", 6, 8)
	if g.LinearGELU(x, g.Input("w2", 6, 7), nil) != nil || g.Err() == nil {
		t.Error("LinearGELU: weight mismatch not reported")
	}
	g = NewGraph()
	x, w = g.Input("x", 4, 8), g.Input("w", 6, 8)
	if g.LinearResidual(x, w, g.Input("b", 5), g.Input("r", 4, 6)) != nil || g.Err() == nil {
		t.Error("LinearResidual: bias mismatch not reported")
	}
	g = NewGraph()
	x, w = g.Input("x", 4, 8), g.Input("w", 6, 8)
	if g.LinearResidual(x, w, nil, g.Input("r", 4, 5)) != nil || g.Err() == nil {
		t.Error("LinearResidual: residual mismatch not reported")
	}
}

func TestGELUSlice(t *testing.T) {
	src := make([]float32, 40000) // several parallel blocks and a tail
	for i := range src {
		src[i] = float32(i%2000)/100 - 10
	}
	dst := make([]float32, len(src))
	GELUSlice(dst, src)
	for i, v := range src {
		if d := math.Abs(float64(dst[i]) - geluExact(float64(v))); d > 2e-7*math.Max(1, math.Abs(float64(v))) {
			t.Fatalf("GELU(%v) = %v, want %v", v, dst[i], geluExact(float64(v)))
		}
	}
	GELUSlice(src, src) // in place
	for i := range src {
		if src[i] != dst[i] {
			t.Fatalf("in place: [%d] = %v, want %v", i, src[i], dst[i])
		}
	}
}

// LayerNormChannels is SAM's LayerNorm2d: u = mean over C, s = mean of
// (x-u)^2 over C, y = (x-u)/sqrt(s+eps) * w[c] + b[c], per pixel.
func TestLayerNormChannels(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	n, c, hw := 2, 5, 7
	x := make([]float32, n*c*hw)
	for i := range x {
		x[i] = rng.Float32()*6 - 3
	}
	w, b := make([]float32, c), make([]float32, c)
	for i := range w {
		w[i], b[i] = rng.Float32()+0.5, rng.Float32()-0.5
	}
	got := make([]float32, len(x))
	LayerNormChannels(got, x, n, c, hw, w, b, 1e-6)
	for bi := 0; bi < n; bi++ {
		for p := 0; p < hw; p++ {
			at := func(ch int) int { return bi*c*hw + ch*hw + p }
			var u, s float64
			for ch := 0; ch < c; ch++ {
				u += float64(x[at(ch)])
			}
			u /= float64(c)
			for ch := 0; ch < c; ch++ {
				d := float64(x[at(ch)]) - u
				s += d * d
			}
			s /= float64(c)
			for ch := 0; ch < c; ch++ {
				want := (float64(x[at(ch)])-u)/math.Sqrt(s+1e-6)*float64(w[ch]) + float64(b[ch])
				if math.Abs(want-float64(got[at(ch)])) > 1e-5 {
					t.Fatalf("[%d,%d,%d] = %v, want %v", bi, ch, p, got[at(ch)], want)
				}
			}
		}
	}
}

// TestBatchNormFoldTanhUnit checks the folded eval BatchNorm against its formula,
// and the TanhUnit op against (tanh + 1) / 2.
func TestBatchNormFoldTanhUnit(t *testing.T) {
	rng := rand.New(rand.NewSource(21))
	c := 3
	w, b, mean := convRand(rng, c), convRand(rng, c), convRand(rng, c)
	v := make([]float32, c)
	for i := range v {
		v[i] = rng.Float32()*2 + 0.01
	}
	scale, shift := BatchNormFold(w, b, mean, v, BatchNormEps)
	for i, x := range convRand(rng, 4*c) {
		ch := i % c
		want := (float64(x)-float64(mean[ch]))/math.Sqrt(float64(v[ch])+1e-5)*float64(w[ch]) + float64(b[ch])
		if d := math.Abs(float64(x*scale[ch]+shift[ch]) - want); d > 1e-5 {
			t.Errorf("batchnorm %d: diff %g", i, d)
		}
	}
	g := NewGraph()
	x := g.Input("x", 1, 2, 3, 4)
	y := g.TanhUnitRegion(x, Region{})
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	in := convRand(rng, 24)
	if err := m.Exec(context.Background(), map[string][]float32{"x": in}); err != nil {
		t.Fatal(err)
	}
	for i, got := range Values(y) {
		if d := math.Abs(float64(got) - (math.Tanh(float64(in[i]))+1)/2); d > 1e-6 {
			t.Errorf("tanh unit %d: diff %g", i, d)
		}
	}
}

// TestLayerNormGELU checks the fused op against LayerNorm then GELU.
func TestLayerNormGELU(t *testing.T) {
	rng := rand.New(rand.NewSource(22))
	g := NewGraph()
	x, w, b := g.Input("x", 5, 7), g.Param("w", convRand(rng, 7), 7), g.Param("b", convRand(rng, 7), 7)
	fused, ref := g.LayerNormGELU(x, w, b, 1e-6), g.GELU(g.LayerNorm(x, w, b, 1e-6))
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(context.Background(), map[string][]float32{"x": convRand(rng, 35)}); err != nil {
		t.Fatal(err)
	}
	if d := convMaxDiff(t, Values(fused), Values(ref)); d != 0 {
		t.Errorf("max abs diff %g", d)
	}
}
