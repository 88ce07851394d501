package nn

import (
	"context"
	"math"
	"math/rand"
	"testing"
)

func TestBatchNormOps(t *testing.T) {
	rng := rand.New(rand.NewSource(21))
	n, c, h, w := 2, 3, 4, 5
	x := convRand(rng, n*c*h*w)
	y := convRand(rng, n*c*h*w)
	wt, bs, mean := convRand(rng, c), convRand(rng, c), convRand(rng, c)
	vr := make([]float32, c)
	for i := range vr {
		vr[i] = rng.Float32()*2 + 0.01
	}
	g := NewGraph()
	xn := g.Input("x", n, c, h, w)
	yn := g.Input("y", n, c, h, w)
	wn, bn, mn, vn := g.Input("w", c), g.Input("b", c), g.Input("m", c), g.Input("v", c)
	bnOut := g.BatchNorm2d(xn, wn, bn, mn, vn, BatchNormEps)
	bnLeaky := g.BatchNorm2dLeakyReLU(xn, wn, bn, mn, vn, BatchNormEps, 0.2)
	leaky := g.LeakyReLU(xn, 0.2)
	tanh := g.Tanh(xn)
	unit := g.TanhUnit(xn)
	addLeaky := g.AddLeakyReLU(xn, yn, 0.2)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	err = m.Run(context.Background(), map[string]*Tensor{
		"x": NewTensor(x, n, c, h, w), "y": NewTensor(y, n, c, h, w),
		"w": NewTensor(wt, c), "b": NewTensor(bs, c), "m": NewTensor(mean, c), "v": NewTensor(vr, c),
	})
	if err != nil {
		t.Fatal(err)
	}
	lrelu := func(v float64) float64 {
		if v < 0 {
			return 0.2 * v
		}
		return v
	}
	checks := []struct {
		name string
		got  []float32
		want func(i int) float64
	}{
		{"batchnorm", Values(bnOut), func(i int) float64 {
			ch := i / (h * w) % c
			return (float64(x[i])-float64(mean[ch]))/math.Sqrt(float64(vr[ch])+1e-5)*float64(wt[ch]) + float64(bs[ch])
		}},
		{"batchnorm+leakyrelu", Values(bnLeaky), func(i int) float64 {
			ch := i / (h * w) % c
			return lrelu((float64(x[i])-float64(mean[ch]))/math.Sqrt(float64(vr[ch])+1e-5)*float64(wt[ch]) + float64(bs[ch]))
		}},
		{"leakyrelu", Values(leaky), func(i int) float64 { return lrelu(float64(x[i])) }},
		{"tanh", Values(tanh), func(i int) float64 { return math.Tanh(float64(x[i])) }},
		{"tanhunit", Values(unit), func(i int) float64 { return (math.Tanh(float64(x[i])) + 1) / 2 }},
		{"add+leakyrelu", Values(addLeaky), func(i int) float64 { return lrelu(float64(x[i]) + float64(y[i])) }},
	}
	for _, ck := range checks {
		if len(ck.got) != len(x) {
			t.Fatalf("%s: %d values", ck.name, len(ck.got))
		}
		var md float64
		for i, v := range ck.got {
			md = max(md, math.Abs(float64(v)-ck.want(i)))
		}
		if md > 1e-5 || math.IsNaN(md) {
			t.Errorf("%s: max abs diff %g", ck.name, md)
		}
	}
}

func TestConcat(t *testing.T) {
	rng := rand.New(rand.NewSource(22))
	cases := []struct {
		axis   int
		shapes [][]int
	}{
		{1, [][]int{{1, 4, 3, 2}, {1, 3, 3, 2}, {1, 1, 3, 2}}}, // M2M: feat, img, mask
		{1, [][]int{{2, 2, 3, 2}, {2, 1, 3, 2}}},
		{0, [][]int{{2, 3}, {1, 3}}},
		{2, [][]int{{2, 3, 1}, {2, 3, 4}}},
	}
	for ci, c := range cases {
		g := NewGraph()
		var nodes []*Node
		in := map[string]*Tensor{}
		var data [][]float32
		for i, s := range c.shapes {
			name := string(rune('a' + i))
			nodes = append(nodes, g.Input(name, s...))
			d := convRand(rng, prod(s))
			data = append(data, d)
			in[name] = NewTensor(d, s...)
		}
		out := g.Concat(c.axis, nodes...)
		m, err := g.Compile()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		got := Values(out)
		os := out.Shape()
		// reference: walk the output multi-index and pick the source tensor
		idx := make([]int, len(os))
		for flat := range got {
			r := flat
			for d := len(os) - 1; d >= 0; d-- {
				idx[d] = r % os[d]
				r /= os[d]
			}
			k, a := 0, idx[c.axis]
			for a >= c.shapes[k][c.axis] {
				a -= c.shapes[k][c.axis]
				k++
			}
			src := 0
			for d, s := range c.shapes[k] {
				v := idx[d]
				if d == c.axis {
					v = a
				}
				src = src*s + v
			}
			if got[flat] != data[k][src] {
				t.Fatalf("case %d: element %v = %v, want %v", ci, idx, got[flat], data[k][src])
			}
		}
	}
	g := NewGraph()
	g.Concat(1, g.Input("a", 1, 2, 3, 3), g.Input("b", 1, 2, 3, 4))
	if g.Err() == nil {
		t.Error("mismatched shapes: no error")
	}
}
