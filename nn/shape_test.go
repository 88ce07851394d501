package nn

import (
	"context"
	"math/rand"
	"testing"
)

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
