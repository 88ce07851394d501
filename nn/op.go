// Package nn holds the layers and operations that gorgonia lacks, as
// gorgonia custom ops over float32 tensors, and the fast kernels behind
// them (GEMM, convolution, attention, normalisation, resampling).
//
// Every op is a plain-Go kernel (a function over contiguous float32 slices,
// tested on its own against the reference formula) wrapped by Graph.Apply
// into a gorgonia node, so that models are gorgonia expression graphs run by
// a TapeMachine, without gradients.
package nn

import (
	"context"
	"fmt"
	"hash"
	"hash/fnv"
	"sync/atomic"
	"time"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Kernel computes an op's output. out is a zeroed, freshly allocated
// float32 tensor of the op's output shape; in are the input values.
type Kernel func(out *tensor.Dense, in []*tensor.Dense) error

var opSeq atomic.Uint64

// An OpObserver is told the name, output shape and duration of every op
// run by any Machine (set with SetOpObserver).
type OpObserver func(name string, out tensor.Shape, d time.Duration)

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

// funcOp adapts a Kernel to gorgonia's Op interface.
type funcOp struct {
	name   string
	id     uint64
	inDims []int
	out    tensor.Shape
	fn     Kernel
	ctx    *runState

	// Liveness within a run: producers are the ops computing this op's
	// inputs (nil for graph inputs); consumers counts the input edges that
	// read this op's value. When the last consumer has run, a recyclable
	// op's buffer goes back to the pool for later ops. Outputs and kept
	// nodes are not recyclable: their values are read after the run.
	producers  []*funcOp
	consumers  int32
	remaining  atomic.Int32
	recyclable bool
	buf        []float32
	full       bool // fn writes every output value: no zeroing (ApplyFull)
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
	in := make([]*tensor.Dense, len(vals))
	for i, v := range vals {
		d, ok := v.(*tensor.Dense)
		if !ok {
			return nil, fmt.Errorf("nn: %s: input %d is %T, not a dense tensor", o.name, i, v)
		}
		if d.Dtype() != tensor.Float32 {
			return nil, fmt.Errorf("nn: %s: input %d is %v, not float32", o.name, i, d.Dtype())
		}
		in[i] = d
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
	out := tensor.New(tensor.WithShape(o.out.Clone()...), tensor.WithBacking(buf))
	var start time.Time
	obs := opObserver.Load()
	if obs != nil {
		start = time.Now()
	}
	err := o.fn(out, in)
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
	return out, nil
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

// Graph builds a gorgonia expression graph from Kernels. Building errors
// are recorded and returned by Err and Compile, so model code can chain
// Apply calls and check once, as with bufio.Writer.
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

// ExprGraph exposes the underlying gorgonia graph.
func (g *Graph) ExprGraph() *G.ExprGraph { return g.g }

// Err returns the first error met while building.
func (g *Graph) Err() error { return g.err }

// Fail records err as the graph's building error (the first one wins) and
// returns nil, for model code that finds a problem while building.
func (g *Graph) Fail(err error) *G.Node {
	if g.err == nil && err != nil {
		g.err = err
	}
	return nil
}

// Input declares a named float32 input (an activation or a weight bound at
// run time).
func (g *Graph) Input(name string, shape ...int) *G.Node {
	if n, ok := g.inputs[name]; ok {
		if !n.Shape().Eq(tensor.Shape(shape)) && g.err == nil {
			g.err = fmt.Errorf("nn: input %q declared twice with shapes %v and %v", name, n.Shape(), shape)
		}
		return n
	}
	n := G.NewTensor(g.g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(name))
	g.inputs[name] = n
	return n
}

// Apply adds a node computing fn over in, with output shape out.
func (g *Graph) Apply(name string, out tensor.Shape, fn Kernel, in ...*G.Node) *G.Node {
	return g.apply(name, out, fn, false, in...)
}

// ApplyFull is Apply for a kernel that writes every value of its output:
// out is then not zeroed first, and may hold stale values from an earlier
// op when fn starts.
func (g *Graph) ApplyFull(name string, out tensor.Shape, fn Kernel, in ...*G.Node) *G.Node {
	return g.apply(name, out, fn, true, in...)
}

func (g *Graph) apply(name string, out tensor.Shape, fn Kernel, full bool, in ...*G.Node) *G.Node {
	if g.err != nil {
		return nil
	}
	dims := make([]int, len(in))
	for i, n := range in {
		if n == nil {
			g.err = fmt.Errorf("nn: %s: input %d is nil", name, i)
			return nil
		}
		dims[i] = n.Dims()
	}
	op := &funcOp{name: name, id: opSeq.Add(1), inDims: dims, out: out.Clone(), fn: fn, ctx: g.state, full: full}
	n, err := G.ApplyOp(op, in...)
	if err != nil {
		g.err = fmt.Errorf("nn: %s: %w", name, err)
		return nil
	}
	for _, x := range in {
		p := g.ops[x] // nil for inputs
		op.producers = append(op.producers, p)
		if p != nil {
			p.consumers++
		}
	}
	g.ops[n] = op
	return n
}

// Keep marks n as a value read after the run although other ops consume
// it, so that its memory is not recycled within the run. Graph outputs
// (nodes no op consumes) are always kept.
func (g *Graph) Keep(n *G.Node) *G.Node {
	if n != nil {
		g.kept[n] = true
	}
	return n
}

// Machine runs a compiled graph. It is not safe for concurrent use.
type Machine struct {
	g  *Graph
	vm G.VM
}

// Compile makes a TapeMachine for the graph (eval mode: no gradients).
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

// Run binds inputs by name and runs the graph. It stops between ops with
// ctx.Err() when ctx is cancelled. Missing inputs are an error.
func (m *Machine) Run(ctx context.Context, inputs map[string]*tensor.Dense) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for name, n := range m.g.inputs {
		v, ok := inputs[name]
		if !ok {
			return fmt.Errorf("nn: input %q not bound", name)
		}
		if !v.Shape().Eq(n.Shape()) {
			return fmt.Errorf("nn: input %q has shape %v, graph wants %v", name, v.Shape(), n.Shape())
		}
		if err := G.Let(n, v); err != nil {
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

// Exec is Run with inputs given as flat float32 values, each of the shape
// its Input declared.
func (m *Machine) Exec(ctx context.Context, inputs map[string][]float32) error {
	in := make(map[string]*tensor.Dense, len(inputs))
	for name, v := range inputs {
		n, ok := m.g.inputs[name]
		if !ok {
			return fmt.Errorf("nn: %q is not an input of the graph", name)
		}
		if len(v) != n.Shape().TotalSize() {
			return fmt.Errorf("nn: input %q has %d values, graph wants shape %v", name, len(v), n.Shape())
		}
		in[name] = tensor.New(tensor.WithShape(n.Shape().Clone()...), tensor.WithBacking(v))
	}
	return m.Run(ctx, in)
}

// Value returns a node's value after Run as a dense float32 tensor.
func Value(n *G.Node) *tensor.Dense {
	if n == nil || n.Value() == nil {
		return nil
	}
	d, _ := n.Value().(*tensor.Dense)
	return d
}

// Close releases the machine.
func (m *Machine) Close() error { return m.vm.Close() }

// F32 returns a dense tensor's float32 backing slice.
func F32(t *tensor.Dense) []float32 { return t.Data().([]float32) }

// NewDense makes a float32 tensor of shape over data (allocated when nil).
func NewDense(data []float32, shape ...int) *tensor.Dense {
	if data == nil {
		n := 1
		for _, d := range shape {
			n *= d
		}
		data = make([]float32, n)
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
}
