package nn

// Ops that move values without arithmetic: reshape, permute, concatenate,
// slice, and the patches of a strided convolution.

import (
	"fmt"
	"slices"
)

func shapeOf(n *Node) []int { return n.Shape() }

func prod(s []int) int {
	p := 1
	for _, d := range s {
		p *= d
	}
	return p
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

// Concat is torch.cat(xs, dim=axis) for tensors of the same rank whose
// shapes agree except along axis.
func (g *Graph) Concat(axis int, xs ...*Node) *Node {
	if len(xs) == 0 {
		return g.fail("concat: no inputs")
	}
	if !g.ok(xs...) {
		return nil
	}
	first := shapeOf(xs[0])
	if axis < 0 || axis >= len(first) {
		return g.fail("concat: axis %d of %v", axis, first)
	}
	out := slices.Clone(first)
	out[axis] = 0
	sizes := make([]int, len(xs)) // each input's contiguous block per outer index
	for i, x := range xs {
		s := shapeOf(x)
		if len(s) != len(first) {
			return g.fail("concat: shapes %v and %v", first, s)
		}
		for d := range s {
			if d != axis && s[d] != first[d] {
				return g.fail("concat: shapes %v and %v along axis %d", first, s, axis)
			}
		}
		out[axis] += s[axis]
		sizes[i] = prod(s[axis:])
	}
	outer := prod(first[:axis])
	row := prod(out[axis:])
	return g.Op("Concat", out, func(o []float32, v [][]float32) error {
		d := o
		for r := 0; r < outer; r++ {
			off := r * row
			for i, t := range v {
				copy(d[off:off+sizes[i]], t[r*sizes[i]:(r+1)*sizes[i]])
				off += sizes[i]
			}
		}
		return nil
	}, xs...)
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
	n, cin, h, w, ok := g.nchw("patchify", x)
	if !ok {
		return nil
	}
	if n != 1 || p <= 0 || h%p != 0 || w%p != 0 {
		return g.fail("patchify: input %v, patch %d", shapeOf(x), p)
	}
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

// nchw returns the sizes of a 4-d x, or records an error of op and returns
// ok false.
func (g *Graph) nchw(op string, x *Node) (n, c, h, w int, ok bool) {
	if !g.ok(x) {
		return 0, 0, 0, 0, false
	}
	xs := shapeOf(x)
	if len(xs) != 4 {
		g.fail("%s: input %v is not NCHW", op, xs)
		return 0, 0, 0, 0, false
	}
	return xs[0], xs[1], xs[2], xs[3], true
}
