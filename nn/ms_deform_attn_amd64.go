//go:build !purego && amd64

package nn

// deformTaps32AVX2 is deformTapsGo for rows of 32 values (AVX2+FMA); every
// off[k]+32 must be within v.
//
//go:noescape
func deformTaps32AVX2(acc, v []float32, off []int, wt []float32)

// deformTaps adds wt[k] * v[off[k] : off[k]+len(acc)] to acc for every tap
// k (len(off) == len(wt), every row within v).
func deformTaps(acc, v []float32, off []int, wt []float32) {
	if len(acc) == 32 && fastMathISA >= isaAVX2 {
		deformTaps32AVX2(acc, v, off, wt)
		return
	}
	deformTapsGo(acc, v, off, wt)
}

// deformMaxTaps is the most taps (4 per slot) of one deformItems32AVX2
// call.
const deformMaxTaps = 2048

// deformTab is the level layout of every sampling slot of a query-head
// for deformItems32AVX2, the steps between its items, and its scratch; its
// layout is fixed by the offsets in ms_deform_attn_amd64.s
// (TestDeformTabLayout).
type deformTab struct {
	wHalf, hHalf, wF, hF [64]float32 // per slot: W/2, H/2, W, H
	wI, wm2, hm2, ws     [64]int32   // W, W-2, H-2, W*stride
	base                 [64]int32   // the level's first element
	stride               [8]int32    // elements per value row
	// bytes from one item to the next in dst, loc, attn and value
	dstStep, locStep, attnStep, valStep int
	offs                                [deformMaxTaps]int32
	wts                                 [deformMaxTaps]float32
	groups                              int // slots / 8
}

//go:noescape
func deformItems32AVX2(dst, value, loc, attn []float32, tab *deformTab, items, groups int)

// deformFast reports whether msDeformAttnAVX2 takes this layout: AVX2,
// heads of 32 channels, levels*points a multiple of 8 up to 64, offsets
// within int32.
func deformFast(shapes [][2]int, heads, hd, points, nvalue int) bool {
	lp := len(shapes) * points
	return fastMathISA >= isaAVX2 && hd == 32 && lp > 0 && lp%8 == 0 && 4*lp <= deformMaxTaps && nvalue < 1<<31
}

// newDeformTab lays the slots out for a value of rows of stride elements.
func newDeformTab(shapes [][2]int, starts []int, points, stride int) *deformTab {
	t := &deformTab{groups: len(shapes) * points / 8}
	for i := range t.stride {
		t.stride[i] = int32(stride)
	}
	for l, sh := range shapes {
		h, w := sh[0], sh[1]
		for p := 0; p < points; p++ {
			i := l*points + p
			t.wHalf[i], t.hHalf[i] = float32(w)/2, float32(h)/2
			t.wF[i], t.hF[i] = float32(w), float32(h)
			t.wI[i], t.wm2[i], t.hm2[i] = int32(w), int32(w-2), int32(h-2)
			t.ws[i], t.base[i] = int32(w*stride), int32(starts[l]*stride)
		}
	}
	return t
}

// deformTile is the side, in pixels of the first level, of the tiles
// deformOrder sorts the queries by.
const deformTile = 8

// deformOrder returns the queries in the order of the tiles of the first
// level their first sample falls in (row-major tiles, the queries of a
// tile in their own order), so that queries sampling the same
// neighbourhoods run one after the other and find its values in cache; nil
// when there are few queries.
func deformOrder(shapes [][2]int, heads, lp int, loc []float32, nq int) []int32 {
	if nq < 1024 {
		return nil
	}
	h0, w0 := shapes[0][0], shapes[0][1]
	th, tw := (h0+deformTile-1)/deformTile, (w0+deformTile-1)/deformTile
	key := make([]int32, nq)
	count := make([]int32, th*tw+1)
	for q := range key {
		i := q * heads * lp
		x, y := loc[2*i]*float32(w0), loc[2*i+1]*float32(h0)
		tx, ty := 0, 0 // NaN and below the map: the first tile; past it: the last
		if x >= float32(w0) {
			tx = tw - 1
		} else if x > 0 {
			tx = int(x) / deformTile
		}
		if y >= float32(h0) {
			ty = th - 1
		} else if y > 0 {
			ty = int(y) / deformTile
		}
		key[q] = int32(ty*tw + tx)
		count[key[q]+1]++
	}
	for i := 1; i < len(count); i++ {
		count[i] += count[i-1]
	}
	order := make([]int32, nq)
	for q, k := range key {
		order[count[k]] = int32(q)
		count[k]++
	}
	return order
}

// msDeformAttnAVX2 is msDeformAttn's sampling with deformItems32AVX2
// (deformFast must hold), one query (all its heads) per call, the queries
// in deformOrder.
func msDeformAttnAVX2(dst, value []float32, shapes [][2]int, starts []int, heads, hd int, loc, attn []float32, nq, points int) {
	dim := heads * hd
	lp := len(shapes) * points
	groups := lp / 8
	s := 0
	for _, sh := range shapes {
		s += sh[0] * sh[1]
	}
	items := heads // query-heads per call
	if items*4*lp > deformMaxTaps {
		items = 1
	}
	order := deformOrder(shapes, heads, lp, loc, nq)
	ParallelFor((nq+msDeformBlock-1)/msDeformBlock, func(lo, hi int) {
		t := newDeformTab(shapes, starts, points, dim)
		t.dstStep, t.locStep, t.attnStep, t.valStep = 4*hd, 4*2*lp, 4*lp, 4*hd
		for k := lo * msDeformBlock; k < min(hi*msDeformBlock, nq); k++ {
			q := k
			if order != nil {
				q = int(order[k])
			}
			for h := 0; h < heads; h += items {
				n := min(items, heads-h)
				i := (q*heads + h) * lp // first slot
				_, _, _ = dst[q*dim+(h+n)*hd-1], loc[2*(i+n*lp)-1], attn[i+n*lp-1]
				deformItems32AVX2(dst[q*dim+h*hd:], value[h*hd:s*dim], loc[2*i:], attn[i:], t, n, groups)
			}
		}
	})
}

// deformOnes is the value the weight sums are gathered from: every tap
// reads it (a row stride of 0), adding its weight to every lane.
var deformOnes = [32]float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}

// msDeformGather sets gathered[q, h, :] to the weighted sum of the memory
// rows query q's head h samples (the taps of MSDeformAttnInto over rows
// of dimIn values) and wsum[q, h] to the sum of their weights. With AVX2
// a query-head's row is gathered in 32-value pieces, items of one
// deformItems32AVX2 call sharing its taps, and the weight sums are
// gathered from deformOnes.
func msDeformGather(gathered, wsum, memory []float32, dimIn int, shapes [][2]int, starts []int, heads int, loc, attn []float32, nq, points int) {
	lp := len(shapes) * points
	if !deformFast(shapes, 1, 32, points, len(memory)) || dimIn%32 != 0 || 4*lp*max(dimIn/32, heads) > deformMaxTaps {
		msDeformGatherGo(gathered, wsum, memory, dimIn, shapes, starts, heads, loc, attn, nq, points)
		return
	}
	groups := lp / 8
	ParallelFor((nq+msDeformBlock-1)/msDeformBlock, func(lo, hi int) {
		t := newDeformTab(shapes, starts, points, dimIn)
		t.dstStep, t.locStep, t.attnStep, t.valStep = 4*32, 0, 0, 4*32
		ones := newDeformTab(shapes, starts, points, 0)
		ones.dstStep, ones.locStep, ones.attnStep, ones.valStep = 4*32, 4*2*lp, 4*lp, 0
		sums := make([]float32, 32*heads)
		for q := lo * msDeformBlock; q < min(hi*msDeformBlock, nq); q++ {
			i := q * heads * lp // the query's first slot
			_, _ = loc[2*(i+heads*lp)-1], attn[i+heads*lp-1]
			for h := 0; h < heads; h++ {
				j := i + h*lp
				g := gathered[(q*heads+h)*dimIn : (q*heads+h+1)*dimIn]
				deformItems32AVX2(g, memory, loc[2*j:], attn[j:], t, dimIn/32, groups)
			}
			deformItems32AVX2(sums, deformOnes[:], loc[2*i:], attn[i:], ones, heads, groups)
			for h := 0; h < heads; h++ {
				wsum[q*heads+h] = sums[h*32]
			}
		}
	})
}
