package nn

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Node is a value of a Graph: an input bound at each Run, a parameter bound
// once when the model is built, or the output of an op. Model code holds
// *Node values and reads their Shape; everything else goes through Graph's
// methods.
type Node = G.Node

// OpFunc computes an op's output from its inputs' flat row-major values.
// out has the shape the op was declared with; it is zeroed unless the op
// was declared with Graph.OpFull.
type OpFunc func(out []float32, in [][]float32) error

// Op adds an op computing fn over in with output shape out: the way for
// model code to add a computation that nn has no op for, without touching
// the graph engine's types.
func (g *Graph) Op(name string, out []int, fn OpFunc, in ...*Node) *Node {
	return g.op(name, out, fn, false, in...)
}

// OpFull is Op for an fn that writes every value of out: out is then not
// zeroed first and may hold stale values when fn starts.
func (g *Graph) OpFull(name string, out []int, fn OpFunc, in ...*Node) *Node {
	return g.op(name, out, fn, true, in...)
}

func (g *Graph) op(name string, out []int, fn OpFunc, full bool, in ...*Node) *Node {
	k := func(o *tensor.Dense, v []*tensor.Dense) error {
		vals := make([][]float32, len(v))
		for i, t := range v {
			vals[i] = F32(t)
		}
		return fn(F32(o), vals)
	}
	return g.apply(name, tensor.Shape(out), k, full, in...)
}

// Param declares a parameter of the graph: a constant tensor bound once,
// when the graph is built, and read by every Run. data is not copied; it
// must not change while the graph is in use.
func (g *Graph) Param(name string, data []float32, shape ...int) *Node {
	if g.err != nil {
		return nil
	}
	if len(shape) == 0 {
		shape = []int{len(data)}
	}
	if prod(shape) != len(data) {
		return g.fail("param %q: %d values for shape %v", name, len(data), shape)
	}
	if n, ok := g.params[name]; ok {
		if !n.Shape().Eq(tensor.Shape(shape)) {
			return g.fail("param %q declared twice with shapes %v and %v", name, n.Shape(), shape)
		}
		return n
	}
	v := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
	n := G.NewTensor(g.g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(v))
	g.params[name] = n
	return n
}

// Shape returns a copy of n's shape (nil for a nil node).
func Shape(n *Node) []int {
	if n == nil {
		return nil
	}
	return append([]int(nil), n.Shape()...)
}

// Values returns n's flat values after a Run (nil before, or for a nil
// node). The slice belongs to the graph: copy it to keep it past the next
// Run.
func Values(n *Node) []float32 {
	d := Value(n)
	if d == nil {
		return nil
	}
	return F32(d)
}

// Errorf records a building error (the first one wins) and returns nil,
// for model code that finds a problem while building a graph.
func (g *Graph) Errorf(format string, args ...any) *Node {
	return g.Fail(fmt.Errorf(format, args...))
}
