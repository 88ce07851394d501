package nn

import (
	"math"
	"runtime"
	"sync"
)

// swinAttn is one call of SwinWindowAttentionInto: the geometry of the
// padded, shifted window grid, the dense relative position bias and the
// packed projection weights, shared read-only by the window tasks.
type swinAttn struct {
	h, w, c, heads, hd int
	ws, shift, n       int // window side, cyclic shift, tokens per window
	hp, wp, nh, nw     int // padded sides, windows per column and row
	gw                 int // windows per task (consecutive in a window row)
	scale              float32
	bias               []float32 // (heads, n, n): table[index(i, j)][head]
	qkvP, projP        *PackedB
	qkvB, projB        []float32
}

// swinScratch is one worker's memory for a task of windows.
type swinScratch struct {
	xw, qkv, s, merged, out []float32
	src                     []int32 // token of each window row, -1 for padding
	lab                     []int8  // shift-mask region of each window token
}

var swinScratchPool = sync.Pool{New: func() any { return new(swinScratch) }}

// swinTaskFloats bounds a task's working set (its windows' input, qkv,
// merged heads and output rows), so that it stays in the L2 cache.
const swinTaskFloats = 128 << 10

// swinMaskFill is what the shift mask adds between tokens of different
// regions (BasicLayer.forward's masked_fill value).
const swinMaskFill = -100

// SwinRelativeIndex is the relative_position_index buffer of Swin's
// WindowAttention for a ws x ws window: for query token i = (yi, xi) and key
// token j = (yj, xj), row-major in the window, index[i*ws*ws+j] =
// (yi - yj + ws - 1) * (2ws - 1) + (xi - xj + ws - 1), a row of the
// ((2ws-1)^2, heads) bias table.
func SwinRelativeIndex(ws int) []int32 {
	n := ws * ws
	idx := make([]int32, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			dy, dx := i/ws-j/ws+ws-1, i%ws-j%ws+ws-1
			idx[i*n+j] = int32(dy*(2*ws-1) + dx)
		}
	}
	return idx
}

func newSwinAttn(h, w, c, heads, ws, shift int, qkvW, qkvB, projW, projB, table []float32, packs []float32) *swinAttn {
	a := &swinAttn{h: h, w: w, c: c, heads: heads, hd: c / heads, ws: ws, shift: shift, n: ws * ws,
		qkvB: qkvB, projB: projB}
	a.hp, a.wp = WindowPad(h, ws), WindowPad(w, ws)
	a.nh, a.nw = a.hp/ws, a.wp/ws
	a.scale = float32(math.Pow(float64(a.hd), -0.5))
	// The bias of head hh for (i, j), laid out as the scores are.
	n := a.n
	a.bias = make([]float32, heads*n*n)
	for k, r := range SwinRelativeIndex(ws) {
		for hh := 0; hh < heads; hh++ {
			a.bias[hh*n*n+k] = table[int(r)*heads+hh]
		}
	}
	// Windows per task: a bounded working set, and enough tasks to share.
	a.gw = max(1, min(a.nw, swinTaskFloats/(n*5*c)))
	workers := runtime.GOMAXPROCS(0)
	for a.gw > 1 && a.nh*((a.nw+a.gw-1)/a.gw) < 4*workers {
		a.gw--
	}
	lq := PackedBLen(c, 3*c)
	a.qkvP = PackBInto(packs[:lq], true, c, 3*c, qkvW, c)
	a.projP = PackBInto(packs[lq:], true, c, c, projW, c)
	return a
}

// swinPackLen is how many floats newSwinAttn packs the weights into.
func swinPackLen(c int) int { return PackedBLen(c, 3*c) + PackedBLen(c, c) }

// tasks is the number of window tasks.
func (a *swinAttn) tasks() int { return a.nh * ((a.nw + a.gw - 1) / a.gw) }

// region is the shift-mask label of padded coordinate p on a side of
// length l: BasicLayer's slices [0, l-ws), [l-ws, l-shift), [l-shift, l).
func (a *swinAttn) region(p, l int) int8 {
	switch {
	case p < l-a.ws:
		return 0
	case p < l-a.shift:
		return 1
	}
	return 2
}

// run computes task t: windows [wx0, wx1) of window row wy.
func (a *swinAttn) run(t int, dst, x, res []float32, sc *swinScratch) {
	tpr := (a.nw + a.gw - 1) / a.gw // tasks per window row
	wy, wx0 := t/tpr, t%tpr*a.gw
	wx1 := min(wx0+a.gw, a.nw)
	n, c, c3, ws := a.n, a.c, 3*a.c, a.ws
	rows := (wx1 - wx0) * n
	sc.xw = scratchF32(sc.xw, rows*c)
	sc.qkv = scratchF32(sc.qkv, rows*c3)
	sc.merged = scratchF32(sc.merged, rows*c)
	sc.out = scratchF32(sc.out, rows*c)
	sc.s = scratchF32(sc.s, n*n)
	if cap(sc.src) < rows {
		sc.src = make([]int32, rows)
	}
	if cap(sc.lab) < n {
		sc.lab = make([]int8, n)
	}
	src, lab := sc.src[:rows], sc.lab[:n]

	// Gather: window row r of the rolled, padded map is token
	// ((py+shift) mod hp, (px+shift) mod wp) of x, or zeros (padding).
	for r := 0; r < rows; r++ {
		wx, tk := wx0+r/n, r%n
		sy := (wy*ws + tk/ws + a.shift) % a.hp
		sx := (wx*ws + tk%ws + a.shift) % a.wp
		row := sc.xw[r*c : (r+1)*c]
		if sy >= a.h || sx >= a.w {
			src[r] = -1
			clear(row)
			continue
		}
		src[r] = int32(sy*a.w + sx)
		copy(row, x[(sy*a.w+sx)*c:(sy*a.w+sx+1)*c])
	}
	// qkv (rows, 3c) = xw (rows, c) @ qkvW^T + qkvB
	linearPacked(sc.qkv, sc.xw, rows, a.qkvP, a.qkvB)

	kern := gemmDefault
	for k := 0; k < wx1-wx0; k++ {
		wx := wx0 + k
		// The shift mask matters only in the last window row and column.
		masked := a.shift > 0 && (wy == a.nh-1 || wx == a.nw-1)
		if masked {
			for tk := 0; tk < n; tk++ {
				lab[tk] = a.region(wy*ws+tk/ws, a.hp)*3 + a.region(wx*ws+tk%ws, a.wp)
			}
		}
		qkv := sc.qkv[k*n*c3 : (k+1)*n*c3]
		merged := sc.merged[k*n*c : (k+1)*n*c]
		for hh := 0; hh < a.heads; hh++ {
			q, kk, v := qkv[hh*a.hd:], qkv[c+hh*a.hd:], qkv[2*c+hh*a.hd:]
			// s (n, n) = (q * scale) k^T
			gemmWith(kern, 1, false, true, n, n, a.hd, a.scale, q, c3, kk, c3, 0, sc.s, n)
			bias := a.bias[hh*n*n : (hh+1)*n*n]
			for i := 0; i < n; i++ {
				row := sc.s[i*n : (i+1)*n]
				b := bias[i*n : (i+1)*n]
				mx := float32(math.Inf(-1))
				for j := range row {
					v := row[j] + b[j]
					if masked && lab[i] != lab[j] {
						v += swinMaskFill
					}
					row[j] = v
					mx = max(mx, v)
				}
				inv := 1 / expShiftSum(row, mx)
				for j := range row {
					row[j] *= inv
				}
			}
			// merged[:, head] (n, hd) = softmax (n, n) @ v (n, hd)
			gemmWith(kern, 1, false, false, n, a.hd, n, 1, sc.s, n, v, c3, 0, merged[hh*a.hd:], c)
		}
	}
	// out (rows, c) = merged @ projW^T + projB
	linearPacked(sc.out, sc.merged, rows, a.projP, a.projB)
	// Scatter the real tokens back (the reverse roll and the crop),
	// adding the residual.
	for r, tok := range src {
		if tok < 0 {
			continue
		}
		d := dst[int(tok)*c : int(tok+1)*c]
		o := sc.out[r*c : (r+1)*c]
		if res == nil {
			copy(d, o)
			continue
		}
		addRows(d, res[int(tok)*c:int(tok+1)*c], o)
	}
}

// linearPacked sets dst (rows, n) = x (rows, k) @ op(B) + b on the calling
// goroutine, with B packed (n outputs, depth k); b may be nil.
func linearPacked(dst, x []float32, rows int, pb *PackedB, b []float32) {
	beta := float32(0)
	if b != nil {
		for r := 0; r < rows; r++ {
			copy(dst[r*pb.n:(r+1)*pb.n], b)
		}
		beta = 1
	}
	gemmPre(pb.kern, 1, pb, false, pb.transB, rows, pb.n, pb.k, 1, x, pb.k, pb.b, pb.ldb, beta, dst, pb.n)
}

// SwinWindowAttentionInto is the attention half of a Swin Transformer
// block (SwinTransformerBlock.forward up to the first residual), fused: on
// x (h*w, c), the tokens of an h x w map already through norm1, it writes
//
//	dst = res + crop(roll(merge(WindowAttention(partition(roll(pad(x), -shift))), +shift)))
//
// where pad zero-pads the bottom and right to multiples of the window ws,
// roll cycles the map by shift rows and columns (torch.roll), partition
// splits it into ws x ws windows, and WindowAttention is, per window and
// head (hd = c / heads),
//
//	softmax((q * hd^-0.5) k^T + bias + mask) v,  q, k, v = split(x @ qkvW^T + qkvB)
//
// with bias[i][j] = table[SwinRelativeIndex(ws)[i][j]][head] (table
// ((2ws-1)^2, heads)) and, when shift > 0, mask = -100 between tokens of
// different regions of the padded map (BasicLayer's attention mask), then
// heads merged and projected by projW, projB. res may be nil (no
// residual); qkvB and projB may be nil. Padding tokens are zeros, so their
// keys and values are the qkv bias. Windows run in parallel, a few at a
// time per task, each one's projections as GEMMs over its tokens.
func SwinWindowAttentionInto(dst, x, res []float32, h, w, c, heads, ws, shift int, qkvW, qkvB, projW, projB, table []float32) {
	if h*w == 0 || c == 0 {
		return
	}
	packs := pool.take(swinPackLen(c)) // every value is written
	if packs == nil {
		packs = make([]float32, swinPackLen(c))
	}
	defer pool.put(packs)
	a := newSwinAttn(h, w, c, heads, ws, shift, qkvW, qkvB, projW, projB, table, packs)
	ParallelFor(a.tasks(), func(lo, hi int) {
		sc := swinScratchPool.Get().(*swinScratch)
		for t := lo; t < hi; t++ {
			a.run(t, dst, x, res, sc)
		}
		swinScratchPool.Put(sc)
	})
}

// SwinWindowAttention adds SwinWindowAttentionInto as one op: x (..., h*w,
// C) the normalised tokens of an h x w map (row-major), res of x's size or
// nil, qkvW (3C, C), qkvB (3C) or nil, projW (C, C), projB (C) or nil,
// table ((2ws-1)^2, heads). The result has x's shape.
func (g *Graph) SwinWindowAttention(x, res, qkvW, qkvB, projW, projB, table *Node, h, w, heads, ws, shift int) *Node {
	if !g.ok(x, qkvW, projW, table) {
		return nil
	}
	xs := shapeOf(x)
	if len(xs) < 2 || h <= 0 || w <= 0 || prod(xs[:len(xs)-1]) != h*w {
		return g.fail("swin window attention: input %v for a %dx%d map", xs, h, w)
	}
	c := xs[len(xs)-1]
	if heads <= 0 || c%heads != 0 {
		return g.fail("swin window attention: %d heads do not divide width %d", heads, c)
	}
	if ws <= 0 || shift < 0 || shift >= ws {
		return g.fail("swin window attention: window %d, shift %d", ws, shift)
	}
	if qs, ps, ts := shapeOf(qkvW), shapeOf(projW), shapeOf(table); len(qs) != 2 || qs[0] != 3*c || qs[1] != c ||
		len(ps) != 2 || ps[0] != c || ps[1] != c || prod(ts) != (2*ws-1)*(2*ws-1)*heads {
		return g.fail("swin window attention: width %d, %d heads, window %d: qkv weight %v, proj weight %v, table %v", c, heads, ws, qs, ps, ts)
	}
	ins := []*Node{x, qkvW, projW, table}
	opt := func(n *Node, size int, what string) int {
		if n == nil || g.err != nil {
			return -1
		}
		if !g.ok(n) || prod(shapeOf(n)) != size {
			g.fail("swin window attention: %s %v for %d values", what, shapeOf(n), size)
			return -1
		}
		ins = append(ins, n)
		return len(ins) - 1
	}
	ri, qi, pi := opt(res, h*w*c, "residual"), opt(qkvB, 3*c, "qkv bias"), opt(projB, c, "proj bias")
	if g.err != nil {
		return nil
	}
	return g.OpFull("SwinWindowAttention", xs, func(out []float32, in [][]float32) error {
		get := func(i int) []float32 {
			if i < 0 {
				return nil
			}
			return in[i]
		}
		SwinWindowAttentionInto(out, in[0], get(ri), h, w, c, heads, ws, shift, in[1], get(qi), in[2], get(pi), in[3])
		return nil
	}, ins...)
}
