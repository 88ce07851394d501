package nn

import (
	"fmt"
	"math"
	"slices"
)

// LinearRows computes dst[r, o] = sum_i x[r, i] * w[o, i] + b[o] for rows
// rows: a PyTorch nn.Linear with weight w (out x in) and optional bias b.
func LinearRows(dst, x []float32, rows, in int, w []float32, out int, b []float32) {
	linearRows(nil, dst, x, rows, in, w, out, b)
}

func linearRows(pc *PackCache, dst, x []float32, rows, in int, w []float32, out int, b []float32) {
	if b != nil {
		fillRows(dst[:rows*out], nil, b[:out])
		linearGemm(pc, dst, x, rows, in, w, out, 1)
		return
	}
	linearGemm(pc, dst, x, rows, in, w, out, 0)
}

// linearGemm sets dst = x @ w^T + beta*dst, with w's packing from pc when
// pc is not nil.
func linearGemm(pc *PackCache, dst, x []float32, rows, in int, w []float32, out int, beta float32) {
	if pc != nil {
		GemmPacked(false, rows, 1, x, in, pc.B(true, in, out, w, in), beta, dst, out)
		return
	}
	Gemm(false, true, rows, out, in, 1, x, in, w, in, beta, dst, out)
}

// linearPackRows is the most rows for which a graph's Linear keeps its
// weight packed between runs: with few rows, packing the weight costs as
// much as the product; with many it is a small part, not worth a second
// copy of the weight in memory.
const linearPackRows = 256

// linearCache returns a packing cache for the weight w of a Linear over
// rows rows, or nil when it is not worth one or w is computed by an op.
func (g *Graph) linearCache(w *Node, rows int) *PackCache {
	if rows > linearPackRows || g.weightCache(w) == nil {
		return nil
	}
	return new(PackCache)
}

// fillRows sets dst = res + b with b (a row) broadcast over the rows of
// dst; res may be nil (dst = b on every row). It runs in parallel over
// blocks of rows.
func fillRows(dst, res, b []float32) {
	n := len(b)
	if n == 0 {
		if res != nil {
			copy(dst, res)
		} else {
			clear(dst)
		}
		return
	}
	rows := len(dst) / n
	per := max(1, (1<<14)/n) // rows per task: about 64 KiB
	ParallelFor((rows+per-1)/per, func(lo, hi int) {
		r0, r1 := lo*per, min(hi*per, rows)
		d := dst[r0*n : r1*n]
		if res != nil {
			addRows(d, res[r0*n:r1*n], b)
			return
		}
		for r := 0; r < r1-r0; r++ {
			copy(d[r*n:(r+1)*n], b)
		}
	})
}

// LinearGELURows is LinearRows followed by the exact GELU, fused: dst =
// GELU(x @ w^T + b), with the bias added in the GELU pass.
func LinearGELURows(dst, x []float32, rows, in int, w []float32, out int, b []float32) {
	linearGELURows(nil, dst, x, rows, in, w, out, b)
}

func linearGELURows(pc *PackCache, dst, x []float32, rows, in int, w []float32, out int, b []float32) {
	linearGemm(pc, dst, x, rows, in, w, out, 0)
	per := max(1, (1<<14)/max(out, 1))
	ParallelFor((rows+per-1)/per, func(lo, hi int) {
		for r := lo * per; r < min(hi*per, rows); r++ {
			geluBias(dst[r*out:(r+1)*out], b)
		}
	})
}

// LinearResidualRows is a residual connection around a Linear, fused:
// dst = res + (x @ w^T + b), with res (rows x out) and b (out, or nil)
// summed first and the product accumulated onto them.
func LinearResidualRows(dst, x []float32, rows, in int, w []float32, out int, b, res []float32) {
	linearResidualRows(nil, dst, x, rows, in, w, out, b, res)
}

func linearResidualRows(pc *PackCache, dst, x []float32, rows, in int, w []float32, out int, b, res []float32) {
	if b == nil {
		b = []float32{}
	}
	fillRows(dst[:rows*out], res[:rows*out], b)
	linearGemm(pc, dst, x, rows, in, w, out, 1)
}

// LayerNormRows normalises each row of x (rows x d) over its d values:
// (x - mean) / sqrt(var + eps) * w + b, with the biased variance.
func LayerNormRows(dst, x []float32, rows, d int, w, b []float32, eps float32) {
	per := max(1, (1<<14)/max(d, 1)) // rows per task: about 64 KiB
	ParallelFor((rows+per-1)/per, func(lo, hi int) {
		for r := lo * per; r < min(hi*per, rows); r++ {
			layerNormRow(dst[r*d:(r+1)*d], x[r*d:(r+1)*d], w, b, eps)
		}
	})
}

// LayerNormChannels is SAM's LayerNorm2d on an NCHW tensor: each pixel is
// normalised over the C channels, then scaled by w[c] and shifted by b[c].
func LayerNormChannels(dst, x []float32, n, c, hw int, w, b []float32, eps float32) {
	for bi := 0; bi < n; bi++ {
		xb := x[bi*c*hw : (bi+1)*c*hw]
		ob := dst[bi*c*hw : (bi+1)*c*hw]
		ParallelFor(hw, func(lo, hi int) {
			for p := lo; p < hi; p++ {
				var mean float64
				for ch := 0; ch < c; ch++ {
					mean += float64(xb[ch*hw+p])
				}
				mean /= float64(c)
				var vs float64
				for ch := 0; ch < c; ch++ {
					dv := float64(xb[ch*hw+p]) - mean
					vs += dv * dv
				}
				inv := 1 / math.Sqrt(vs/float64(c)+float64(eps))
				for ch := 0; ch < c; ch++ {
					ob[ch*hw+p] = float32((float64(xb[ch*hw+p])-mean)*inv)*w[ch] + b[ch]
				}
			}
		})
	}
}

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

func shapeOf(n *Node) []int { return n.Shape() }

func prod(s []int) int {
	p := 1
	for _, d := range s {
		p *= d
	}
	return p
}

// Linear is torch.nn.Linear over the last axis of x: x (..., in), w (out,
// in), b (out) or nil -> (..., out).
func (g *Graph) Linear(x, w, b *Node) *Node {
	if !g.ok(x, w) {
		return nil
	}
	xs, ws := shapeOf(x), shapeOf(w)
	in := xs[len(xs)-1]
	if len(ws) != 2 || ws[1] != in {
		return g.fail("linear: input %v, weight %v", xs, ws)
	}
	out := ws[0]
	rows := prod(xs) / in
	os := append([]int{}, xs...)
	os[len(os)-1] = out
	ins := []*Node{x, w}
	if b != nil {
		if bs := shapeOf(b); prod(bs) != out {
			return g.fail("linear: bias %v for %d outputs", bs, out)
		}
		ins = append(ins, b)
	}
	pc := g.linearCache(w, rows)
	return g.OpFull("Linear", os, func(o []float32, v [][]float32) error {
		var bias []float32
		if len(v) == 3 {
			bias = v[2]
		}
		linearRows(pc, o, v[0], rows, in, v[1], out, bias)
		return nil
	}, ins...)
}

// linearShapes checks a Linear's operands and returns the rows, in and out
// sizes and the output shape (x's with the last axis out).
func (g *Graph) linearShapes(op string, x, w, b *Node) (rows, in, out int, os []int, ok bool) {
	xs, ws := shapeOf(x), shapeOf(w)
	in = xs[len(xs)-1]
	if len(ws) != 2 || ws[1] != in {
		g.fail("%s: input %v, weight %v", op, xs, ws)
		return 0, 0, 0, nil, false
	}
	out = ws[0]
	if b != nil {
		if bs := shapeOf(b); prod(bs) != out {
			g.fail("%s: bias %v for %d outputs", op, bs, out)
			return 0, 0, 0, nil, false
		}
	}
	os = append([]int{}, xs...)
	os[len(os)-1] = out
	return prod(xs) / in, in, out, os, true
}

// LinearGELU is GELU(Linear(x, w, b)) as one op (LinearGELURows): x (...,
// in), w (out, in), b (out) or nil -> (..., out).
func (g *Graph) LinearGELU(x, w, b *Node) *Node {
	if !g.ok(x, w) {
		return nil
	}
	rows, in, out, os, ok := g.linearShapes("linear+gelu", x, w, b)
	if !ok {
		return nil
	}
	ins := []*Node{x, w}
	if b != nil {
		ins = append(ins, b)
	}
	pc := g.linearCache(w, rows)
	return g.OpFull("LinearGELU", os, func(o []float32, v [][]float32) error {
		var bias []float32
		if len(v) == 3 {
			bias = v[2]
		}
		linearGELURows(pc, o, v[0], rows, in, v[1], out, bias)
		return nil
	}, ins...)
}

// LinearResidual is res + Linear(x, w, b) as one op (LinearResidualRows):
// x (..., in), w (out, in), b (out) or nil, res of the output's size ->
// (..., out).
func (g *Graph) LinearResidual(x, w, b, res *Node) *Node {
	if !g.ok(x, w, res) {
		return nil
	}
	rows, in, out, os, ok := g.linearShapes("linear+residual", x, w, b)
	if !ok {
		return nil
	}
	if prod(shapeOf(res)) != rows*out {
		return g.fail("linear+residual: residual %v for output %v", shapeOf(res), os)
	}
	ins := []*Node{x, w, res}
	if b != nil {
		ins = append(ins, b)
	}
	pc := g.linearCache(w, rows)
	return g.OpFull("LinearResidual", os, func(o []float32, v [][]float32) error {
		var bias []float32
		if len(v) == 4 {
			bias = v[3]
		}
		linearResidualRows(pc, o, v[0], rows, in, v[1], out, bias, v[2])
		return nil
	}, ins...)
}

// LayerNorm normalises over the last axis of x with scale w and shift b.
func (g *Graph) LayerNorm(x, w, b *Node, eps float32) *Node {
	if !g.ok(x, w, b) {
		return nil
	}
	xs := shapeOf(x)
	d := xs[len(xs)-1]
	if prod(shapeOf(w)) != d || prod(shapeOf(b)) != d {
		return g.fail("layernorm: input %v, weight %v, bias %v", xs, shapeOf(w), shapeOf(b))
	}
	rows := prod(xs) / d
	return g.OpFull("LayerNorm", xs, func(o []float32, v [][]float32) error {
		LayerNormRows(o, v[0], rows, d, v[1], v[2], eps)
		return nil
	}, x, w, b)
}

// LayerNorm2d is SAM's channel LayerNorm on NCHW x.
func (g *Graph) LayerNorm2d(x, w, b *Node, eps float32) *Node {
	if !g.ok(x, w, b) {
		return nil
	}
	xs := shapeOf(x)
	if len(xs) != 4 || prod(shapeOf(w)) != xs[1] || prod(shapeOf(b)) != xs[1] {
		return g.fail("layernorm2d: input %v, weight %v, bias %v", xs, shapeOf(w), shapeOf(b))
	}
	return g.OpFull("LayerNorm2d", xs, func(o []float32, v [][]float32) error {
		LayerNormChannels(o, v[0], xs[0], xs[1], xs[2]*xs[3], v[1], v[2], eps)
		return nil
	}, x, w, b)
}

// GELU applies the exact GELU elementwise.
func (g *Graph) GELU(x *Node) *Node {
	if !g.ok(x) {
		return nil
	}
	return g.OpFull("GELU", shapeOf(x), func(o []float32, v [][]float32) error {
		GELUSlice(o, v[0])
		return nil
	}, x)
}

// ReLU applies max(0, x) elementwise.
func (g *Graph) ReLU(x *Node) *Node {
	if !g.ok(x) {
		return nil
	}
	return g.OpFull("ReLU", shapeOf(x), func(o []float32, v [][]float32) error {
		ReLUSlice(o, v[0])
		return nil
	}, x)
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

// Reshape returns x viewed with a new shape of the same size (a copy).
func (g *Graph) Reshape(x *Node, shape ...int) *Node {
	if !g.ok(x) {
		return nil
	}
	if prod(shape) != prod(shapeOf(x)) {
		return g.fail("reshape: %v to %v", shapeOf(x), shape)
	}
	return g.Op("Reshape", []int(shape), func(o []float32, v [][]float32) error {
		copy(o, v[0])
		return nil
	}, x)
}

// Permute returns x with its axes reordered (as torch.permute), copied
// contiguous.
func (g *Graph) Permute(x *Node, axes ...int) *Node {
	if !g.ok(x) {
		return nil
	}
	xs := shapeOf(x)
	if len(axes) != len(xs) {
		return g.fail("permute: %d axes for shape %v", len(axes), xs)
	}
	os := make([]int, len(xs))
	for i, a := range axes {
		os[i] = xs[a]
	}
	return g.Op("Permute", os, func(o []float32, v [][]float32) error {
		PermuteInto(o, v[0], xs, axes)
		return nil
	}, x)
}

// PermuteInto writes src (shape) with axes reordered into dst.
func PermuteInto(dst, src []float32, shape []int, axes []int) {
	if b, r, c, ok := batchedTranspose(shape, axes); ok {
		transposeInto(dst, src, b, r, c)
		return
	}
	nd := len(shape)
	stride := make([]int, nd)
	s := 1
	for i := nd - 1; i >= 0; i-- {
		stride[i] = s
		s *= shape[i]
	}
	oshape := make([]int, nd)
	ostride := make([]int, nd) // source stride of each output axis
	for i, a := range axes {
		oshape[i] = shape[a]
		ostride[i] = stride[a]
	}
	idx := make([]int, nd)
	off := 0
	for i := range dst {
		dst[i] = src[off]
		for ax := nd - 1; ax >= 0; ax-- {
			idx[ax]++
			off += ostride[ax]
			if idx[ax] < oshape[ax] {
				break
			}
			off -= ostride[ax] * oshape[ax]
			idx[ax] = 0
		}
	}
}

// batchedTranspose reports whether permuting shape by axes is a batch of
// matrix transposes, (b, r, c) -> (b, c, r): the axes keep a leading run,
// then swap two runs (as NHWC <-> NCHW do).
func batchedTranspose(shape, axes []int) (b, r, c int, ok bool) {
	nd := len(shape)
	lead := 0
	for lead < nd && axes[lead] == lead {
		lead++
	}
	if lead == nd {
		return 0, 0, 0, false
	}
	// axes[lead:] must be [s, s+1, ..., nd-1, lead, ..., s-1] for some split s.
	split := axes[lead]
	if split <= lead {
		return 0, 0, 0, false
	}
	for i := lead; i < nd; i++ {
		want := split + (i - lead)
		if want >= nd {
			want = lead + (want - nd)
		}
		if axes[i] != want {
			return 0, 0, 0, false
		}
	}
	b, r, c = prod(shape[:lead]), prod(shape[lead:split]), prod(shape[split:])
	return b, r, c, true
}

// transposeInto writes b matrices src (r x c) transposed to dst (c x r),
// in cache blocks, in parallel over the batch and column blocks.
func transposeInto(dst, src []float32, b, r, c int) {
	const blk = 32
	cb := (c + blk - 1) / blk
	ParallelFor(b*cb, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			bi, c0 := t/cb, t%cb*blk
			c1 := min(c0+blk, c)
			s, d := src[bi*r*c:(bi+1)*r*c], dst[bi*r*c:(bi+1)*r*c]
			for r0 := 0; r0 < r; r0 += blk {
				r1 := min(r0+blk, r)
				for i := r0; i < r1; i++ {
					row := s[i*c+c0 : i*c+c1]
					for j, v := range row {
						d[(c0+j)*r+i] = v
					}
				}
			}
		}
	})
}

// AddLayerNorm is LayerNorm(a + b) over the last axis, as one pass over
// rows (a transformer's "norm(x + attn_out)"): a and b of the same shape
// (..., d), w and bias (d).
func (g *Graph) AddLayerNorm(a, b, w, bias *Node, eps float32) *Node {
	if !g.ok(a, b, w, bias) {
		return nil
	}
	as := shapeOf(a)
	d := as[len(as)-1]
	if !slices.Equal(as, shapeOf(b)) || prod(shapeOf(w)) != d || prod(shapeOf(bias)) != d {
		return g.fail("add+layernorm: inputs %v and %v, weight %v, bias %v", as, shapeOf(b), shapeOf(w), shapeOf(bias))
	}
	rows := prod(as) / d
	return g.OpFull("AddLayerNorm", as, func(o []float32, v [][]float32) error {
		x, y := v[0], v[1]
		ParallelFor(rows, func(lo, hi int) {
			for i := lo * d; i < hi*d; i++ {
				o[i] = x[i] + y[i]
			}
		})
		LayerNormRows(o, o, rows, d, v[2], v[3], eps)
		return nil
	}, a, b, w, bias)
}

// Slice returns x[..., lo:hi, ...] along axis, copied contiguous.
func (g *Graph) Slice(x *Node, axis, lo, hi int) *Node {
	if !g.ok(x) {
		return nil
	}
	xs := shapeOf(x)
	if axis < 0 || axis >= len(xs) || lo < 0 || hi > xs[axis] || lo >= hi {
		return g.fail("slice: [%d:%d] of axis %d of %v", lo, hi, axis, xs)
	}
	os := slices.Clone(xs)
	os[axis] = hi - lo
	outer, inner := prod(xs[:axis]), prod(xs[axis+1:])
	n := xs[axis]
	return g.OpFull(fmt.Sprintf("Slice[%d:%d]", lo, hi), os, func(o []float32, v [][]float32) error {
		for r := 0; r < outer; r++ {
			copy(o[r*(hi-lo)*inner:(r+1)*(hi-lo)*inner], v[0][(r*n+lo)*inner:(r*n+hi)*inner])
		}
		return nil
	}, x)
}

// Patchify is the im2col of a convolution whose kernel and stride are both
// p (a ViT's patch embedding): x (1, C, H, W) -> (1, H/p, W/p, C*p*p), each
// row one patch in a conv weight's (c, ky, kx) order, so that a Linear with
// the weight viewed as (Cout, C*p*p) is the convolution, in NHWC.
func (g *Graph) Patchify(x *Node, p int) *Node {
	if !g.ok(x) {
		return nil
	}
	xs := shapeOf(x)
	if len(xs) != 4 || xs[0] != 1 || p <= 0 || xs[2]%p != 0 || xs[3]%p != 0 {
		return g.fail("patchify: input %v, patch %d", xs, p)
	}
	cin, h, w := xs[1], xs[2], xs[3]
	ph, pw := h/p, w/p
	k := cin * p * p
	return g.OpFull("Patchify", []int{1, ph, pw, k}, func(o []float32, v [][]float32) error {
		img := v[0]
		ParallelFor(ph*pw, func(lo, hi int) {
			for t := lo; t < hi; t++ {
				py, px := t/pw, t%pw
				row := o[t*k : (t+1)*k]
				for ch := 0; ch < cin; ch++ {
					for ky := 0; ky < p; ky++ {
						src := img[(ch*h+py*p+ky)*w+px*p:]
						copy(row[(ch*p+ky)*p:(ch*p+ky+1)*p], src[:p])
					}
				}
			}
		})
		return nil
	}, x)
}
