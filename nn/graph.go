package nn

// The graph engine: nn's graphs are gorgonia expression graphs run by a
// TapeMachine in eval mode (no gradients). This file is the only place
// that speaks gorgonia; everything else in nn, and every model package,
// sees Graph, Node, Machine and plain []float32 values.

import (
	"context"
	"fmt"
	"hash"
	"hash/fnv"
	"slices"
	"sync/atomic"
	"time"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Node is a value of a Graph: an input bound at each run, a parameter
// bound once when the model is built, or the output of an op. Model code
// holds *Node values, reads their Shape, and passes them to Graph methods.
type Node G.Node

// Shape returns a copy of n's shape (nil for a nil node).
func (n *Node) Shape() []int {
	if n == nil {
		return nil
	}
	return slices.Clone([]int(gn(n).Shape()))
}

// gn is n as the engine's node.
func gn(n *Node) *G.Node { return (*G.Node)(n) }

// Shape returns a copy of n's shape (nil for a nil node).
func Shape(n *Node) []int { return n.Shape() }

// Values returns n's flat values after a run (nil before, or for a nil
// node). The slice belongs to the graph: copy it to keep it past the next
// run.
func Values(n *Node) []float32 {
	if n == nil || gn(n).Value() == nil {
		return nil
	}
	d, ok := gn(n).Value().(*tensor.Dense)
	if !ok {
		return nil
	}
	return d.Data().([]float32)
}

// OpFunc computes an op's output from its inputs' flat row-major values.
// out has the shape the op was declared with; it is zeroed unless the op
// was declared with Graph.OpFull.
type OpFunc func(out []float32, in [][]float32) error

var opSeq atomic.Uint64

// An OpObserver is told the name, output shape and duration of every op
// run by any Machine (set with SetOpObserver).
type OpObserver func(name string, out []int, d time.Duration)

var opObserver atomic.Pointer[OpObserver]

// SetOpObserver installs f to be called after every op of every Machine,
// for profiling by layer; nil removes it. f may be called from several
// goroutines at once when several machines run.
func SetOpObserver(f OpObserver) {
	if f == nil {
		opObserver.Store(nil)
		return
	}
	opObserver.Store(&f)
}

// funcOp adapts an OpFunc to gorgonia's Op interface.
type funcOp struct {
	name   string
	id     uint64
	inDims []int
	out    tensor.Shape
	fn     OpFunc
	ctx    *runState

	// Liveness within a run: producers are the ops computing this op's
	// inputs (nil for inputs and parameters); consumers counts the input
	// edges that read this op's value. When the last consumer has run, a
	// recyclable op's buffer goes back to the pool for later ops. Outputs
	// and kept nodes are not recyclable: their values are read after the
	// run.
	producers  []*funcOp
	consumers  int32
	remaining  atomic.Int32
	recyclable bool
	buf        []float32
	full       bool // fn writes every output value: no zeroing (OpFull)
}

func (o *funcOp) Arity() int { return len(o.inDims) }

func (o *funcOp) Type() hm.Type {
	ts := make([]hm.Type, 0, len(o.inDims)+1)
	for _, d := range o.inDims {
		ts = append(ts, G.TensorType{Dims: d, Of: tensor.Float32})
	}
	ts = append(ts, G.TensorType{Dims: len(o.out), Of: tensor.Float32})
	return hm.NewFnType(ts...)
}

func (o *funcOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return o.out.Clone(), nil }

func (o *funcOp) Do(vals ...G.Value) (G.Value, error) {
	if o.ctx != nil {
		if err := o.ctx.err(); err != nil {
			return nil, err
		}
	}
	in := make([][]float32, len(vals))
	for i, v := range vals {
		d, ok := v.(*tensor.Dense)
		if !ok || d.Dtype() != tensor.Float32 {
			return nil, fmt.Errorf("nn: %s: input %d is %T, not a float32 dense tensor", o.name, i, v)
		}
		in[i] = d.Data().([]float32)
	}
	size := o.out.TotalSize()
	var buf []float32
	switch {
	case o.recyclable && o.full:
		if buf = pool.take(size); buf == nil {
			buf = make([]float32, size)
		}
	case o.recyclable:
		buf = pool.get(size)
	default:
		buf = make([]float32, size)
	}
	var start time.Time
	obs := opObserver.Load()
	if obs != nil {
		start = time.Now()
	}
	err := o.fn(buf, in)
	if obs != nil {
		(*obs)(o.name, o.out, time.Since(start))
	}
	if err != nil {
		if o.recyclable {
			pool.put(buf)
		}
		return nil, fmt.Errorf("nn: %s: %w", o.name, err)
	}
	o.buf = buf
	o.remaining.Store(o.consumers)
	for _, p := range o.producers {
		if p != nil && p.remaining.Add(-1) == 0 && p.recyclable && p.buf != nil {
			pool.put(p.buf)
			p.buf = nil
		}
	}
	return tensor.New(tensor.WithShape(o.out.Clone()...), tensor.WithBacking(buf)), nil
}

func (o *funcOp) ReturnsPtr() bool     { return false }
func (o *funcOp) CallsExtern() bool    { return false }
func (o *funcOp) OverwritesInput() int { return -1 }
func (o *funcOp) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "nn.%s#%d%v", o.name, o.id, o.out)
}
func (o *funcOp) Hashcode() uint32 {
	h := fnv.New32a()
	o.WriteHash(h)
	return h.Sum32()
}
func (o *funcOp) String() string { return o.name }

// runState carries the context of the run in progress to every op.
type runState struct {
	c atomic.Pointer[context.Context]
}

func (r *runState) err() error {
	p := r.c.Load()
	if p == nil {
		return nil
	}
	return (*p).Err()
}

// Graph is a computation built from nn's ops over float32 tensors:
// inputs (Input) bound at each run, parameters (Param) bound once, and
// ops. Building errors are recorded and returned by Err and Compile, so
// model code can chain ops and check once, as with bufio.Writer: an op
// given a nil node (the result of a failed op) returns nil.
type Graph struct {
	g      *G.ExprGraph
	err    error
	inputs map[string]*G.Node
	params map[string]*G.Node
	state  *runState
	ops    map[*G.Node]*funcOp
	kept   map[*G.Node]bool
}

// NewGraph returns an empty graph.
func NewGraph() *Graph {
	return &Graph{g: G.NewGraph(), inputs: map[string]*G.Node{}, params: map[string]*G.Node{}, state: &runState{}, ops: map[*G.Node]*funcOp{}, kept: map[*G.Node]bool{}}
}

// Err returns the first error met while building.
func (g *Graph) Err() error { return g.err }

// Errorf records a building error (the first one wins) and returns nil,
// for model code that finds a problem while building a graph.
func (g *Graph) Errorf(format string, args ...any) *Node {
	if g.err == nil {
		g.err = fmt.Errorf(format, args...)
	}
	return nil
}

// Fail records err as the graph's building error (the first one wins) and
// returns nil, for model code that finds a problem while building.
func (g *Graph) Fail(err error) *Node {
	if g.err == nil && err != nil {
		g.err = err
	}
	return nil
}

// fail records an error of an nn op and returns nil.
func (g *Graph) fail(format string, args ...any) *Node {
	return g.Errorf("nn: "+format, args...)
}

// ok reports whether building can go on with nodes: no error so far and
// no nil node (recorded as an error).
func (g *Graph) ok(nodes ...*Node) bool {
	if g.err != nil {
		return false
	}
	for _, n := range nodes {
		if n == nil {
			g.fail("nil node")
			return false
		}
	}
	return true
}

// Input declares a named float32 input of the given shape, bound at each
// run (Machine.Run, Machine.Exec).
func (g *Graph) Input(name string, shape ...int) *Node {
	if n, ok := g.inputs[name]; ok {
		if !n.Shape().Eq(tensor.Shape(shape)) {
			g.fail("input %q declared twice with shapes %v and %v", name, n.Shape(), shape)
		}
		return (*Node)(n)
	}
	n := G.NewTensor(g.g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(name))
	g.inputs[name] = n
	return (*Node)(n)
}

// Param declares a parameter of the graph: a constant tensor bound once,
// when the graph is built, and read by every run. data is not copied; it
// must not change while the graph is in use. Declaring a name again
// returns the same node.
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
		return (*Node)(n)
	}
	v := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
	n := G.NewTensor(g.g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(v))
	g.params[name] = n
	return (*Node)(n)
}

// Op adds an op computing fn over in with output shape out: the way for
// model code to add a computation that nn has no op for.
func (g *Graph) Op(name string, out []int, fn OpFunc, in ...*Node) *Node {
	return g.op(name, out, fn, false, in...)
}

// OpFull is Op for an fn that writes every value of out: out is then not
// zeroed first and may hold stale values when fn starts.
func (g *Graph) OpFull(name string, out []int, fn OpFunc, in ...*Node) *Node {
	return g.op(name, out, fn, true, in...)
}

func (g *Graph) op(name string, out []int, fn OpFunc, full bool, in ...*Node) *Node {
	if g.err != nil {
		return nil
	}
	dims := make([]int, len(in))
	ins := make([]*G.Node, len(in))
	for i, n := range in {
		if n == nil {
			return g.fail("%s: input %d is nil", name, i)
		}
		dims[i] = gn(n).Dims()
		ins[i] = gn(n)
	}
	op := &funcOp{name: name, id: opSeq.Add(1), inDims: dims, out: tensor.Shape(slices.Clone(out)), fn: fn, ctx: g.state, full: full}
	n, err := G.ApplyOp(op, ins...)
	if err != nil {
		return g.fail("%s: %w", name, err)
	}
	for _, x := range ins {
		p := g.ops[x] // nil for inputs and parameters
		op.producers = append(op.producers, p)
		if p != nil {
			p.consumers++
		}
	}
	g.ops[n] = op
	return (*Node)(n)
}

// computed reports whether n is the output of an op (not an input or a
// parameter).
func (g *Graph) computed(n *Node) bool { return g.ops[gn(n)] != nil }

// Keep marks n as a value read after the run although other ops consume
// it, so that its memory is not recycled within the run. Graph outputs
// (nodes no op consumes) are always kept.
func (g *Graph) Keep(n *Node) *Node {
	if n != nil {
		g.kept[gn(n)] = true
	}
	return n
}

// Machine runs a compiled graph. It is not safe for concurrent use.
type Machine struct {
	g  *Graph
	vm G.VM
}

// Compile makes the graph's machine, or returns the first building error.
func (g *Graph) Compile() (*Machine, error) {
	if g.err != nil {
		return nil, g.err
	}
	for n, op := range g.ops {
		// Recycle only values that our own ops alone consume.
		op.recyclable = !g.kept[n] && op.consumers > 0 && int(op.consumers) >= g.g.To(n.ID()).Len()
		if op.recyclable {
			it := g.g.To(n.ID())
			for it.Next() {
				if _, ok := g.ops[it.Node().(*G.Node)]; !ok {
					op.recyclable = false
				}
			}
		}
	}
	return &Machine{g: g, vm: G.NewTapeMachine(g.g, G.EvalMode())}, nil
}

// Run binds every input of the graph to the tensor of its name, which
// must have the declared shape, and runs the graph. It stops between ops
// with ctx.Err() when ctx is cancelled. The tensors are read, not copied,
// and must not change during the run.
func (m *Machine) Run(ctx context.Context, inputs map[string]*Tensor) error {
	flat := make(map[string][]float32, len(inputs))
	for name, t := range inputs {
		n, ok := m.g.inputs[name]
		if !ok {
			return fmt.Errorf("nn: %q is not an input of the graph", name)
		}
		if t == nil || !n.Shape().Eq(tensor.Shape(t.Shape)) {
			var s []int
			if t != nil {
				s = t.Shape
			}
			return fmt.Errorf("nn: input %q has shape %v, graph wants %v", name, s, n.Shape())
		}
		flat[name] = t.Data
	}
	return m.Exec(ctx, flat)
}

// Exec is Run with inputs given as flat float32 values, each of the shape
// its Input declared.
func (m *Machine) Exec(ctx context.Context, inputs map[string][]float32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for name := range inputs {
		if _, ok := m.g.inputs[name]; !ok {
			return fmt.Errorf("nn: %q is not an input of the graph", name)
		}
	}
	for name, n := range m.g.inputs {
		v, ok := inputs[name]
		if !ok {
			return fmt.Errorf("nn: input %q not bound", name)
		}
		if len(v) != n.Shape().TotalSize() {
			return fmt.Errorf("nn: input %q has %d values, graph wants shape %v", name, len(v), n.Shape())
		}
		t := tensor.New(tensor.WithShape(n.Shape().Clone()...), tensor.WithBacking(v))
		if err := G.Let(n, t); err != nil {
			return fmt.Errorf("nn: input %q: %w", name, err)
		}
	}
	m.g.state.c.Store(&ctx)
	defer m.g.state.c.Store(nil)
	m.vm.Reset()
	if err := m.vm.RunAll(); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return err
	}
	return nil
}

// Close releases the machine.
func (m *Machine) Close() error { return m.vm.Close() }
