package nn

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// swinAttn is one call of SwinWindowAttentionInto: the geometry of the
// padded, shifted window grid, the dense relative position bias and the
// packed projection weights, shared read-only by the window tasks.
type swinAttn struct {
	h, w, c, heads, hd int
	ws, shift, n       int // window side, cyclic shift, tokens per window
	hp, wp, nh, nw     int // padded sides, windows per column and row
	gw                 int // windows per task (consecutive in a window row)
	scale, eps         float32
	normW, normB       []float32 // norm1, or nil
	bias               []float32 // (heads, n, n): table[index(i, j)][head]
	qkvP, projP        *PackedB
	qkvB, projB        []float32

	// The window attention runs on the GEMM micro-kernel: a window's
	// scores are nM x nN (n rounded up to whole A and B panels), a head's
	// output nM x hdN.
	kern          *gemmKernel
	nM, nN, hdN   int
	qpLen, kpLen  int // packed queries (A panels) and keys (B panels)
	vpLen, apLen  int // packed values (B panels) and probabilities (A panels)
	sLen, oLen    int
	mergedPadding int // rows past a task's last window
}

// swinScratch is one worker's memory for a task of windows.
type swinScratch struct {
	xw, qkv, merged, out []float32
	qp, kp, vp, ap, s, o []float32
	inv                  []float32
	src                  []int32 // token of each window row, -1 for padding
	lab                  []int8  // shift-mask region of each window token
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

// SwinWindowWeights are the parameters of SwinWindowAttentionInto: norm1
// (NormW and NormB, or nil for tokens already normalised), the qkv and proj
// Linears (biases may be nil) and the relative position bias table
// ((2ws-1)^2, heads).
type SwinWindowWeights struct {
	NormW, NormB []float32
	Eps          float32
	QKVW, QKVB   []float32
	ProjW, ProjB []float32
	Table        []float32
}

func newSwinAttn(h, w, c, heads, ws, shift int, wt *SwinWindowWeights, packs []float32) *swinAttn {
	a := &swinAttn{h: h, w: w, c: c, heads: heads, hd: c / heads, ws: ws, shift: shift, n: ws * ws,
		eps: wt.Eps, normW: wt.NormW, normB: wt.NormB, qkvB: wt.QKVB, projB: wt.ProjB}
	a.hp, a.wp = windowPad(h, ws), windowPad(w, ws)
	a.nh, a.nw = a.hp/ws, a.wp/ws
	a.scale = float32(math.Pow(float64(a.hd), -0.5))
	// The bias of head hh for (i, j), laid out as the scores are.
	n := a.n
	a.bias = make([]float32, heads*n*n)
	for k, r := range SwinRelativeIndex(ws) {
		for hh := 0; hh < heads; hh++ {
			a.bias[hh*n*n+k] = wt.Table[int(r)*heads+hh]
		}
	}
	// Windows per task: a bounded working set, and enough tasks to share.
	a.gw = max(1, min(a.nw, swinTaskFloats/(n*5*c)))
	workers := runtime.GOMAXPROCS(0)
	for a.gw > 1 && a.nh*((a.nw+a.gw-1)/a.gw) < 4*workers {
		a.gw--
	}
	lq := PackedBLen(c, 3*c)
	a.qkvP = PackBInto(packs[:lq], true, c, 3*c, wt.QKVW, c)
	a.projP = PackBInto(packs[lq:], true, c, c, wt.ProjW, c)

	kern := gemmDefault
	mr, nr := kern.mr, kern.nr
	a.kern = kern
	a.nM, a.nN, a.hdN = roundUp(n, mr), roundUp(n, nr), roundUp(a.hd, nr)
	a.qpLen, a.kpLen = packedLen(n, a.hd, mr), packedLen(n, a.hd, nr)
	a.vpLen, a.apLen = a.hdN*n+16, packedLen(n, n, mr)
	a.sLen, a.oLen = a.nM*a.nN, a.nM*a.hdN
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
func (a *swinAttn) run(t int, dst, x []float32, sc *swinScratch) {
	tpr := (a.nw + a.gw - 1) / a.gw // tasks per window row
	wy, wx0 := t/tpr, t%tpr*a.gw
	wx1 := min(wx0+a.gw, a.nw)
	n, c, c3, ws := a.n, a.c, 3*a.c, a.ws
	rows := (wx1 - wx0) * n
	sc.xw = scratchF32(sc.xw, rows*c)
	sc.qkv = scratchF32(sc.qkv, rows*c3)
	sc.merged = scratchF32(sc.merged, rows*c)
	sc.out = scratchF32(sc.out, rows*c)
	if cap(sc.src) < rows {
		sc.src = make([]int32, rows)
	}
	src := sc.src[:rows]

	// Gather: window row r of the rolled, padded map is token
	// ((py+shift) mod hp, (px+shift) mod wp) of x through norm1, or zeros
	// (the padding comes after the norm).
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
		tok := sy*a.w + sx
		src[r] = int32(tok)
		if a.normW != nil {
			layerNormRow(row, x[tok*c:(tok+1)*c], a.normW, a.normB, a.eps)
		} else {
			copy(row, x[tok*c:(tok+1)*c])
		}
	}
	// qkv (rows, 3c) = xw (rows, c) @ qkvW^T + qkvB
	linearPacked(sc.qkv, sc.xw, rows, a.qkvP, a.qkvB)
	// merged (rows, c): every window's heads side by side
	for k := 0; k < wx1-wx0; k++ {
		a.window(sc, wy, wx0+k, sc.qkv[k*n*c3:(k+1)*n*c3], sc.merged[k*n*c:(k+1)*n*c])
	}
	// out (rows, c) = merged @ projW^T + projB
	linearPacked(sc.out, sc.merged, rows, a.projP, a.projB)
	// Scatter the real tokens back (the reverse roll and the crop) onto
	// the residual.
	for r, tok := range src {
		if tok < 0 {
			continue
		}
		addRows(dst[int(tok)*c:int(tok+1)*c], x[int(tok)*c:int(tok+1)*c], sc.out[r*c:(r+1)*c])
	}
}

// window computes the attention of window (wy, wx) from its qkv (n, 3c)
// into merged (n, c), head hh in columns [hh*hd, (hh+1)*hd):
//
//	softmax((q * scale) k^T + bias + mask) v
//
// each product on the GEMM micro-kernel over packed panels.
func (a *swinAttn) window(sc *swinScratch, wy, wx int, qkv, merged []float32) {
	kern := a.kern
	mr, nr := kern.mr, kern.nr
	n, c, c3, hd := a.n, a.c, 3*a.c, a.hd
	nN, hdN := a.nN, a.hdN
	sc.qp = scratchF32(sc.qp, a.qpLen)
	sc.kp = scratchF32(sc.kp, a.kpLen)
	sc.vp = scratchF32(sc.vp, a.vpLen)
	sc.ap = scratchF32(sc.ap, a.apLen)
	sc.s = scratchF32(sc.s, a.sLen)
	sc.o = scratchF32(sc.o, a.oLen)
	sc.inv = scratchF32(sc.inv, n)
	if cap(sc.lab) < n {
		sc.lab = make([]int8, n)
	}
	lab := sc.lab[:n]
	// The shift mask matters only in the last window row and column.
	masked := a.shift > 0 && (wy == a.nh-1 || wx == a.nw-1)
	if masked {
		for tk := range lab {
			lab[tk] = a.region(wy*a.ws+tk/a.ws, a.hp)*3 + a.region(wx*a.ws+tk%a.ws, a.wp)
		}
	}
	s, o := sc.s, sc.o
	for hh := 0; hh < a.heads; hh++ {
		// Pack q as A panels and k as B panels (depth hd), v as B panels
		// of nr columns (depth n).
		packPanelsT(sc.qp, mr, qkv[hh*hd:], c3, n, hd)
		packPanelsT(sc.kp, nr, qkv[c+hh*hd:], c3, n, hd)
		v := qkv[2*c+hh*hd:]
		for jp := 0; jp*nr < hd; jp++ {
			cols := min(nr, hd-jp*nr)
			pan := sc.vp[jp*n*nr : (jp+1)*n*nr]
			for p := 0; p < n; p++ {
				row := pan[p*nr : (p+1)*nr]
				copy(row, v[p*c3+jp*nr:p*c3+jp*nr+cols])
				clear(row[cols:])
			}
		}
		// s (nM, nN) = scale * q k^T; rows and columns past n are padding.
		for jp := 0; jp*nr < n; jp++ {
			bp := sc.kp[jp*hd*nr : (jp+1)*hd*nr]
			for ip := 0; ip*mr < n; ip++ {
				kern.fn(hd, sc.qp[ip*hd*mr:(ip+1)*hd*mr], bp, s[ip*mr*nN+jp*nr:], nN, a.scale, 0)
			}
		}
		// + bias (+ mask), softmax numerators and their sums
		bias := a.bias[hh*n*n : (hh+1)*n*n]
		for i := 0; i < n; i++ {
			row := s[i*nN : i*nN+n]
			b := bias[i*n : (i+1)*n]
			mx := float32(math.Inf(-1))
			if masked {
				li := lab[i]
				for j, bj := range b {
					v := row[j] + bj
					if lab[j] != li {
						v += swinMaskFill
					}
					row[j] = v
					mx = max(mx, v)
				}
			} else {
				// row + 0 + b: the values of row + b, by the vector kernel
				mx = relAddMax(row, zeroRow[:], b)
			}
			sc.inv[i] = 1 / expShiftSum(row, mx)
		}
		// o (nM, hdN) = e^s (n, n) @ v (n, hd): e^s packed as A panels
		packPanelsT(sc.ap, mr, s, nN, n, n)
		for jp := 0; jp*nr < hd; jp++ {
			bp := sc.vp[jp*n*nr : (jp+1)*n*nr]
			for ip := 0; ip*mr < n; ip++ {
				kern.fn(n, sc.ap[ip*n*mr:(ip+1)*n*mr], bp, o[ip*mr*hdN+jp*nr:], hdN, 1, 0)
			}
		}
		// merged[:, head] = o / sums
		for i := 0; i < n; i++ {
			scaleInto(merged[i*c+hh*hd:i*c+(hh+1)*hd], o[i*hdN:i*hdN+hd], sc.inv[i])
		}
	}
}

// zeroRow is relAddMax's single zero row term, for adding a row of biases
// alone.
var zeroRow [1]float32

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
// block (SwinTransformerBlock.forward up to its first residual), fused: on
// x (h*w, c), the tokens of an h x w map, it writes
//
//	dst = x + crop(roll(merge(WindowAttention(partition(roll(pad(norm1(x)), -shift)))), +shift))
//
// where norm1 is the LayerNorm wt.NormW, wt.NormB (skipped when NormW is
// nil), pad zero-pads the bottom and right to multiples of the window ws,
// roll cycles the map by shift rows and columns (torch.roll), partition
// splits it into ws x ws windows, and WindowAttention is, per window and
// head (hd = c / heads),
//
//	softmax((q * hd^-0.5) k^T + bias + mask) v,  q, k, v = split(x @ QKVW^T + QKVB)
//
// with bias[i][j] = Table[SwinRelativeIndex(ws)[i][j]][head] and, when
// shift > 0, mask = -100 between tokens of different regions of the padded
// map (BasicLayer's attention mask), then heads merged and projected by
// ProjW, ProjB. Padding tokens are zeros, so their keys and values are the
// qkv bias. Windows run in parallel, a few at a time per task, each task's
// projections one GEMM over its tokens, its attention on the GEMM
// micro-kernel.
func SwinWindowAttentionInto(dst, x []float32, h, w, c, heads, ws, shift int, wt *SwinWindowWeights) {
	if h*w == 0 || c == 0 {
		return
	}
	packs := pool.take(swinPackLen(c)) // every value is written
	if packs == nil {
		packs = make([]float32, swinPackLen(c))
	}
	defer pool.put(packs)
	a := newSwinAttn(h, w, c, heads, ws, shift, wt, packs)
	// One worker per thread, each taking tasks in order until none is
	// left: a late or descheduled worker delays the end by one task at most.
	tasks := a.tasks()
	var next atomic.Int64
	ParallelFor(min(runtime.GOMAXPROCS(0), tasks), func(int, int) {
		sc := swinScratchPool.Get().(*swinScratch)
		for t := int(next.Add(1) - 1); t < tasks; t = int(next.Add(1) - 1) {
			a.run(t, dst, x, sc)
		}
		swinScratchPool.Put(sc)
	})
}

// SwinWindowAttention adds SwinWindowAttentionInto as one op: x (...,
// h*w, C) the tokens of an h x w map (row-major); normW, normB (C) norm1's
// weight and bias with eps, or nil for tokens already normalised; qkvW
// (3C, C), qkvB (3C) or nil, projW (C, C), projB (C) or nil, table
// ((2ws-1)^2, heads). The result, x plus the attention, has x's shape.
func (g *Graph) SwinWindowAttention(x, normW, normB, qkvW, qkvB, projW, projB, table *Node, eps float32, h, w, heads, ws, shift int) *Node {
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
	if (normW == nil) != (normB == nil) {
		return g.fail("swin window attention: norm weight and bias must both be given")
	}
	ins := []*Node{x, qkvW, projW, table}
	opt := func(n *Node, size int, what string) int {
		if n == nil || g.err != nil {
			return -1
		}
		if prod(shapeOf(n)) != size {
			g.fail("swin window attention: %s %v for %d values", what, shapeOf(n), size)
			return -1
		}
		ins = append(ins, n)
		return len(ins) - 1
	}
	nw, nb := opt(normW, c, "norm weight"), opt(normB, c, "norm bias")
	qi, pi := opt(qkvB, 3*c, "qkv bias"), opt(projB, c, "proj bias")
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
		wt := &SwinWindowWeights{NormW: get(nw), NormB: get(nb), Eps: eps, QKVW: in[1], QKVB: get(qi),
			ProjW: in[2], ProjB: get(pi), Table: in[3]}
		SwinWindowAttentionInto(out, in[0], h, w, c, heads, ws, shift, wt)
		return nil
	}, ins...)
}
