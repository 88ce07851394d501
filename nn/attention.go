package nn

// SAM's image encoder attention: multi-head attention with decomposed
// relative positions, global or within windows (image_encoder.py's
// Attention, with window_partition folded in).

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// windowPad returns n rounded up to a multiple of the window size ws: the
// padded side window_partition works on.
func windowPad(n, ws int) int { return (n + ws - 1) / ws * ws }

// relPosTableRows resizes a position table (l, dim) to 2*size-1 rows, as
// the reference's get_rel_pos does with F.interpolate(mode="linear",
// align_corners=False), or returns it as is when it has that length.
func relPosTableRows(table []float32, l, dim, size int) []float32 {
	want := 2*size - 1
	if l == want {
		return table[:want*dim]
	}
	// (l, dim) -> (want, dim), interpolating along the rows in float32.
	taps := newLinearTaps(l, want, float32(l)/float32(want))
	t := make([]float32, want*dim)
	for r := 0; r < want; r++ {
		a, b := table[taps.i0[r]*dim:], table[taps.i1[r]*dim:]
		w0, w1 := taps.l0[r], taps.l1[r]
		for d := 0; d < dim; d++ {
			t[r*dim+d] = float32(w0*a[d]) + float32(w1*b[d])
		}
	}
	return t
}

// relPosAttn is attention over an h x w grid of tokens (n = h*w keys,
// head width hd) with decomposed relative positions, computed directly on
// the GEMM micro-kernel (gemmKernel) with operands packed once:
//
//   - per head, K is packed as the B operand of S = Q K^T (panels of nr
//     keys) and V as the B operand of O = P V (panels of nr columns);
//   - queries go in blocks of a few micro-panels (qr rows), so that a
//     block's scores S (qr x n) stay in the L2 cache from the score product
//     through the softmax to the packing of P for the value product.
//
// The position terms come from the same kernel: R = q T^T, where T stacks
// both tables with their rows reversed (T[m] = Th[2h-2-m] for m < 2h-1,
// then T[2h-1+m] = Tw[2w-2-m]). For the query at (i, j), rel_h[k] =
// q . Th[i-k+h-1] = R[h-1-i+k] and rel_w[l] = R[2h-1 + w-1-j+l]: both are
// contiguous runs of R's row.
type relPosAttn struct {
	kern        *gemmKernel
	h, w, hd, n int
	lt          int       // rows of T: 2h-1 + 2w-1
	nPad, ltPad int       // n and lt rounded up to whole B panels
	hdPad       int       // hd rounded up to whole B panels
	qr          int       // query rows per block, a multiple of kern.mr
	kcv         int       // keys per depth block of the value product
	tp          []float32 // T packed as B panels of nr rows, depth hd
	scale       float32   // hd^-0.5
}

// relPosBlockBytes bounds a query block's scores (qr x n floats), so that
// they stay in the L2 cache.
const relPosBlockBytes = 256 << 10

func roundUp(n, m int) int { return (n + m - 1) / m * m }

func newRelPosAttn(h, w, hd int, relH []float32, lh int, relW []float32, lw int) *relPosAttn {
	kern := gemmDefault
	mr, nr := kern.mr, kern.nr
	a := &relPosAttn{kern: kern, h: h, w: w, hd: hd, n: h * w, lt: 2*h - 1 + 2*w - 1}
	a.nPad, a.ltPad, a.hdPad = roundUp(a.n, nr), roundUp(a.lt, nr), roundUp(hd, nr)
	a.qr = max(mr, relPosBlockBytes/(4*a.nPad)/mr*mr)
	a.qr = min(a.qr, roundUp(a.n, mr))
	a.kcv = kern.kc
	a.scale = float32(math.Pow(float64(hd), -0.5))
	// T (lt, hd), then packed as B panels of nr rows.
	th := relPosTableRows(relH, lh, hd, h)
	tw := relPosTableRows(relW, lw, hd, w)
	t := make([]float32, a.lt*hd)
	for m := 0; m < 2*h-1; m++ {
		copy(t[m*hd:(m+1)*hd], th[(2*h-2-m)*hd:])
	}
	for m := 0; m < 2*w-1; m++ {
		copy(t[(2*h-1+m)*hd:(2*h+m)*hd], tw[(2*w-2-m)*hd:])
	}
	a.tp = make([]float32, a.ltPad*hd+16)
	packPanelsT(a.tp, nr, t, hd, a.lt, hd)
	return a
}

// packPanelsT packs rows x kc matrix src (row stride ld) as transposed
// panels of stride rows each: panel p holds src rows [p*stride, ...) with
// dst[p*kc*stride + k*stride + r] = src[(p*stride+r)*ld + k], zero past the
// last row. dst must have room for the packer's spill (16 floats).
func packPanelsT(dst []float32, stride int, src []float32, ld, rows, kc int) {
	for p := 0; p*stride < rows; p++ {
		packTransposed(dst[p*kc*stride:], stride, src, p*stride*ld, ld, min(stride, rows-p*stride), kc)
	}
}

// packedLen is the size of a pack of rows x kc in panels of stride rows,
// with room for the packer's spill.
func packedLen(rows, kc, stride int) int { return roundUp(rows, stride)*kc + 16 }

// packKV packs one head's keys k (n x hd, row stride ldk) and values v
// (n x hd, row stride ldv) into kp (packedLen(n, hd, nr)) and vp
// (hdPad x n).
func (a *relPosAttn) packKV(kp, vp, k []float32, ldk int, v []float32, ldv int) {
	nr, n, hd := a.kern.nr, a.n, a.hd
	packPanelsT(kp, nr, k, ldk, n, hd)
	// vp panel jp: vp[jp*n*nr + p*nr + jj] = v[p][jp*nr + jj], zero past hd.
	for jp := 0; jp*nr < hd; jp++ {
		cols := min(nr, hd-jp*nr)
		pan := vp[jp*n*nr : (jp+1)*n*nr]
		for p := 0; p < n; p++ {
			row := pan[p*nr : (p+1)*nr]
			copy(row, v[p*ldv+jp*nr:p*ldv+jp*nr+cols])
			clear(row[cols:])
		}
	}
}

// attnScratch is one worker's memory for attention: a query block's packed
// queries, scores, position terms, packed probabilities and outputs, and
// a window's gathered and packed operands.
type attnScratch struct {
	qp, s, r, ap, o, inv []float32
	qkv, kp, vp          []float32
}

var attnScratchPool = sync.Pool{New: func() any { return new(attnScratch) }}

// scratchF32 returns buf resized to n floats, reallocating when too small.
func scratchF32(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// attendRows computes one head's attention for query tokens [r0, r0+rows):
//
//	out[r] = softmax(scale * q[r] K^T + rel_h + rel_w) V
//
// q holds the query rows (row r at q[r*ldq:], token r0+r), kp and vp the
// head's keys and values packed by packKV; out row r is written at
// out[r*ldo:] (hd values).
func (a *relPosAttn) attendRows(out []float32, ldo int, q []float32, ldq int, kp, vp []float32, r0, rows int, sc *attnScratch) {
	kern := a.kern
	mr, nr := kern.mr, kern.nr
	h, w, hd, n, lt := a.h, a.w, a.hd, a.n, a.lt
	nPad, ltPad, hdPad := a.nPad, a.ltPad, a.hdPad
	qr := a.qr
	sc.qp = scratchF32(sc.qp, packedLen(qr, hd, mr))
	sc.s = scratchF32(sc.s, qr*nPad)
	sc.r = scratchF32(sc.r, qr*ltPad)
	sc.ap = scratchF32(sc.ap, packedLen(qr, min(a.kcv, n), mr))
	sc.o = scratchF32(sc.o, qr*hdPad)
	sc.inv = scratchF32(sc.inv, qr)
	s, r, o := sc.s, sc.r, sc.o
	for b0 := 0; b0 < rows; b0 += qr {
		br := min(qr, rows-b0)
		aPanels := (br + mr - 1) / mr
		// Pack the block's queries: panels of mr rows, depth hd.
		packPanelsT(sc.qp, mr, q[b0*ldq:], ldq, br, hd)
		// S (br, n) = (q * scale) (br, hd) @ k^T (hd, n), one B panel at a
		// time against every A panel; rows and columns past br and n are
		// padding (zero queries, zero keys).
		for jp := 0; jp*nr < n; jp++ {
			bpan := kp[jp*hd*nr : (jp+1)*hd*nr]
			for ip := 0; ip < aPanels; ip++ {
				kern.fn(hd, sc.qp[ip*hd*mr:(ip+1)*hd*mr], bpan, s[ip*mr*nPad+jp*nr:], nPad, a.scale, 0)
			}
		}
		// R (br, lt) = q (br, hd) @ T^T (hd, lt), with the unscaled q
		for jp := 0; jp*nr < lt; jp++ {
			bpan := a.tp[jp*hd*nr : (jp+1)*hd*nr]
			for ip := 0; ip < aPanels; ip++ {
				kern.fn(hd, sc.qp[ip*hd*mr:(ip+1)*hd*mr], bpan, r[ip*mr*ltPad+jp*nr:], ltPad, 1, 0)
			}
		}
		for i := 0; i < br; i++ {
			tok := r0 + b0 + i
			qi, qj := tok/w, tok%w
			rr := r[i*ltPad : i*ltPad+lt]
			row := s[i*nPad : i*nPad+n]
			// S[(k, l)] += rel_h[k] + rel_w[l]; softmax numerators and sum
			mx := relAddMax(row, rr[h-1-qi:2*h-1-qi], rr[2*h-1+w-1-qj:2*h-1+2*w-1-qj])
			sc.inv[i] = 1 / expShiftSum(row, mx)
		}
		// O (br, hd) = e^S (br, n) @ v (n, hd), in depth blocks of kcv keys:
		// pack that part of e^S as A panels, then multiply by v's panels.
		for p0 := 0; p0 < n; p0 += a.kcv {
			kc := min(a.kcv, n-p0)
			packPanelsT(sc.ap, mr, s[p0:], nPad, br, kc)
			var beta float32
			if p0 > 0 {
				beta = 1
			}
			for jp := 0; jp*nr < hd; jp++ {
				bpan := vp[jp*n*nr+p0*nr : jp*n*nr+(p0+kc)*nr]
				for ip := 0; ip < aPanels; ip++ {
					kern.fn(kc, sc.ap[ip*kc*mr:(ip+1)*kc*mr], bpan, o[ip*mr*hdPad+jp*nr:], hdPad, 1, beta)
				}
			}
		}
		// out rows = O rows / their sums
		for i := 0; i < br; i++ {
			scaleInto(out[(b0+i)*ldo:(b0+i)*ldo+hd], o[i*hdPad:i*hdPad+hd], sc.inv[i])
		}
	}
}

// parallelTasks runs fn(task) for task in [0, n) on GOMAXPROCS goroutines
// that take tasks in order from a shared counter (a slow or late worker
// then costs little), each with its own scratch.
func parallelTasks(n int, fn func(task int, sc *attnScratch)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	var next atomic.Int64
	ParallelFor(workers, func(int, int) {
		sc := attnScratchPool.Get().(*attnScratch)
		for {
			t := int(next.Add(1) - 1)
			if t >= n {
				break
			}
			fn(t, sc)
		}
		attnScratchPool.Put(sc)
	})
}

// relPosTaskRows is about how many query rows one task of global attention
// handles: enough tasks for a steady split across workers.
const relPosTaskRows = 512

// relPosGlobal is attention over each of b images of h x w tokens:
// qkv (b*h*w, 3c) holds per token [q | k | v], each heads x hd; merged
// (b*h*w, c) gets the heads' outputs side by side. Every head's keys and
// values are packed first (in parallel), then tasks of query rows run.
func relPosGlobal(merged, qkv []float32, b, c, heads int, a *relPosAttn) {
	n, hd, c3 := a.n, a.hd, 3*c
	kpLen, vpLen := packedLen(n, hd, a.kern.nr), a.hdPad*n
	packs := pool.get(b * heads * (kpLen + vpLen))
	defer pool.put(packs)
	parallelTasks(b*heads, func(task int, _ *attnScratch) {
		hh, bi := task%heads, task/heads
		base := bi*n*c3 + hh*hd
		p := packs[task*(kpLen+vpLen):]
		a.packKV(p[:kpLen], p[kpLen:kpLen+vpLen], qkv[base+c:], c3, qkv[base+2*c:], c3)
	})
	tr := roundUp(min(relPosTaskRows, n), a.qr) // whole query blocks per task
	blocks := (n + tr - 1) / tr
	parallelTasks(b*heads*blocks, func(task int, sc *attnScratch) {
		blk := task % blocks
		hh := (task / blocks) % heads
		bi := task / (blocks * heads)
		r0 := blk * tr
		rows := min(tr, n-r0)
		base := bi*n*c3 + hh*hd
		p := packs[(bi*heads+hh)*(kpLen+vpLen):]
		a.attendRows(merged[(bi*n+r0)*c+hh*hd:], c, qkv[base+r0*c3:], c3, p[:kpLen], p[kpLen:kpLen+vpLen], r0, rows, sc)
	})
}

// relPosWindows is window attention on b images of h x w tokens (qkv
// (b*h*w, 3c), merged (b*h*w, c) as in relPosGlobal): the images are
// padded at the bottom and right to multiples of the window a.h x a.w and
// split into windows, as window_partition does after the block's norm, so
// a padding token's q, k and v are the qkv bias (zero when qkvB is nil).
// Only the outputs of real tokens are written, as window_unpartition keeps.
func relPosWindows(merged, qkv []float32, b, h, w, c, heads int, qkvB []float32, a *relPosAttn) {
	ws := a.h // square windows: a.h == a.w
	n, hd, c3 := a.n, a.hd, 3*c
	nh, nw := windowPad(h, ws)/ws, windowPad(w, ws)/ws
	nr := a.kern.nr
	parallelTasks(b*nh*nw*heads, func(task int, sc *attnScratch) {
		hh := task % heads
		win := task / heads
		wx, wy, bi := win%nw, (win/nw)%nh, win/(nw*nh)
		// Gather the window's keys of head hh (n, hd) and pack them; put
		// its values straight into their packed panels.
		sc.qkv = scratchF32(sc.qkv, n*hd)
		sc.kp = scratchF32(sc.kp, packedLen(n, hd, nr))
		sc.vp = scratchF32(sc.vp, a.hdPad*n)
		kg, vp := sc.qkv, sc.vp
		for t := 0; t < n; t++ {
			y, x := wy*ws+t/ws, wx*ws+t%ws
			var k, v []float32
			switch {
			case y < h && x < w:
				src := qkv[((bi*h+y)*w+x)*c3+hh*hd:]
				k, v = src[c:c+hd], src[2*c:2*c+hd]
			case qkvB != nil:
				k, v = qkvB[c+hh*hd:c+(hh+1)*hd], qkvB[2*c+hh*hd:2*c+(hh+1)*hd]
			}
			copy(kg[t*hd:(t+1)*hd], k)
			clear(kg[t*hd+len(k) : (t+1)*hd])
			for jp := 0; jp*nr < hd; jp++ {
				row := vp[jp*n*nr+t*nr : jp*n*nr+(t+1)*nr]
				m := 0
				if v != nil {
					m = copy(row, v[jp*nr:min(hd, (jp+1)*nr)])
				}
				clear(row[m:])
			}
		}
		packPanelsT(sc.kp, nr, kg, hd, n, hd)
		// Each window row's real queries, read in place, and their outputs,
		// written in place (up to ws tokens at a time).
		rowsIn := min(ws, h-wy*ws)
		cols := min(ws, w-wx*ws)
		for i := 0; i < rowsIn; i++ {
			tok := (bi*h+wy*ws+i)*w + wx*ws
			a.attendRows(merged[tok*c+hh*hd:], c, qkv[tok*c3+hh*hd:], c3, sc.kp, vp, i*ws, cols, sc)
		}
	})
}

// RelPosSDPAInto is the core of SAM's encoder Attention, between its qkv
// and output projections: on qkv (b, h, w, 3c), holding per token
// [q | k | v] with heads x hd values each (hd = c / heads), it writes
// dst (b, h, w, c) with head hh's output in columns [hh*hd, (hh+1)*hd):
//
//	dst_hh = softmax((q * hd^-0.5) @ k^T + rel_h + rel_w) @ v
//
// with rel_h, rel_w the decomposed relative positions from the unscaled q.
// With window 0 each image attends globally; the tables relH (lh, hd) and
// relW (lw, hd) are then resized when lh != 2h-1 or lw != 2w-1. With a
// window ws > 0 attention runs within ws x ws windows of each image,
// padded as window_partition pads the block's normalised input with zeros,
// so that padding tokens carry the qkv bias qkvB (3c, or nil for zeros);
// the tables are then resized to 2ws-1 rows when they differ.
func RelPosSDPAInto(dst, qkv []float32, b, h, w, c, heads, window int, qkvB, relH []float32, lh int, relW []float32, lw int) {
	if b*h*w == 0 || c == 0 {
		return
	}
	hd := c / heads
	if window > 0 {
		relPosWindows(dst, qkv, b, h, w, c, heads, qkvB, newRelPosAttn(window, window, hd, relH, lh, relW, lw))
		return
	}
	relPosGlobal(dst, qkv, b, c, heads, newRelPosAttn(h, w, hd, relH, lh, relW, lw))
}

// RelPosSDPA adds the core of SAM's encoder attention (RelPosSDPAInto) as
// one op: qkv (B, H, W, 3C) -> (B, H, W, C), the heads' outputs before the
// output projection. window 0 is global attention over each image; a
// window ws > 0 attends within ws x ws windows of the zero-padded image, the
// padding tokens carrying the qkv bias qkvB (3C, or nil). relPosH and
// relPosW are the (L, C/heads) position tables.
func (g *Graph) RelPosSDPA(qkv, qkvB, relPosH, relPosW *Node, heads, window int) *Node {
	if !g.ok(qkv, relPosH, relPosW) {
		return nil
	}
	qs := shapeOf(qkv)
	if len(qs) != 4 || qs[3]%3 != 0 {
		return g.fail("relpos sdpa: qkv %v: want NHWC with 3C channels", qs)
	}
	b, h, w, c := qs[0], qs[1], qs[2], qs[3]/3
	if heads <= 0 || c%heads != 0 {
		return g.fail("relpos sdpa: %d heads do not divide width %d", heads, c)
	}
	if window < 0 {
		return g.fail("relpos sdpa: window %d", window)
	}
	hd := c / heads
	rhs, rws := shapeOf(relPosH), shapeOf(relPosW)
	if len(rhs) != 2 || rhs[1] != hd || rhs[0] < 1 || len(rws) != 2 || rws[1] != hd || rws[0] < 1 {
		return g.fail("relpos sdpa: position tables %v, %v, want (L, %d)", rhs, rws, hd)
	}
	ins := []*Node{qkv, relPosH, relPosW}
	if qkvB != nil {
		if prod(shapeOf(qkvB)) != 3*c {
			return g.fail("relpos sdpa: qkv bias %v for %d channels", shapeOf(qkvB), 3*c)
		}
		ins = append(ins, qkvB)
	}
	lh, lw := rhs[0], rws[0]
	return g.OpFull("RelPosSDPA", []int{b, h, w, c}, func(o []float32, v [][]float32) error {
		var bias []float32
		if len(v) == 4 {
			bias = v[3]
		}
		RelPosSDPAInto(o, v[0], b, h, w, c, heads, window, bias, v[1], lh, v[2], lw)
		return nil
	}, ins...)
}
