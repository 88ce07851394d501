package nn

import (
	"context"
	"errors"
	"testing"
)

func TestGraphApply(t *testing.T) {
	g := NewGraph()
	a := g.Input("a", 2, 3)
	b := g.Input("b", 3, 2)
	c := g.Op("matmul", []int{2, 2}, func(out []float32, in [][]float32) error {
		Gemm(false, false, 2, 2, 3, 1, in[0], 3, in[1], 2, 0, out, 2)
		return nil
	}, a, b)
	d := g.Op("double", []int{2, 2}, func(out []float32, in [][]float32) error {
		for i, v := range in[0] {
			out[i] = 2 * v
		}
		return nil
	}, c)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	for run := 0; run < 2; run++ {
		s := float32(run + 1)
		err = m.Run(context.Background(), map[string]*Tensor{
			"a": NewTensor([]float32{1, 2, 3, 4, 5, 6}, 2, 3),
			"b": NewTensor([]float32{s, 2, 3, 4, 5, 6}, 3, 2),
		})
		if err != nil {
			t.Fatal(err)
		}
		got := Values(d)
		want := []float32{2 * (s + 6 + 15), 2 * 28, 2 * (4*s + 15 + 30), 2 * 64}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("run %d: got %v want %v", run, got, want)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = m.Run(ctx, map[string]*Tensor{"a": NewTensor(nil, 2, 3), "b": NewTensor(nil, 3, 2)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: got %v", err)
	}
	if err := m.Run(context.Background(), map[string]*Tensor{"a": NewTensor(nil, 2, 3)}); err == nil {
		t.Fatal("missing input: no error")
	}
}

// A chain of elementwise ops recycles dead intermediates, while outputs and
// kept nodes keep their values after the run.
func TestGraphRecycling(t *testing.T) {
	g := NewGraph()
	x := g.Input("x", 1000)
	scale := func(name string, k float32, in *Node) *Node {
		return g.Op(name, []int{1000}, func(o []float32, v [][]float32) error {
			for i, a := range v[0] {
				o[i] = k * a
			}
			return nil
		}, in)
	}
	a := scale("a", 2, x)
	b := g.Keep(scale("b", 3, a))
	c := scale("c", 5, b)
	d := scale("d", 7, c) // may reuse a's buffer
	e := g.Add(d, a)      // a is read again here: a stays live until e has run
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	in := make([]float32, 1000)
	for i := range in {
		in[i] = float32(i)
	}
	for run := 0; run < 3; run++ {
		if err := m.Run(context.Background(), map[string]*Tensor{"x": NewTensor(in, 1000)}); err != nil {
			t.Fatal(err)
		}
		for i, v := range Values(e) {
			if want := float32(i)*2*3*5*7 + float32(i)*2; v != want {
				t.Fatalf("run %d: e[%d] = %v, want %v", run, i, v, want)
			}
		}
		for i, v := range Values(b) {
			if want := float32(i) * 6; v != want {
				t.Fatalf("run %d: kept b[%d] = %v, want %v", run, i, v, want)
			}
		}
	}
	// An output of a finished run is not overwritten by the next run.
	first := Values(e)
	if err := m.Run(context.Background(), map[string]*Tensor{"x": NewTensor(make([]float32, 1000), 1000)}); err != nil {
		t.Fatal(err)
	}
	if first[10] != 10*2*3*5*7+20 {
		t.Fatalf("earlier output overwritten: %v", first[10])
	}
}

// hasShape reports whether n has the given shape.
func hasShape(n *Node, shape ...int) bool { return NewTensor(nil, n.Shape()...).HasShape(shape...) }
