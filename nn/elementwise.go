package nn

// Elementwise ops: sums and activations.

// GELU is the exact (erf) Gaussian error linear unit, as torch.nn.GELU(),
// computed in float32 with an absolute error below 2e-7 (times max(1, |x|)).
func GELU(x float32) float32 { return gelu32(x) }

// GELUSlice applies GELU elementwise from src to dst (which may alias).
func GELUSlice(dst, src []float32) {
	const block = 1 << 14
	ParallelFor((len(src)+block-1)/block, func(lo, hi int) {
		d := dst[lo*block : min(hi*block, len(src))]
		copy(d, src[lo*block:])
		geluBias(d, nil)
	})
}

// GELUBias sets x[i] = GELU(x[i] + bias[i]) (exact GELU; bias may be nil)
// on the calling goroutine, for kernels that already run in parallel.
func GELUBias(x, bias []float32) { geluBias(x, bias) }

// ReLUSlice applies max(0, x) elementwise from src to dst (which may alias).
func ReLUSlice(dst, src []float32) {
	for i, v := range src {
		if v < 0 {
			v = 0
		}
		dst[i] = v
	}
}

// Add returns a + b for tensors of the same number of elements (the result
// has a's shape). b may also have as many elements as a's last axis, or
// as a's channel axis for a 4-d NCHW a (a per-channel bias).
func (g *Graph) Add(a, b *Node) *Node {
	if !g.ok(a, b) {
		return nil
	}
	as, bs := shapeOf(a), shapeOf(b)
	na, nb := prod(as), prod(bs)
	switch {
	case na == nb:
		return g.OpFull("Add", as, func(o []float32, v [][]float32) error {
			x, y, d := v[0], v[1], o
			for i := range d {
				d[i] = x[i] + y[i]
			}
			return nil
		}, a, b)
	case nb == as[len(as)-1]:
		return g.OpFull("AddRow", as, func(o []float32, v [][]float32) error {
			x, y, d := v[0], v[1], o
			for i := range d {
				d[i] = x[i] + y[i%nb]
			}
			return nil
		}, a, b)
	case len(as) == 4 && nb == as[1]:
		hw := as[2] * as[3]
		return g.OpFull("AddChannel", as, func(o []float32, v [][]float32) error {
			x, y, d := v[0], v[1], o
			for i := range d {
				d[i] = x[i] + y[(i/hw)%nb]
			}
			return nil
		}, a, b)
	}
	return g.fail("add: shapes %v and %v do not match", as, bs)
}

// GELU applies the exact GELU elementwise.
func (g *Graph) GELU(x *Node) *Node { return g.unary("GELU", x, GELUSlice) }

// ReLU applies max(0, x) elementwise.
func (g *Graph) ReLU(x *Node) *Node { return g.unary("ReLU", x, ReLUSlice) }

// TanhUnitRegion is TanhUnit on the region r of each plane of an NCHW x,
// zero elsewhere.
func (g *Graph) TanhUnitRegion(x *Node, r Region) *Node {
	n, c, h, w, ok := g.nchw("tanh unit", x)
	if !ok {
		return nil
	}
	xs, planes := shapeOf(x), n*c
	rows, cols := r.limits(h, w)
	return g.Op("TanhUnit", xs, func(o []float32, v [][]float32) error {
		src, dst := v[0], o
		ParallelFor(planes*rows, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				off := (i/rows*h + i%rows) * w
				tanhUnitRow(dst[off:off+cols], src[off:off+cols])
			}
		})
		return nil
	}, x)
}

// unary adds an op applying f(dst, src) to x.
func (g *Graph) unary(name string, x *Node, f func(dst, src []float32)) *Node {
	if !g.ok(x) {
		return nil
	}
	return g.OpFull(name, shapeOf(x), func(o []float32, v [][]float32) error {
		f(o, v[0])
		return nil
	}, x)
}
