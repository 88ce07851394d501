package sam

// Shared building blocks of the prompt encoder and mask decoder
// (segment_anything/modeling/common.py and the MLP of mask_decoder.py),
// and the small graph helpers they need.

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// params holds one module's weights, read and shape-checked from a Store
// when the module is built, and declares them as graph inputs named by
// their state-dict names (relative to the module's store), so one compiled
// graph can be run with the same bindings every time.
type params struct {
	s    *weights.Store
	vals map[string]*tensor.Dense
	err  error
}

func newParams(s *weights.Store) *params {
	return &params{s: s, vals: map[string]*tensor.Dense{}}
}

// load reads name with the given shape; the first error is kept.
func (p *params) load(name string, shape ...int) {
	if p.err != nil {
		return
	}
	t, err := p.s.Tensor(name, shape...)
	if err != nil {
		p.err = err
		return
	}
	p.vals[name] = t
}

// value returns a loaded tensor's data.
func (p *params) value(name string) []float32 { return nn.F32(p.vals[name]) }

// node declares the loaded tensor name as an input of g.
func (p *params) node(g *nn.Graph, name string) *G.Node {
	t, ok := p.vals[name]
	if !ok {
		return failNode(g, "weight %q was not loaded", name)
	}
	return g.Input(name, t.Shape()...)
}

// bind adds every loaded tensor to the inputs of a run.
func (p *params) bind(in map[string]*tensor.Dense) {
	for k, v := range p.vals {
		in[k] = v
	}
}

// linearLayer is a torch.nn.Linear stored under prefix (prefix.weight,
// prefix.bias).
type linearLayer struct {
	prefix  string
	in, out int
}

func (l linearLayer) load(p *params) {
	p.load(l.prefix+".weight", l.out, l.in)
	p.load(l.prefix+".bias", l.out)
}

func (l linearLayer) forward(g *nn.Graph, p *params, x *G.Node) *G.Node {
	return g.Linear(x, p.node(g, l.prefix+".weight"), p.node(g, l.prefix+".bias"))
}

// layerNorm is a torch.nn.LayerNorm over the last axis (eps 1e-5, the
// decoder's norms) stored under prefix.
type layerNorm struct {
	prefix string
	dim    int
	eps    float32
}

func (l layerNorm) load(p *params) {
	p.load(l.prefix+".weight", l.dim)
	p.load(l.prefix+".bias", l.dim)
}

func (l layerNorm) forward(g *nn.Graph, p *params, x *G.Node) *G.Node {
	return g.LayerNorm(x, p.node(g, l.prefix+".weight"), p.node(g, l.prefix+".bias"), l.eps)
}

// addForward is forward(x + y) as one pass over rows: x, y (N, dim).
func (l layerNorm) addForward(g *nn.Graph, p *params, x, y *G.Node) *G.Node {
	w, b := p.node(g, l.prefix+".weight"), p.node(g, l.prefix+".bias")
	if g.Err() != nil || x == nil || y == nil {
		return nil
	}
	s := x.Shape()
	if len(s) != 2 || s[1] != l.dim || !y.Shape().Eq(s) {
		return failNode(g, "%s: add and norm of %v and %v", l.prefix, s, y.Shape())
	}
	rows, dim, eps := s[0], s[1], l.eps
	return g.ApplyFull("AddLayerNorm", s, func(o *tensor.Dense, in []*tensor.Dense) error {
		d := nn.F32(o)
		a, c := nn.F32(in[0]), nn.F32(in[1])
		nn.ParallelFor(rows, func(lo, hi int) {
			for i := lo * dim; i < hi*dim; i++ {
				d[i] = a[i] + c[i]
			}
		})
		layerNormRows(d, d, rows, dim, nn.F32(in[2]), nn.F32(in[3]), eps)
		return nil
	}, x, y, w, b)
}

// layerNorm2d is common.py's LayerNorm2d (NCHW, over channels, eps 1e-6).
type layerNorm2d struct {
	prefix string
	chans  int
}

func (l layerNorm2d) load(p *params) {
	p.load(l.prefix+".weight", l.chans)
	p.load(l.prefix+".bias", l.chans)
}

func (l layerNorm2d) forward(g *nn.Graph, p *params, x *G.Node) *G.Node {
	return g.LayerNorm2d(x, p.node(g, l.prefix+".weight"), p.node(g, l.prefix+".bias"), 1e-6)
}

// mlpBlock is common.py's MLPBlock: lin2(act(lin1(x))). The decoder's
// TwoWayTransformer uses it with ReLU.
type mlpBlock struct {
	lin1, lin2 linearLayer
}

func newMLPBlock(prefix string, dim, hidden int) mlpBlock {
	return mlpBlock{
		lin1: linearLayer{prefix + ".lin1", dim, hidden},
		lin2: linearLayer{prefix + ".lin2", hidden, dim},
	}
}

func (m mlpBlock) load(p *params) {
	m.lin1.load(p)
	m.lin2.load(p)
}

// forward: x (N, dim) -> lin1 -> ReLU (N, hidden) -> lin2 (N, dim).
func (m mlpBlock) forward(g *nn.Graph, p *params, x *G.Node) *G.Node {
	h := g.ReLU(m.lin1.forward(g, p, x)) // (N, hidden)
	return m.lin2.forward(g, p, h)       // (N, dim)
}

// mlp is mask_decoder.py's MLP: num_layers Linear layers, ReLU between
// them, none after the last (no sigmoid output in SAM).
type mlp struct {
	layers []linearLayer
}

func newMLP(prefix string, in, hidden, out, numLayers int) mlp {
	var m mlp
	for i := 0; i < numLayers; i++ {
		a, b := hidden, hidden
		if i == 0 {
			a = in
		}
		if i == numLayers-1 {
			b = out
		}
		m.layers = append(m.layers, linearLayer{fmt.Sprintf("%s.layers.%d", prefix, i), a, b})
	}
	return m
}

func (m mlp) load(p *params) {
	for _, l := range m.layers {
		l.load(p)
	}
}

// forward: x (N, in) -> [Linear -> ReLU] x (layers-1) -> Linear (N, out).
func (m mlp) forward(g *nn.Graph, p *params, x *G.Node) *G.Node {
	for i, l := range m.layers {
		x = l.forward(g, p, x)
		if i < len(m.layers)-1 {
			x = g.ReLU(x)
		}
	}
	return x
}

// failNode records a building error on g and returns nil.
func failNode(g *nn.Graph, format string, args ...any) *G.Node {
	return g.Fail(fmt.Errorf("sam: "+format, args...))
}

// concatRows stacks 2-d nodes (Ni, D) along the first axis -> (sum Ni, D).
func concatRows(g *nn.Graph, parts ...*G.Node) *G.Node {
	if g.Err() != nil {
		return nil
	}
	rows, dim := 0, -1
	for i, n := range parts {
		if n == nil {
			return failNode(g, "concat: part %d is nil", i)
		}
		s := n.Shape()
		if len(s) != 2 || (dim >= 0 && s[1] != dim) {
			return failNode(g, "concat: part %d has shape %v, want (N, %d)", i, s, dim)
		}
		dim = s[1]
		rows += s[0]
	}
	return g.Apply("ConcatRows", tensor.Shape{rows, dim}, func(o *tensor.Dense, in []*tensor.Dense) error {
		off := 0
		out := nn.F32(o)
		for _, v := range in {
			off += copy(out[off:], nn.F32(v))
		}
		return nil
	}, parts...)
}

// sliceRows returns rows [lo, hi) of a 2-d node (N, D) -> (hi-lo, D).
func sliceRows(g *nn.Graph, x *G.Node, lo, hi int) *G.Node {
	if g.Err() != nil || x == nil {
		return nil
	}
	s := x.Shape()
	if len(s) != 2 || lo < 0 || hi > s[0] || lo >= hi {
		return failNode(g, "rows [%d:%d] of shape %v", lo, hi, s)
	}
	dim := s[1]
	return g.Apply(fmt.Sprintf("Rows[%d:%d]", lo, hi), tensor.Shape{hi - lo, dim}, func(o *tensor.Dense, in []*tensor.Dense) error {
		copy(nn.F32(o), nn.F32(in[0])[lo*dim:hi*dim])
		return nil
	}, x)
}

// transposeAdd sets dst (cols, rows) = (x + add)^T for x (rows, cols); add
// may be nil. Each task takes a band of 16 rows of x and walks along it
// (sequential reads that the prefetcher follows), transposing 16 x 32
// tiles through a local buffer into runs of 16 values of dst's rows.
func transposeAdd(dst, x, add []float32, rows, cols int) {
	const rb, cb = 16, 32
	nn.ParallelFor((rows+rb-1)/rb, func(lo, hi int) {
		var tile [rb * cb]float32
		for r0 := lo * rb; r0 < min(hi*rb, rows); r0 += rb {
			nr := min(rb, rows-r0)
			for c0 := 0; c0 < cols; c0 += cb {
				nc := min(cb, cols-c0)
				for i := 0; i < nr; i++ {
					t := tile[i*cb : i*cb+nc]
					xr := x[(r0+i)*cols+c0 : (r0+i)*cols+c0+nc]
					if add == nil {
						copy(t, xr)
						continue
					}
					ar := add[(r0+i)*cols+c0 : (r0+i)*cols+c0+nc]
					for j, v := range xr {
						t[j] = v + ar[j]
					}
				}
				for j := 0; j < nc; j++ {
					d := dst[(c0+j)*rows+r0 : (c0+j)*rows+r0+nr]
					for i := range d {
						d[i] = tile[i*cb+j]
					}
				}
			}
		}
	})
}

// addNodes is a + b for two nodes of the same shape, in parallel.
func addNodes(g *nn.Graph, a, b *G.Node) *G.Node {
	if g.Err() != nil || a == nil || b == nil {
		return nil
	}
	if !a.Shape().Eq(b.Shape()) {
		return failNode(g, "add of %v and %v", a.Shape(), b.Shape())
	}
	return g.ApplyFull("AddSame", a.Shape(), func(o *tensor.Dense, in []*tensor.Dense) error {
		x, y, d := nn.F32(in[0]), nn.F32(in[1]), nn.F32(o)
		const block = 1 << 14
		nn.ParallelFor((len(d)+block-1)/block, func(lo, hi int) {
			dd := d[lo*block : min(hi*block, len(d))]
			xx, yy := x[lo*block:lo*block+len(dd)], y[lo*block:lo*block+len(dd)]
			for i := range dd {
				dd[i] = xx[i] + yy[i]
			}
		})
		return nil
	}, a, b)
}

// layerNormRows normalises each of the rows rows of x (d values) into dst
// (which may alias x): (x - mean) / sqrt(var + eps) * w + b, with the
// biased variance (nn.LayerNormRows: vectorised, in parallel over rows).
func layerNormRows(dst, x []float32, rows, d int, w, b []float32, eps float32) {
	nn.LayerNormRows(dst[:rows*d], x[:rows*d], rows, d, w[:d], b[:d], eps)
}
