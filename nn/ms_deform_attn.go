package nn

import (
	"fmt"
	"math"
)

// msDeformBlock is how many queries one task of MSDeformAttnInto handles.
const msDeformBlock = 16

// MSDeformAttnInto computes the sampling core of multi-scale deformable
// attention (Deformable DETR's multi_scale_deformable_attn_pytorch, or its
// CUDA kernel): for each query q and head h,
//
//	dst[q, h] = sum over levels l and points p of attn[q,h,l,p] * sample(l, h, loc[q,h,l,p])
//
// where sample bilinearly interpolates head h's channels of level l's map
// as F.grid_sample does with align_corners=False and zero padding: the
// location (x, y) in [0, 1] units is the pixel coordinate (x*W - 0.5,
// y*H - 0.5), and each of its four neighbours outside the map contributes
// zero.
//
// value is (S, heads*hd) row-major: level l is the H_l x W_l map of rows
// starts[l] .. starts[l]+H_l*W_l, shapes[l] = (H_l, W_l), and head h is the
// column block [h*hd, (h+1)*hd). loc is (nq, heads, levels, points, 2) in
// (x, y) order, attn (nq, heads, levels, points), dst (nq, heads*hd). Work
// is spread over blocks of queries; each query's heads are done together,
// so that their taps read neighbouring parts of the same value rows (a tap
// reads hd contiguous values). Non-finite locations sample nothing.
func MSDeformAttnInto(dst, value []float32, shapes [][2]int, starts []int, heads, hd int, loc, attn []float32, nq, points int) error {
	levels := len(shapes)
	s, err := msDeformCheck(shapes, starts, heads, hd, points)
	if err != nil {
		return err
	}
	dim := heads * hd
	switch {
	case len(value) < s*dim:
		return fmt.Errorf("nn: ms deform attn: %d values for %d x %d", len(value), s, dim)
	case len(loc) < nq*heads*levels*points*2 || len(attn) < nq*heads*levels*points:
		return fmt.Errorf("nn: ms deform attn: %d locations and %d weights for %d queries", len(loc), len(attn), nq)
	case len(dst) < nq*dim:
		return fmt.Errorf("nn: ms deform attn: output of %d values for %d x %d", len(dst), nq, dim)
	}
	if nq == 0 || dim == 0 {
		return nil
	}
	return msDeformAttn(dst, value, shapes, starts, heads, hd, loc, attn, nq, points, true)
}

// msDeformAttn is MSDeformAttnInto after the checks; fast allows the
// assembly kernel (deformFastTab).
func msDeformAttn(dst, value []float32, shapes [][2]int, starts []int, heads, hd int, loc, attn []float32, nq, points int, fast bool) error {
	levels := len(shapes)
	dim := heads * hd
	lp := levels * points
	if fast && deformFast(shapes, heads, hd, points, len(value)) {
		msDeformAttnAVX2(dst, value, shapes, starts, heads, hd, loc, attn, nq, points)
		return nil
	}
	ParallelFor((nq+msDeformBlock-1)/msDeformBlock, func(lo, hi int) {
		// The taps of one query and head: value offsets and weights.
		off := make([]int, 0, 4*lp)
		wt := make([]float32, 0, 4*lp)
		for q := lo * msDeformBlock; q < min(hi*msDeformBlock, nq); q++ {
			for h := 0; h < heads; h++ {
				off, wt = headTaps(off[:0], wt[:0], shapes, starts, dim, h*hd, loc, attn, (q*heads+h)*lp, points)
				acc := dst[q*dim+h*hd : q*dim+(h+1)*hd]
				clear(acc)
				deformTaps(acc, value, off, wt)
			}
		}
	})
	return nil
}

// msDeformCheck validates the level layout and returns S, the number of
// value rows.
func msDeformCheck(shapes [][2]int, starts []int, heads, hd, points int) (int, error) {
	if len(starts) != len(shapes) {
		return 0, fmt.Errorf("nn: ms deform attn: %d level starts for %d levels", len(starts), len(shapes))
	}
	if heads < 0 || hd < 0 || points < 0 {
		return 0, fmt.Errorf("nn: ms deform attn: %d heads of %d channels, %d points", heads, hd, points)
	}
	s := 0
	for l, sh := range shapes {
		if sh[0] < 0 || sh[1] < 0 || starts[l] != s {
			return 0, fmt.Errorf("nn: ms deform attn: level %d of shape %v starts at %d, want %d", l, sh, starts[l], s)
		}
		s += sh[0] * sh[1]
	}
	return s, nil
}

// headTaps appends the taps of one query's head over every level and
// point (bilinearTaps), its samples at loc[2*i:] and weights at attn[i:]
// in (level, point) order: level l's position (y, x) is at element
// (starts[l]+y*W_l+x)*stride + col of the value.
func headTaps(off []int, wt []float32, shapes [][2]int, starts []int, stride, col int, loc, attn []float32, i, points int) ([]int, []float32) {
	for l, sh := range shapes {
		for p := 0; p < points; p++ {
			off, wt = bilinearTaps(off, wt, starts[l]*stride+col, sh[0], sh[1], stride, loc[2*i], loc[2*i+1], attn[i])
			i++
		}
	}
	return off, wt
}

// bilinearTaps appends the taps of the bilinear sample at (x, y) (in [0,
// 1] units, grid_sample's align_corners=False convention) of an h x w map
// whose position (i, j) is at element base+(i*w+j)*stride of the value,
// weighted by a: for each of the four neighbours inside the map, its
// element offset and its weight. The coordinates are formed as grid_sample forms them from
// the grid 2*loc-1.
func bilinearTaps(off []int, wt []float32, base, h, w, stride int, x, y, a float32) ([]int, []float32) {
	gx, gy := 2*x-1, 2*y-1
	ix := (gx+1)*(float32(w)/2) - 0.5 // pixel coordinates
	iy := (gy+1)*(float32(h)/2) - 0.5
	// Outside (-1, size) no neighbour is inside; this also drops NaNs and
	// infinities before they are converted to integers.
	if !(ix > -1 && ix < float32(w) && iy > -1 && iy < float32(h)) {
		return off, wt
	}
	fx0, fy0 := float32(math.Floor(float64(ix))), float32(math.Floor(float64(iy)))
	x0, y0 := int(fx0), int(fy0)
	fx1, fy1 := fx0+1, fy0+1
	// nw = (x0, y0), ne = (x0+1, y0), sw = (x0, y0+1), se = (x0+1, y0+1)
	if y0 >= 0 {
		if x0 >= 0 {
			off, wt = append(off, base+(y0*w+x0)*stride), append(wt, a*((fx1-ix)*(fy1-iy)))
		}
		if x0+1 < w {
			off, wt = append(off, base+(y0*w+x0+1)*stride), append(wt, a*((ix-fx0)*(fy1-iy)))
		}
	}
	if y0+1 < h {
		if x0 >= 0 {
			off, wt = append(off, base+((y0+1)*w+x0)*stride), append(wt, a*((fx1-ix)*(iy-fy0)))
		}
		if x0+1 < w {
			off, wt = append(off, base+((y0+1)*w+x0+1)*stride), append(wt, a*((ix-fx0)*(iy-fy0)))
		}
	}
	return off, wt
}

// deformTapsGo adds wt[k] * v[off[k] : off[k]+len(acc)] to acc for every
// tap k.
func deformTapsGo(acc, v []float32, off []int, wt []float32) {
	for k, o := range off {
		r := v[o : o+len(acc)]
		a := wt[k]
		for c := range acc {
			acc[c] += a * r[c]
		}
	}
}

// MSDeformAttn adds the sampling core of multi-scale deformable attention
// (MSDeformAttnInto): value (S, heads*hd) with the levels' shapes (H, W)
// and start rows, sampling locations loc (Nq, heads, levels, points, 2) in
// (x, y) order and softmaxed attention weights attn (Nq, heads, levels,
// points) -> (Nq, heads*hd). loc and attn may have any shapes of those
// sizes.
func (g *Graph) MSDeformAttn(value, loc, attn *Node, shapes [][2]int, starts []int, heads, points int) *Node {
	if !g.ok(value, loc, attn) {
		return nil
	}
	vs := shapeOf(value)
	if len(vs) != 2 || heads <= 0 || vs[1]%heads != 0 {
		return g.fail("ms deform attn: value %v for %d heads", vs, heads)
	}
	hd := vs[1] / heads
	s, err := msDeformCheck(shapes, starts, heads, hd, points)
	if err != nil {
		g.Fail(err)
		return nil
	}
	if s != vs[0] {
		return g.fail("ms deform attn: value of %d rows for levels %v of %d positions", vs[0], shapes, s)
	}
	per := heads * len(shapes) * points
	na := prod(shapeOf(attn))
	if per == 0 || na%per != 0 || prod(shapeOf(loc)) != 2*na {
		return g.fail("ms deform attn: locations %v and weights %v for %d heads, %d levels, %d points",
			shapeOf(loc), shapeOf(attn), heads, len(shapes), points)
	}
	nq := na / per
	shapes = append([][2]int(nil), shapes...)
	starts = append([]int(nil), starts...)
	return g.OpFull("MSDeformAttn", []int{nq, vs[1]}, func(out []float32, in [][]float32) error {
		return MSDeformAttnInto(out, in[0], shapes, starts, heads, hd, in[1], in[2], nq, points)
	}, value, loc, attn)
}

// MSDeformAttnProjInto is MSDeformAttnInto over the value memory W^T + b
// (value_proj: memory (S, dimIn), W (heads*hd, dimIn), b (heads*hd) or
// nil) without forming that value. Sampling is linear: each query-head's
// weighted sum of memory rows (dimIn wide) is projected by its head's rows
// of W, and the sum of its weights times the bias is added. That is the
// same sum up to the float32 rounding order, in about nq*heads*(4*levels*
// points + hd)*dimIn multiply-adds instead of S*heads*hd*dimIn: less work
// when the queries are few for the map (a decoder's cross-attention).
func MSDeformAttnProjInto(dst, memory []float32, dimIn int, w, b []float32, shapes [][2]int, starts []int, heads, hd int, loc, attn []float32, nq, points int) error {
	levels := len(shapes)
	s, err := msDeformCheck(shapes, starts, heads, hd, points)
	if err != nil {
		return err
	}
	dim := heads * hd
	switch {
	case dimIn <= 0:
		return fmt.Errorf("nn: ms deform attn: memory width %d", dimIn)
	case len(memory) < s*dimIn:
		return fmt.Errorf("nn: ms deform attn: %d memory values for %d x %d", len(memory), s, dimIn)
	case len(w) < dim*dimIn || b != nil && len(b) < dim:
		return fmt.Errorf("nn: ms deform attn: projection of %d weights and %d biases for %d x %d", len(w), len(b), dim, dimIn)
	case len(loc) < nq*heads*levels*points*2 || len(attn) < nq*heads*levels*points:
		return fmt.Errorf("nn: ms deform attn: %d locations and %d weights for %d queries", len(loc), len(attn), nq)
	case len(dst) < nq*dim:
		return fmt.Errorf("nn: ms deform attn: output of %d values for %d x %d", len(dst), nq, dim)
	}
	if nq == 0 || dim == 0 {
		return nil
	}
	// gathered (nq, heads, dimIn): each query-head's weighted memory rows;
	// wsum (nq, heads): the sums of its weights.
	gathered, wsum := Scratch(nq*heads*dimIn), Scratch(nq*heads)
	defer Recycle(gathered)
	defer Recycle(wsum)
	msDeformGather(gathered, wsum, memory, dimIn, shapes, starts, heads, loc, attn, nq, points)
	// dst[:, head h] = gathered[:, h, :] W_h^T (+ wsum b_h), head by head.
	ParallelFor(heads, func(lo, hi int) {
		for h := lo; h < hi; h++ {
			Gemm(false, true, nq, hd, dimIn, 1, gathered[h*dimIn:], heads*dimIn, w[h*hd*dimIn:], dimIn, 0, dst[h*hd:], dim)
			if b == nil {
				continue
			}
			bh := b[h*hd : (h+1)*hd]
			for q := 0; q < nq; q++ {
				o, ws := dst[q*dim+h*hd:q*dim+(h+1)*hd], wsum[q*heads+h]
				for c, v := range bh {
					o[c] += ws * v
				}
			}
		}
	})
	return nil
}

// msDeformGatherGo is msDeformGather in Go: the taps of bilinearTaps, each
// adding a whole memory row.
func msDeformGatherGo(gathered, wsum, memory []float32, dimIn int, shapes [][2]int, starts []int, heads int, loc, attn []float32, nq, points int) {
	lp := len(shapes) * points
	ParallelFor((nq+msDeformBlock-1)/msDeformBlock, func(lo, hi int) {
		off := make([]int, 0, 4*lp)
		wt := make([]float32, 0, 4*lp)
		for q := lo * msDeformBlock; q < min(hi*msDeformBlock, nq); q++ {
			for h := 0; h < heads; h++ {
				off, wt = headTaps(off[:0], wt[:0], shapes, starts, dimIn, 0, loc, attn, (q*heads+h)*lp, points)
				acc := gathered[(q*heads+h)*dimIn : (q*heads+h+1)*dimIn]
				clear(acc)
				deformTapsGo(acc, memory, off, wt)
				var sum float32
				for _, v := range wt {
					sum += v
				}
				wsum[q*heads+h] = sum
			}
		}
	})
}
