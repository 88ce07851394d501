package nn

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Convolutions run as implicit GEMMs: out (Cout, pixels) = W (Cout, K) @
// patches (K, pixels), K = Cin*KH*KW, where the patch matrix (im2col) is
// never materialised. Each worker takes a run of output pixels along one
// row, packs its patches straight from the input into the GEMM
// micro-kernel's panel layout, multiplies them by the packed weights into a
// small accumulator that stays in cache, and writes the run out through a
// fused epilogue (bias, residual with nearest upsampling, LeakyReLU, or a
// second one-channel convolution: the head). A transposed convolution is
// split into stride^2 ordinary convolutions, one per output phase (oy mod
// stride, ox mod stride), each with its share of the kernel taps, whose
// accumulators are interleaved on the way out: no col2im scatter. 3x3
// convolutions with stride 1 and padding 1 use Winograd's F(2x2, 3x3)
// (below). The inputs of a convolution may be several tensors read as
// their concatenation along channels (M2M's torch.cat, never built). Packed
// weights are kept between runs (weightCache).
//
// The micro-kernel is picked per convolution among those the CPU runs
// (gemmKernels): the one whose row panels waste the least on Cout.

// ConvOutSize is the output side of a convolution over an input side of n
// with kernel k, stride s and zero padding p on both sides.
func ConvOutSize(n, k, s, p int) int { return (n+2*p-k)/s + 1 }

// ConvTransposeOutSize is the output side of a transposed convolution over an
// input side of n with kernel k, stride s and padding p.
func ConvTransposeOutSize(n, k, s, p int) int { return (n-1)*s - 2*p + k }

// convBlockPanels is how many micro-kernel column panels (output pixels) one
// work unit covers at most; convKC is the most depth of one packed block
// (kBlock). Tests lower both to exercise the tiling.
var (
	convBlockPanels = 8
	convKC          = 256
)

// convEpilogue is what happens to each finished block of outputs.
type convEpilogue struct {
	bias  []float32 // per output channel, or nil
	leaky bool      // LeakyReLU(slope) last
	slope float32
	// res, when not nil, is added before the activation: (n, cout, rh, rw),
	// read at (oy/rscale, ox/rscale) (nearest upsampling by rscale).
	res    []float32
	rh, rw int
	rscale int
	// head, when not nil, replaces the store: the activated block is
	// reduced to the head's per-tap products, written to headTapOut
	// (n, taps, oh, ow).
	head       *convHead
	headTapOut []float32
}

// convHead is a second, single-output-channel convolution applied to the
// activated outputs of the first: per pixel, the products with each of its
// taps (a taps x cout GEMM) go to headTapOut, and convHeadSum adds the
// shifted tap planes.
type convHead struct {
	kern *gemmKernel
	taps int
	ap   []float32 // packed (taps, cout) weight, full depth
}

// convPhase is one ordinary convolution of a lowered operation: its packed
// weight and its taps. Grid pixel (gy, gx) reads input (gy*stride+dy[t],
// gx*stride+dx[t]) for tap t and lands on output pixel (gy*step+ry,
// gx*step+rx).
type convPhase struct {
	ap     []float32 // packed A, K blocks of convKC, each mPanels panels
	dy, dx []int     // input offset of each tap
	ry, rx int
}

// convOp is a (transposed) convolution lowered to implicit GEMMs over a
// common output grid.
type convOp struct {
	kern      *gemmKernel
	n         int
	srcs      [][]float32 // inputs concatenated along channels, each (n, srcC[i], h, w)
	srcC      []int
	cin, h, w int
	stride    int // input step per grid step
	step      int // output step per grid step (the phases interleave)
	gh, gw    int // grid
	m         int // output channels
	mPanels   int
	phases    []convPhase
	dst       []float32 // (n, m, oh, ow)
	oh, ow    int
	epi       convEpilogue
	wino      []float32 // packed Winograd weights, or nil
	// A window of larger inputs and outputs (ConvTranspose2dHead's bands):
	// the input image is rows rowOff.. of planes pstride values apart (0:
	// h*w, contiguous), and only output rows [oLo, oHi) are needed (oHi 0:
	// all; neighbouring rows may be written too).
	rowOff, pstride int
	oLo, oHi        int
	// Only output columns [0, oWi) are needed (0: all; neighbouring
	// columns may be written too).
	oWi int
}

// withRows returns a copy of c for an input of h rows and an output of oh
// rows written to dst (a band of ConvTranspose2dHead).
func (c *convOp) withRows(h, oh int, dst []float32) *convOp {
	d := *c
	d.h, d.oh, d.dst = h, oh, dst
	d.gh = (oh + d.step - 1) / d.step
	return &d
}

// weightCache keeps what an op derives from its weights (packed panels)
// between runs of its graph, keyed by the weights' storage: graphs bind the
// same parameter tensors every run, which must not be modified in place
// while bound. Weights computed by other ops are never cached (their
// buffers are recycled).
type weightCache struct {
	key []weightKey
	val any
}

type weightKey struct {
	p *float32
	n int
}

// get returns the cached value for weights ws, making it when they are
// not the ones it was made from. A nil cache makes it every time.
func (wc *weightCache) get(ws [][]float32, build func() any) any {
	if wc == nil {
		return build()
	}
	key := weightKeys(ws)
	if wc.val != nil && len(key) == len(wc.key) {
		same := true
		for i := range key {
			same = same && key[i] == wc.key[i]
		}
		if same {
			return wc.val
		}
	}
	wc.key, wc.val = key, build()
	return wc.val
}

// weightCache returns a cache for weights that are all graph inputs, nil
// (no caching) when one is computed by an op.
func (g *Graph) weightCache(ws ...*Node) *weightCache {
	for _, w := range ws {
		if g.computed(w) {
			return nil
		}
	}
	return &weightCache{}
}

func weightKeys(ws [][]float32) []weightKey {
	key := make([]weightKey, len(ws))
	for i, w := range ws {
		if len(w) > 0 {
			key[i] = weightKey{&w[0], len(w)}
		}
	}
	return key
}

// planes sets chans to the channel planes of image img (h*w values each).
func (c *convOp) planes(chans [][]float32, img int) {
	ps := c.pstride
	if ps == 0 {
		ps = c.h * c.w
	}
	ch := 0
	for i, src := range c.srcs {
		for j := 0; j < c.srcC[i]; j++ {
			off := (img*c.srcC[i]+j)*ps + c.rowOff*c.w
			chans[ch] = src[off : off+c.h*c.w]
			ch++
		}
	}
}

// gridRows returns the grid rows [lo, hi) that cover output rows [oLo,
// oHi) when a grid row makes rows gy*per .. gy*per+per-1.
func (c *convOp) gridRows(per, rows int) (lo, hi int) {
	if c.oHi <= 0 {
		return 0, rows
	}
	return min(c.oLo/per, rows), min((c.oHi+per-1)/per, rows)
}

// gridCols returns how many grid columns cover output columns [0, oWi)
// when a grid column makes columns gx*per .. gx*per+per-1.
func (c *convOp) gridCols(per, cols int) int {
	if c.oWi <= 0 {
		return cols
	}
	return min((c.oWi+per-1)/per, cols)
}

// pickKernel returns the micro-kernel that wastes the least work on m
// output rows (ties go to the faster, earlier kernel).
func pickKernel(m int) *gemmKernel {
	best, bestRows := gemmDefault, 0
	for _, k := range gemmKernels {
		if k == gemmGo && gemmDefault != gemmGo {
			continue
		}
		rows := (m + k.mr - 1) / k.mr * k.mr
		if bestRows == 0 || rows < bestRows {
			best, bestRows = k, rows
		}
	}
	return best
}

// kBlock is the depth of the packed blocks of a reduction of length k: at
// most convKC, balanced (260 gives 130 + 130, not 256 + 4).
func kBlock(k int) int {
	if k <= 0 {
		return 1
	}
	n := (k + convKC - 1) / convKC
	return (k + n - 1) / n
}

// packWeights packs a (m, k) row-major matrix a (row stride lda) into the
// kernel's A panels, K blocks of kBlock(k): the block at depth k0 starts at
// mPadded*k0, and holds the panels of mr rows one after the other.
func packWeights(kern *gemmKernel, a []float32, m, k, lda int) []float32 {
	mr := kern.mr
	mp := (m + mr - 1) / mr
	ap := make([]float32, mp*mr*k)
	kb := kBlock(k)
	for k0 := 0; k0 < k; k0 += kb {
		kc := min(kb, k-k0)
		for ip := 0; ip < mp; ip++ {
			rs := min(mr, m-ip*mr)
			dst := ap[mp*mr*k0+ip*kc*mr:]
			for i := 0; i < rs; i++ {
				src := a[(ip*mr+i)*lda+k0 : (ip*mr+i)*lda+k0+kc]
				for p, v := range src {
					dst[p*mr+i] = v
				}
			}
		}
	}
	return ap
}

// convScratch is one worker's buffers.
type convScratch struct {
	bp, acc, hb, hacc []float32
	obuf, vt          []float32
	chans             [][]float32
}

var convScratchPool = sync.Pool{New: func() any { return new(convScratch) }}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// run computes every output block, on up to GOMAXPROCS goroutines taking
// units dynamically (steady under a noisy neighbour). A unit is a run of
// at most convBlockPanels panels of one grid row.
func (c *convOp) run() {
	if c.wino != nil {
		c.runWinograd()
		return
	}
	nr := c.kern.nr
	gw := c.gridCols(c.step, c.gw)
	g0, g1 := c.gridRows(c.step, c.gh)
	c.runGrid(g0, g1, gw, convBlockPanels*nr, c.unit)
}

// runGrid runs fn on units of work, on up to GOMAXPROCS goroutines taking
// them dynamically (steady under a noisy neighbour): each of rows [r0, r1)
// of every image, its cols columns split into balanced runs of at most
// maxCols, rounded up to whole micro-kernel panels (stride, the padded run
// length fn gets). fn(s, img, row, x0, n, stride) does columns [x0, x0+n).
func (c *convOp) runGrid(r0, r1, cols, maxCols int, fn func(s *convScratch, img, row, x0, n, stride int)) {
	nr := c.kern.nr
	perRow := (cols + maxCols - 1) / maxCols
	rows := r1 - r0
	units := c.n * rows * perRow
	if units <= 0 {
		return
	}
	stride := ((cols+perRow-1)/perRow + nr - 1) / nr * nr
	var next atomic.Int64
	work := func() {
		s := convScratchPool.Get().(*convScratch)
		defer convScratchPool.Put(s)
		for {
			u := int(next.Add(1) - 1)
			if u >= units {
				return
			}
			row, blk := u/perRow, u%perRow
			x0 := blk * stride
			fn(s, row/rows, r0+row%rows, x0, min(stride, cols-x0), stride)
		}
	}
	onWorkers(units, work)
}

// unit computes grid pixels (gy, gx0..gx0+nq) of every phase for image
// img; nb is the accumulator's row stride.
func (c *convOp) unit(s *convScratch, img, gy, gx0, nq, nb int) {
	kern := c.kern
	mr, nr := kern.mr, kern.nr
	panels := (nq + nr - 1) / nr
	mp := c.mPanels * mr
	s.acc = grow(s.acc, len(c.phases)*mp*nb)
	// The channel planes of this image.
	if cap(s.chans) < c.cin {
		s.chans = make([][]float32, c.cin)
	}
	chans := s.chans[:c.cin]
	c.planes(chans, img)
	s.bp = grow(s.bp, panels*nr*convKC)
	for pi := range c.phases {
		p := &c.phases[pi]
		acc := s.acc[pi*mp*nb : (pi+1)*mp*nb]
		k := c.cin * len(p.dy)
		if k == 0 {
			clear(acc)
			continue
		}
		kb := kBlock(k)
		for k0 := 0; k0 < k; k0 += kb {
			kc := min(kb, k-k0)
			c.packB(s.bp, chans, p, gy, gx0, nq, k0, kc)
			beta := float32(1)
			if k0 == 0 {
				beta = 0
			}
			for jr := 0; jr < panels; jr++ {
				bpan := s.bp[jr*kc*nr : (jr+1)*kc*nr]
				for ip := 0; ip < c.mPanels; ip++ {
					apan := p.ap[mp*k0+ip*kc*mr : mp*k0+(ip+1)*kc*mr]
					kern.fn(kc, apan, bpan, acc[ip*mr*nb+jr*nr:], nb, 1, beta)
				}
			}
		}
	}
	switch {
	case c.epi.head != nil:
		c.headUnit(s, s.acc, nb, img, gy*c.gw+gx0, nq)
	case len(c.phases) == 1 && c.step == 1:
		c.store(s.acc, nb, img, gy, gx0, nq)
	default:
		c.storePhases(s.acc, nb, mp, img, gy, gx0, nq)
	}
}

// packB packs patch rows [k0, k0+kc) of grid pixels (gy, gx0..gx0+nq)
// into panels of nr pixels: bp[jr*kc*nr + p*nr + l] is the input under tap
// (k0+p) % taps of channel (k0+p) / taps for pixel gx0+jr*nr+l (zero in
// the padding and past nq).
func (c *convOp) packB(bp []float32, chans [][]float32, p *convPhase, gy, gx0, nq, k0, kc int) {
	nr := c.kern.nr
	panels := (nq + nr - 1) / nr
	full := nq / nr // panels without lanes past the block
	taps := len(p.dy)
	h, w, st := c.h, c.w, c.stride
	ci, t := k0/taps, k0%taps
	for pp := 0; pp < kc; pp++ {
		plane := chans[ci]
		dy, dx := p.dy[t], p.dx[t]
		t++
		if t == taps {
			t = 0
			ci++
		}
		d := bp[pp*nr:]
		iy := gy*st + dy
		if iy < 0 || iy >= h {
			for jr := 0; jr < panels; jr++ {
				clear(d[jr*kc*nr : jr*kc*nr+nr])
			}
			continue
		}
		src := plane[iy*w : (iy+1)*w]
		ix0 := gx0*st + dx
		jlo, jhi := 0, 0 // panels [jlo, jhi) lie inside the row: a plain copy
		if st == 1 {
			if ix0 < 0 {
				jlo = (-ix0 + nr - 1) / nr
			}
			jhi = min(full, max((w-ix0)/nr, 0))
			jhi = max(jhi, jlo)
			switch nr {
			case 16:
				for jr := jlo; jr < jhi; jr++ {
					copy16(d[jr*kc*nr:], src[ix0+jr*16:])
				}
			case 32:
				for jr := jlo; jr < jhi; jr++ {
					copy16(d[jr*kc*nr:], src[ix0+jr*32:])
					copy16(d[jr*kc*nr+16:], src[ix0+jr*32+16:])
				}
			default:
				for jr := jlo; jr < jhi; jr++ {
					copy(d[jr*kc*nr:jr*kc*nr+nr], src[ix0+jr*nr:])
				}
			}
		}
		for jr := 0; jr < panels; jr++ {
			if jr == jlo && jhi > jlo {
				jr = jhi - 1
				continue
			}
			seg := d[jr*kc*nr : jr*kc*nr+nr]
			for l := range seg {
				i := jr*nr + l
				if ix := ix0 + i*st; i < nq && ix >= 0 && ix < w {
					seg[l] = src[ix]
				} else {
					seg[l] = 0
				}
			}
		}
	}
}

// vec16 lets copy16 move 16 floats with inline vector moves (an array
// assignment would call memmove).
type vec16 struct{ v [16]float32 }

// copy16 copies s[:16] to d[:16].
func copy16(d, s []float32) {
	_, _ = d[15], s[15]
	*(*vec16)(unsafe.Pointer(&d[0])) = *(*vec16)(unsafe.Pointer(&s[0]))
}

// leakyScale[sign bit] is the factor of LeakyReLU: 1, or the slope for a
// negative value. Indexing by the sign bit keeps the loop branch-free.
func leakyScale(leaky bool, slope float32) [2]float32 {
	if !leaky {
		return [2]float32{1, 1}
	}
	return [2]float32{1, slope}
}

// actRow writes d[j] = act(a[j] + b) for a row of outputs.
func actRow(d, a []float32, b float32, ls *[2]float32) {
	d = d[:len(a)]
	k := actRowFast(d, a, nil, 0, b, ls, len(a))
	for j, v := range a[k:] {
		v += b
		d[k+j] = v * ls[math.Float32bits(v)>>31]
	}
}

// store writes accumulator block acc (rows of stride nb) for output
// pixels (oy, ox..ox+n) of a single stride-1 phase to dst through the
// epilogue.
func (c *convOp) store(acc []float32, nb, img, oy, ox, n int) {
	e := &c.epi
	ls := leakyScale(e.leaky, e.slope)
	plane := c.oh * c.ow
	for co := 0; co < c.m; co++ {
		a := acc[co*nb : co*nb+n]
		var b float32
		if e.bias != nil {
			b = e.bias[co]
		}
		d := c.dst[(img*c.m+co)*plane+oy*c.ow+ox : (img*c.m+co)*plane+oy*c.ow+ox+n]
		if e.res == nil {
			actRow(d, a, b, &ls)
			continue
		}
		res := e.res[((img*c.m+co)*e.rh+oy/e.rscale)*e.rw:]
		if e.rscale == 1 {
			r := res[ox : ox+n]
			k := actRowFast(d, a, r, 1, b, &ls, n)
			for j := k; j < n; j++ {
				v := a[j] + b + r[j]
				d[j] = v * ls[math.Float32bits(v)>>31]
			}
			continue
		}
		if e.rscale == 2 && ox%2 == 0 {
			r := res[ox/2 : ox/2+(n+1)/2]
			k := actRowFast(d, a, r, 2, b, &ls, n)
			for j := k; j+1 < n; j += 2 {
				rv := r[j/2]
				v := a[j] + b + rv
				u := a[j+1] + b + rv
				d[j] = v * ls[math.Float32bits(v)>>31]
				d[j+1] = u * ls[math.Float32bits(u)>>31]
			}
			if n%2 == 1 {
				v := a[n-1] + b + r[(n-1)/2]
				d[n-1] = v * ls[math.Float32bits(v)>>31]
			}
			continue
		}
		for j, v := range a {
			v = v + b + res[(ox+j)/e.rscale]
			d[j] = v * ls[math.Float32bits(v)>>31]
		}
	}
}

// storePhases writes the accumulators of every phase (phase pi at
// acc[pi*mp*nb:]) for grid pixels (gy, gx..gx+n), interleaving the phases
// into whole output rows.
func (c *convOp) storePhases(acc []float32, nb, mp, img, gy, gx, n int) {
	e := &c.epi
	ls := leakyScale(e.leaky, e.slope)
	plane := c.oh * c.ow
	st := c.step
	for ry := 0; ry < st; ry++ {
		oy := gy*st + ry
		if oy >= c.oh {
			continue
		}
		for co := 0; co < c.m; co++ {
			var b float32
			if e.bias != nil {
				b = e.bias[co]
			}
			d := c.dst[(img*c.m+co)*plane+oy*c.ow : (img*c.m+co)*plane+(oy+1)*c.ow]
			var res []float32
			if e.res != nil {
				res = e.res[((img*c.m+co)*e.rh+oy/e.rscale)*e.rw:]
			}
			if st == 2 && res == nil && (gx+n)*2 <= c.ow {
				a0 := acc[(ry*2)*mp*nb+co*nb : (ry*2)*mp*nb+co*nb+n]
				a1 := acc[(ry*2+1)*mp*nb+co*nb : (ry*2+1)*mp*nb+co*nb+n]
				dd := d[gx*2 : gx*2+2*n]
				k := act2RowFast(dd, a0, a1, b, &ls, n)
				for j := k; j < n; j++ {
					v := a0[j] + b
					u := a1[j] + b
					dd[2*j] = v * ls[math.Float32bits(v)>>31]
					dd[2*j+1] = u * ls[math.Float32bits(u)>>31]
				}
				continue
			}
			for rx := 0; rx < st; rx++ {
				a := acc[(ry*st+rx)*mp*nb+co*nb : (ry*st+rx)*mp*nb+co*nb+n]
				for j, v := range a {
					ox := (gx+j)*st + rx
					if ox >= c.ow {
						break
					}
					v += b
					if res != nil {
						v += res[ox/e.rscale]
					}
					d[ox] = v * ls[math.Float32bits(v)>>31]
				}
			}
		}
	}
}

// headUnit applies the epilogue to an accumulator block (rows of stride
// nb, output pixels q0..q0+nq of one row) in place, then multiplies it by
// the head's tap weights into headTapOut.
func (c *convOp) headUnit(s *convScratch, acc []float32, nb, img, q0, nq int) {
	e := &c.epi
	hd := e.head
	ls := leakyScale(e.leaky, e.slope)
	for co := 0; co < c.m; co++ {
		var b float32
		if e.bias != nil {
			b = e.bias[co]
		}
		actRow(acc[co*nb:], acc[co*nb:co*nb+nq], b, &ls)
	}
	hk := hd.kern
	mr, nr := hk.mr, hk.nr
	panels := (nq + nr - 1) / nr
	// Pack the activations (m, nq) as B panels of depth m.
	s.hb = grow(s.hb, panels*c.m*nr)
	for jr := 0; jr < panels; jr++ {
		cols := min(nr, nq-jr*nr)
		dst := s.hb[jr*c.m*nr:]
		for co := 0; co < c.m; co++ {
			row := dst[co*nr : co*nr+nr]
			copy(row, acc[co*nb+jr*nr:co*nb+jr*nr+cols])
			clear(row[cols:])
		}
	}
	hp := (hd.taps + mr - 1) / mr
	ld := panels * nr
	s.hacc = grow(s.hacc, hp*mr*ld)
	for jr := 0; jr < panels; jr++ {
		for ip := 0; ip < hp; ip++ {
			hk.fn(c.m, hd.ap[ip*c.m*mr:(ip+1)*c.m*mr], s.hb[jr*c.m*nr:(jr+1)*c.m*nr], s.hacc[ip*mr*ld+jr*nr:], ld, 1, 0)
		}
	}
	plane := c.oh * c.ow
	for t := 0; t < hd.taps; t++ {
		o := (img*hd.taps+t)*plane + q0
		copy(e.headTapOut[o:o+nq], s.hacc[t*ld:t*ld+nq])
	}
}

// newConv2d lowers a convolution (stride, zero padding) over the channel
// concatenation of srcs to one implicit GEMM phase.
func newConv2d(srcs [][]float32, srcC []int, n, h, w int, weight []float32, cout, kh, kw, stride, pad int, dst []float32) *convOp {
	cin := 0
	for _, c := range srcC {
		cin += c
	}
	oh, ow := ConvOutSize(h, kh, stride, pad), ConvOutSize(w, kw, stride, pad)
	kern := pickKernel(cout)
	c := &convOp{kern: kern, n: n, srcs: srcs, srcC: srcC, cin: cin, h: h, w: w, stride: stride, step: 1,
		gh: oh, gw: ow, m: cout, mPanels: (cout + kern.mr - 1) / kern.mr, dst: dst, oh: oh, ow: ow}
	if convWinograd && kh == 3 && kw == 3 && stride == 1 && pad == 1 {
		c.wino = winogradWeights(kern, weight, cout, cin)
		return c
	}
	var ph convPhase
	for i := 0; i < kh; i++ {
		for j := 0; j < kw; j++ {
			ph.dy = append(ph.dy, i-pad)
			ph.dx = append(ph.dx, j-pad)
		}
	}
	k := cin * kh * kw
	ph.ap = packWeights(kern, weight, cout, k, k)
	c.phases = []convPhase{ph}
	return c
}

// newConvTranspose2d lowers a transposed convolution over the channel
// concatenation of srcs to stride^2 phases on a grid of ceil(oh/stride) x
// ceil(ow/stride): output pixel (gy*stride+ry, gx*stride+rx) takes the
// kernel rows i = i0, i0+stride, ... (i0 = (ry+pad) mod stride) from input
// row gy + (ry+pad-i)/stride, and likewise along x.
func newConvTranspose2d(srcs [][]float32, srcC []int, n, h, w int, weight []float32, cout, kh, kw, stride, pad int, dst []float32) *convOp {
	cin := 0
	for _, c := range srcC {
		cin += c
	}
	oh, ow := ConvTransposeOutSize(h, kh, stride, pad), ConvTransposeOutSize(w, kw, stride, pad)
	kern := pickKernel(cout)
	c := &convOp{kern: kern, n: n, srcs: srcs, srcC: srcC, cin: cin, h: h, w: w, stride: 1, step: stride,
		gh: (oh + stride - 1) / stride, gw: (ow + stride - 1) / stride,
		m: cout, mPanels: (cout + kern.mr - 1) / kern.mr, dst: dst, oh: oh, ow: ow}
	for ry := 0; ry < stride; ry++ {
		for rx := 0; rx < stride; rx++ {
			ph := convPhase{ry: ry, rx: rx}
			var ti, tj []int
			for i := (ry + pad) % stride; i < kh; i += stride {
				ti = append(ti, i)
			}
			for j := (rx + pad) % stride; j < kw; j += stride {
				tj = append(tj, j)
			}
			taps := len(ti) * len(tj)
			for _, i := range ti {
				for _, j := range tj {
					ph.dy = append(ph.dy, (ry+pad-i)/stride)
					ph.dx = append(ph.dx, (rx+pad-j)/stride)
				}
			}
			// A (cout, cin*taps): A[co][ci*taps+t] = weight[ci, co, i_t, j_t].
			k := cin * taps
			a := make([]float32, cout*k)
			for co := 0; co < cout; co++ {
				for ci := 0; ci < cin; ci++ {
					t := 0
					for _, i := range ti {
						for _, j := range tj {
							a[co*k+ci*taps+t] = weight[((ci*cout+co)*kh+i)*kw+j]
							t++
						}
					}
				}
			}
			ph.ap = packWeights(kern, a, cout, k, k)
			c.phases = append(c.phases, ph)
		}
	}
	return c
}

// Conv2dInto computes a 2-d cross-correlation, as torch.nn.functional.conv2d
// with groups 1 and dilation 1: x is (n, cin, h, w), weight (cout, cin, kh,
// kw), bias (cout) or nil, dst (n, cout, oh, ow) with oh = (h+2*pad-kh)/stride+1
// and likewise ow. Zero padding.
func Conv2dInto(dst, x []float32, n, cin, h, w int, weight []float32, cout, kh, kw int, bias []float32, stride, pad int) {
	oh, ow := ConvOutSize(h, kh, stride, pad), ConvOutSize(w, kw, stride, pad)
	if oh <= 0 || ow <= 0 || n <= 0 || cout <= 0 {
		return
	}
	c := newConv2d([][]float32{x}, []int{cin}, n, h, w, weight, cout, kh, kw, stride, pad, dst)
	c.epi.bias = bias
	c.run()
}

// ConvTranspose2dInto computes a 2-d transposed convolution, as
// torch.nn.functional.conv_transpose2d with groups 1, dilation 1 and no
// output padding: x is (n, cin, h, w), weight (cin, cout, kh, kw), bias
// (cout) or nil, dst (n, cout, oh, ow) with oh = (h-1)*stride-2*pad+kh and
// likewise ow.
func ConvTranspose2dInto(dst, x []float32, n, cin, h, w int, weight []float32, cout, kh, kw int, bias []float32, stride, pad int) {
	oh, ow := ConvTransposeOutSize(h, kh, stride, pad), ConvTransposeOutSize(w, kw, stride, pad)
	if oh <= 0 || ow <= 0 || n <= 0 || cout <= 0 {
		return
	}
	c := newConvTranspose2d([][]float32{x}, []int{cin}, n, h, w, weight, cout, kh, kw, stride, pad, dst)
	c.epi.bias = bias
	c.run()
}

// convHeadSum computes out (n, 1, h, w) = bias + sum over the taps (i, j)
// of a kh x kw kernel (padding pad) of tapOut[t] shifted: out(y, x) +=
// tapOut[t](y+i-pad, x+j-pad), zero outside; only rows [0, rows) and
// columns [0, cols) of each image are computed.
func convHeadSum(out, tapOut []float32, n, h, w, kh, kw, pad int, bias float32, rows, cols int) {
	taps := kh * kw
	ParallelFor(n*rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			img, y := r/rows, r%rows
			o := out[(img*h+y)*w : (img*h+y)*w+cols]
			for x := range o {
				o[x] = 0
			}
			for i := 0; i < kh; i++ {
				iy := y + i - pad
				if iy < 0 || iy >= h {
					continue
				}
				for j := 0; j < kw; j++ {
					t := i*kw + j
					src := tapOut[((img*taps+t)*h+iy)*w : ((img*taps+t)*h+iy+1)*w]
					dx := j - pad
					lo, hi := max(0, -dx), min(cols, w-dx)
					if hi <= lo {
						continue
					}
					s := src[lo+dx : hi+dx]
					d := o[lo:hi]
					for x, v := range s {
						d[x] += v
					}
				}
			}
			for x := range o {
				o[x] += bias
			}
		}
	})
}

// ConvOptions selects the fused extras of Conv2dFused and
// ConvTranspose2dFused.
type ConvOptions struct {
	Stride, Pad int
	// LeakyReLU applies LeakyReLU(Slope) last.
	LeakyReLU bool
	Slope     float32
	// Residual, when not nil, is added before the activation. It is
	// (N, Cout, OH/ResidualScale, OW/ResidualScale) and is read with
	// nearest upsampling by ResidualScale (1 when 0): the shortcut of a
	// ResNet block that upsamples.
	Residual      *Node
	ResidualScale int
	// Region, when set, limits the outputs computed to its top-left
	// corner (see Region).
	Region Region
}

// Region is the top-left corner of an op's output that is needed: rows [0,
// Rows) and columns [0, Cols); a zero (or larger) side means all of it.
// An op given a region computes every value inside it exactly as it would
// without one, and may leave the values outside it zero or unfinished, so
// a region must cover every output that a later op reads. It lets a graph
// skip the padding around an image that no final output depends on.
type Region struct{ Rows, Cols int }

// limits returns the region's sides clipped to an h x w output.
func (r Region) limits(h, w int) (rows, cols int) {
	rows, cols = h, w
	if r.Rows > 0 {
		rows = min(rows, r.Rows)
	}
	if r.Cols > 0 {
		cols = min(cols, r.Cols)
	}
	return rows, cols
}

// Grow returns r widened by dr rows and dc columns (a side of 0, all,
// stays 0).
func (r Region) Grow(dr, dc int) Region {
	if r.Rows > 0 {
		r.Rows += dr
	}
	if r.Cols > 0 {
		r.Cols += dc
	}
	return r
}

// convInputs checks that xs share batch and spatial size and returns their
// channel counts.
func (g *Graph) convInputs(op string, xs []*Node) (n, h, w int, chans []int, ok bool) {
	if len(xs) == 0 {
		g.fail("%s: no input", op)
		return 0, 0, 0, nil, false
	}
	if !g.ok(xs...) {
		return 0, 0, 0, nil, false
	}
	s0 := shapeOf(xs[0])
	for _, x := range xs {
		s := shapeOf(x)
		if len(s) != 4 || s[0] != s0[0] || s[2] != s0[2] || s[3] != s0[3] {
			g.fail("%s: inputs %v and %v do not stack along channels", op, s0, s)
			return 0, 0, 0, nil, false
		}
		chans = append(chans, s[1])
	}
	return s0[0], s0[2], s0[3], chans, true
}

// convBuild adds a lowered convolution node over the channel concatenation
// of xs.
func (g *Graph) convBuild(name string, transposed bool, xs []*Node, w, b *Node, o ConvOptions) *Node {
	op := "conv2d"
	if transposed {
		op = "convtranspose2d"
	}
	n, h, wd, chans, ok := g.convInputs(op, xs)
	if !ok || !g.ok(w) {
		return nil
	}
	cin := 0
	for _, c := range chans {
		cin += c
	}
	ws := shapeOf(w)
	if len(ws) != 4 {
		return g.fail("%s: weight %v is not 4-d", op, ws)
	}
	wcin, cout := ws[1], ws[0]
	if transposed {
		wcin, cout = ws[0], ws[1]
	}
	kh, kw := ws[2], ws[3]
	if wcin != cin {
		return g.fail("%s: input of %d channels, weight %v", op, cin, ws)
	}
	if o.Stride < 1 || o.Pad < 0 {
		return g.fail("%s: stride %d, padding %d", op, o.Stride, o.Pad)
	}
	if b != nil && prod(shapeOf(b)) != cout {
		return g.fail("%s: bias %v for %d output channels", op, shapeOf(b), cout)
	}
	var oh, ow int
	if transposed {
		oh, ow = ConvTransposeOutSize(h, kh, o.Stride, o.Pad), ConvTransposeOutSize(wd, kw, o.Stride, o.Pad)
	} else {
		oh, ow = ConvOutSize(h, kh, o.Stride, o.Pad), ConvOutSize(wd, kw, o.Stride, o.Pad)
	}
	if oh <= 0 || ow <= 0 {
		return g.fail("%s: input (%d, %d, %d, %d), kernel %dx%d, stride %d, padding %d: empty output", op, n, cin, h, wd, kh, kw, o.Stride, o.Pad)
	}
	rscale := max(o.ResidualScale, 1)
	var rh, rw int
	if o.Residual != nil {
		if !g.ok(o.Residual) {
			return nil
		}
		rs := shapeOf(o.Residual)
		if len(rs) != 4 || rs[0] != n || rs[1] != cout || rs[2]*rscale != oh || rs[3]*rscale != ow {
			return g.fail("%s: residual %v (scale %d) for output (%d, %d, %d, %d)", op, rs, rscale, n, cout, oh, ow)
		}
		rh, rw = rs[2], rs[3]
	}
	ins := append([]*Node{w}, xs...)
	bi, ri := -1, -1
	if b != nil {
		bi = len(ins)
		ins = append(ins, b)
	}
	if o.Residual != nil {
		ri = len(ins)
		ins = append(ins, o.Residual)
	}
	nx := len(xs)
	cache := g.weightCache(w)
	return g.Op(name, []int{n, cout, oh, ow}, func(out []float32, v [][]float32) error {
		srcs := make([][]float32, nx)
		for i := range srcs {
			srcs[i] = v[1+i]
		}
		tmpl := cache.get([][]float32{v[0]}, func() any {
			if transposed {
				return newConvTranspose2d(nil, chans, n, h, wd, v[0], cout, kh, kw, o.Stride, o.Pad, nil)
			}
			return newConv2d(nil, chans, n, h, wd, v[0], cout, kh, kw, o.Stride, o.Pad, nil)
		}).(*convOp)
		c := tmpl.withRows(h, oh, out)
		c.srcs = srcs
		if bi >= 0 {
			c.epi.bias = v[bi]
		}
		if ri >= 0 {
			c.epi.res, c.epi.rh, c.epi.rw, c.epi.rscale = v[ri], rh, rw, rscale
		}
		c.epi.leaky, c.epi.slope = o.LeakyReLU, o.Slope
		rows, cols := o.Region.limits(oh, ow)
		if rows < oh {
			c.oLo, c.oHi = 0, rows
		}
		if cols < ow {
			c.oWi = cols
		}
		c.run()
		return nil
	}, ins...)
}

// Conv2dFused is torch.nn.Conv2d (groups 1, dilation 1, zero padding) over
// the channel concatenation of the NCHW inputs xs (torch.cat(xs, 1), never
// built), with the extras of o fused into its output pass: w is (Cout,
// sum Cin, KH, KW), b (Cout) or nil.
func (g *Graph) Conv2dFused(xs []*Node, w, b *Node, o ConvOptions) *Node {
	return g.convBuild("Conv2dFused", false, xs, w, b, o)
}

// ConvTranspose2dFused is torch.nn.ConvTranspose2d (groups 1, dilation 1, no
// output padding) over the channel concatenation of xs, with the extras of
// o fused: w is (sum Cin, Cout, KH, KW), b (Cout) or nil.
func (g *Graph) ConvTranspose2dFused(xs []*Node, w, b *Node, o ConvOptions) *Node {
	return g.convBuild("ConvTranspose2dFused", true, xs, w, b, o)
}

// Conv2d is torch.nn.Conv2d (groups 1, dilation 1, zero padding) on NCHW x:
// w is (Cout, Cin, KH, KW), b (Cout) or nil.
func (g *Graph) Conv2d(x, w, b *Node, stride, pad int) *Node {
	return g.convBuild("Conv2d", false, []*Node{x}, w, b, ConvOptions{Stride: stride, Pad: pad})
}

// Conv2dLeakyReLU is LeakyReLU(slope)(Conv2d(x, w, b)), the activation
// fused into the convolution's output pass.
func (g *Graph) Conv2dLeakyReLU(x, w, b *Node, stride, pad int, slope float32) *Node {
	return g.convBuild("Conv2dLeakyReLU", false, []*Node{x}, w, b, ConvOptions{Stride: stride, Pad: pad, LeakyReLU: true, Slope: slope})
}

// ConvTranspose2d is torch.nn.ConvTranspose2d (groups 1, dilation 1, no
// output padding) on NCHW x: w is (Cin, Cout, KH, KW), b (Cout) or nil; the
// output side is (H-1)*stride-2*pad+K.
func (g *Graph) ConvTranspose2d(x, w, b *Node, stride, pad int) *Node {
	return g.convBuild("ConvTranspose2d", true, []*Node{x}, w, b, ConvOptions{Stride: stride, Pad: pad})
}

// ConvTranspose2dLeakyReLU is LeakyReLU(slope)(ConvTranspose2d(x, w, b)).
func (g *Graph) ConvTranspose2dLeakyReLU(x, w, b *Node, stride, pad int, slope float32) *Node {
	return g.convBuild("ConvTranspose2dLeakyReLU", true, []*Node{x}, w, b, ConvOptions{Stride: stride, Pad: pad, LeakyReLU: true, Slope: slope})
}

// Conv2dHead is Conv2d(w2, b2)(LeakyReLU(slope)(Conv2d(x, w1, b1))) for a
// second convolution with one output channel, both with stride 1 and
// padding pad that keep the size (KH = KW = 2*pad+1): x (N, Cin, H, W), w1
// (C, Cin, K, K), b1 (C) or nil, w2 (1, C, K, K), b2 (1) -> (N, 1, H, W). The
// C-channel activation is never stored: each block of it is reduced in
// cache to its K*K per-tap products with w2 (a small GEMM), and the
// shifted tap planes are summed.
//
// Only the region r of the output is computed (the zero Region: all).
func (g *Graph) Conv2dHead(x, w1, b1, w2, b2 *Node, pad int, slope float32, r Region) *Node {
	if !g.ok(x, w1, w2, b2) {
		return nil
	}
	xs, w1s, w2s := shapeOf(x), shapeOf(w1), shapeOf(w2)
	if len(xs) != 4 || len(w1s) != 4 || len(w2s) != 4 || w1s[1] != xs[1] || w2s[0] != 1 || w2s[1] != w1s[0] ||
		w1s[2] != 2*pad+1 || w1s[3] != 2*pad+1 || w2s[2] != 2*pad+1 || w2s[3] != 2*pad+1 || prod(shapeOf(b2)) != 1 {
		return g.fail("conv2d head: input %v, weights %v and %v, padding %d", xs, w1s, w2s, pad)
	}
	if b1 != nil && (!g.ok(b1) || prod(shapeOf(b1)) != w1s[0]) {
		return g.fail("conv2d head: bias %v for %d channels", shapeOf(b1), w1s[0])
	}
	n, cin, h, w := xs[0], xs[1], xs[2], xs[3]
	c, k := w1s[0], w1s[2]
	ins := []*Node{x, w1, w2, b2}
	if b1 != nil {
		ins = append(ins, b1)
	}
	cache := g.weightCache(w1, w2)
	return g.Op("Conv2dHead", []int{n, 1, h, w}, func(out []float32, v [][]float32) error {
		taps := k * k
		tapOut := pool.get(n * taps * h * w)
		defer pool.put(tapOut)
		tmpl := cache.get([][]float32{v[1], v[2]}, func() any {
			op := newConv2d(nil, []int{cin}, n, h, w, v[1], c, k, k, 1, pad, nil)
			op.epi.head = newConvHead(v[2], c, taps)
			return op
		}).(*convOp)
		op := tmpl.withRows(h, h, nil)
		op.srcs = [][]float32{v[0]}
		if len(v) == 5 {
			op.epi.bias = v[4]
		}
		op.epi.leaky, op.epi.slope = true, slope
		op.epi.headTapOut = tapOut
		rows, cols := r.limits(h, w)
		if rows < h {
			op.oHi = rows + pad // the taps reach pad rows further
		}
		if cols < w {
			op.oWi = cols + pad
		}
		op.run()
		convHeadSum(out, tapOut, n, h, w, k, k, pad, v[3][0], rows, cols)
		return nil
	}, ins...)
}

// newConvHead packs a head weight w2 (1, c, K, K) as a (taps, c) matrix:
// row t holds w2[0, :, t].
func newConvHead(w2 []float32, c, taps int) *convHead {
	hk := pickKernel(taps)
	a := make([]float32, taps*c)
	for t := 0; t < taps; t++ {
		for ci := 0; ci < c; ci++ {
			a[t*c+ci] = w2[ci*taps+t]
		}
	}
	return &convHead{kern: hk, taps: taps, ap: packHead(hk, a, taps, c)}
}

// packHead packs a (m, k) matrix into A panels of full depth k (no K
// blocking: the head's depth is the first convolution's channel count).
func packHead(kern *gemmKernel, a []float32, m, k int) []float32 {
	mr := kern.mr
	mp := (m + mr - 1) / mr
	ap := make([]float32, mp*mr*k)
	for ip := 0; ip < mp; ip++ {
		rs := min(mr, m-ip*mr)
		dst := ap[ip*k*mr:]
		for p := 0; p < k; p++ {
			for i := 0; i < rs; i++ {
				dst[p*mr+i] = a[(ip*mr+i)*k+p]
			}
		}
	}
	return ap
}

// 3x3 convolutions with stride 1 and padding 1 run as Winograd F(2x2, 3x3)
// (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks"): each
// 2x2 block of outputs comes from a 4x4 input tile d and a filter g as
// A^T [(G g G^T) .* (B^T d B)] A, so that the per-channel products become
// 16 matrix products (one per element xi of the 4x4 transformed tile) of
// the transformed filters U_xi (Cout, Cin) by the transformed tiles V_xi
// (Cin, tiles): 16 multiplies per 4 outputs instead of 36. The transforms
// only add and subtract (the weights' halves are exact), so the results
// match the direct convolution to float32 rounding.
//
//	B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//	G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//	A^T = [1 1 1 0; 0 1 -1 -1]

// convWinograd enables the Winograd path (tests turn it off to compare).
var convWinograd = true

// winogradWeights returns U_xi = (G g G^T)[xi] for every (co, ci) filter of
// weight (cout, cin, 3, 3), packed as A panels: xi's matrix at
// xi*mPadded*cin.
func winogradWeights(kern *gemmKernel, weight []float32, cout, cin int) []float32 {
	u := make([]float32, 16*cout*cin) // u[xi][co][ci]
	for co := 0; co < cout; co++ {
		for ci := 0; ci < cin; ci++ {
			g := weight[(co*cin+ci)*9 : (co*cin+ci)*9+9]
			var gg [4][3]float64 // G g
			for j := 0; j < 3; j++ {
				g0, g1, g2 := float64(g[j]), float64(g[3+j]), float64(g[6+j])
				gg[0][j], gg[1][j], gg[2][j], gg[3][j] = g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2
			}
			for a := 0; a < 4; a++ {
				r0, r1, r2 := gg[a][0], gg[a][1], gg[a][2]
				row := [4]float64{r0, (r0 + r1 + r2) / 2, (r0 - r1 + r2) / 2, r2} // (G g) G^T
				for b, v := range row {
					u[((a*4+b)*cout+co)*cin+ci] = float32(v)
				}
			}
		}
	}
	mp := (cout + kern.mr - 1) / kern.mr * kern.mr
	out := make([]float32, 16*mp*cin)
	for xi := 0; xi < 16; xi++ {
		copy(out[xi*mp*cin:], packWeights(kern, u[xi*cout*cin:(xi+1)*cout*cin], cout, cin, cin))
	}
	return out
}

// winogradTiles returns how many 2x2 output tiles a unit takes along a
// row: whole panels, sized so that the unit's transformed tiles and
// accumulators (16 of each) stay within about 384 KiB.
func (c *convOp) winogradTiles() int {
	nr := c.kern.nr
	mp := c.mPanels * c.kern.mr
	panels := max(1, min(convBlockPanels, (96<<10)/(16*(c.cin+mp)*nr)))
	return panels * nr
}

// runWinograd computes the convolution by units of one row of tiles (two
// output rows) and a run of tiles along it.
func (c *convOp) runWinograd() {
	th, tw := (c.oh+1)/2, c.gridCols(2, (c.ow+1)/2)
	t0, t1 := c.gridRows(2, th)
	c.runGrid(t0, t1, tw, c.winogradTiles(), c.winogradUnit)
}

// winogradUnit computes the tiles (ty, tx0..tx0+ntv) of image img; nt (a
// multiple of nr, >= ntv) is the padded tile count.
func (c *convOp) winogradUnit(s *convScratch, img, ty, tx0, ntv, nt int) {
	kern := c.kern
	mr, nr := kern.mr, kern.nr
	mp := c.mPanels * mr
	cin, h, w := c.cin, c.h, c.w
	panels := nt / nr
	kb := kBlock(cin)
	if cap(s.chans) < cin {
		s.chans = make([][]float32, cin)
	}
	chans := s.chans[:cin]
	c.planes(chans, img)
	// Input transform: V = B^T d B for every channel and tile, written as
	// B panels: xi's matrix at xi*cin*nt, depth block c0 at c0*nt, panel
	// jr at jr*kc*nr, then channel-major lanes.
	xs := winogradStride(cin * nt) // floats between two xi's matrices
	s.bp = grow(s.bp, 16*xs)
	bp := s.bp
	cols := 2*nt + 2 // input columns 2*tx0-1 .. 2*(tx0+nt)
	s.vt = grow(s.vt, 4*cols)
	t0, t1, t2, t3 := s.vt[:cols], s.vt[cols:2*cols], s.vt[2*cols:3*cols], s.vt[3*cols:4*cols]
	ix0 := 2*tx0 - 1
	lo, hi := max(0, -ix0), min(cols, w-ix0) // columns inside the image
	iy0 := 2*ty - 1
	for ci := 0; ci < cin; ci++ {
		plane := chans[ci]
		var rows [4][]float32
		for r := range rows {
			if iy := iy0 + r; iy >= 0 && iy < h {
				rows[r] = plane[iy*w+ix0+lo : iy*w+ix0+hi]
			}
		}
		e := max(hi, lo)
		clear(t0[:lo])
		clear(t1[:lo])
		clear(t2[:lo])
		clear(t3[:lo])
		clear(t0[e:])
		clear(t1[e:])
		clear(t2[e:])
		clear(t3[e:])
		if hi > lo {
			l := lo
			if winoAsm {
				l += winoColumns(s.vt[lo:], cols, rows, hi-lo)
				for r := range rows {
					if rows[r] != nil {
						rows[r] = rows[r][l-lo:]
					}
				}
			}
			if hi > l {
				winogradColumns(t0[l:hi], t1[l:hi], t2[l:hi], t3[l:hi], rows)
			}
		}
		c0 := ci / kb * kb
		kc := min(kb, cin-c0)
		base := c0*nt + (ci-c0)*nr
		if winoAsm && nr%16 == 0 {
			for jr := 0; jr < panels; jr++ {
				winoInput(s.vt[2*jr*nr:], cols, bp[base+jr*kc*nr:], xs, nr)
			}
			continue
		}
		for jr := 0; jr < panels; jr++ {
			o := base + jr*kc*nr
			for l := 0; l < nr; l++ {
				q := 2 * (jr*nr + l)
				d := bp[o+l : o+l+15*xs+1]
				// B^T d B: t_a holds row a of B^T d; each row times B.
				x0, x1, x2, x3 := t0[q], t0[q+1], t0[q+2], t0[q+3]
				d[0], d[xs], d[2*xs], d[3*xs] = x0-x2, x1+x2, x2-x1, x1-x3
				x0, x1, x2, x3 = t1[q], t1[q+1], t1[q+2], t1[q+3]
				d[4*xs], d[5*xs], d[6*xs], d[7*xs] = x0-x2, x1+x2, x2-x1, x1-x3
				x0, x1, x2, x3 = t2[q], t2[q+1], t2[q+2], t2[q+3]
				d[8*xs], d[9*xs], d[10*xs], d[11*xs] = x0-x2, x1+x2, x2-x1, x1-x3
				x0, x1, x2, x3 = t3[q], t3[q+1], t3[q+2], t3[q+3]
				d[12*xs], d[13*xs], d[14*xs], d[15*xs] = x0-x2, x1+x2, x2-x1, x1-x3
			}
		}
	}
	// The 16 products M_xi (Cout, nt) = U_xi @ V_xi.
	ms := winogradStride(mp * nt) // floats between two xi's products
	s.acc = grow(s.acc, 16*ms)
	acc := s.acc
	for xi := 0; xi < 16; xi++ {
		u := c.wino[xi*mp*cin:]
		b := bp[xi*xs:]
		m := acc[xi*ms:]
		for c0 := 0; c0 < cin; c0 += kb {
			kc := min(kb, cin-c0)
			beta := float32(1)
			if c0 == 0 {
				beta = 0
			}
			for jr := 0; jr < panels; jr++ {
				bpan := b[c0*nt+jr*kc*nr : c0*nt+(jr+1)*kc*nr]
				for ip := 0; ip < c.mPanels; ip++ {
					kern.fn(kc, u[mp*c0+ip*kc*mr:mp*c0+(ip+1)*kc*mr], bpan, m[ip*mr*nt+jr*nr:], nt, 1, beta)
				}
			}
		}
	}
	// Output transform: Y = A^T M A, two output rows of 2*ntv pixels.
	ob := 2 * nt
	s.obuf = grow(s.obuf, 2*c.m*ob)
	out0, out1 := s.obuf[:c.m*ob], s.obuf[c.m*ob:]
	for co := 0; co < c.m; co++ {
		if winoAsm && nt%16 == 0 {
			winoOutput(acc[co*nt:], ms, out0[co*ob:], out1[co*ob:], nt)
			continue
		}
		r0, r1 := out0[co*ob:co*ob+2*ntv], out1[co*ob:co*ob+2*ntv]
		mc := acc[co*nt:]
		for j := 0; j < ntv; j++ {
			m := mc[j : j+15*ms+1]
			// A^T M: rows s0 = m0+m1+m2, s1 = m1-m2-m3 (of the 4x4 M), then A.
			a0, a1, a2, a3 := m[0], m[ms], m[2*ms], m[3*ms]
			b0, b1, b2, b3 := m[4*ms], m[5*ms], m[6*ms], m[7*ms]
			c0, c1, c2, c3 := m[8*ms], m[9*ms], m[10*ms], m[11*ms]
			d0, d1, d2, d3 := m[12*ms], m[13*ms], m[14*ms], m[15*ms]
			s00, s01, s02, s03 := a0+b0+c0, a1+b1+c1, a2+b2+c2, a3+b3+c3
			s10, s11, s12, s13 := b0-c0-d0, b1-c1-d1, b2-c2-d2, b3-c3-d3
			r0[2*j], r0[2*j+1] = s00+s01+s02, s01-s02-s03
			r1[2*j], r1[2*j+1] = s10+s11+s12, s11-s12-s13
		}
	}
	ox := 2 * tx0
	n := min(2*ntv, c.ow-ox)
	for r, o := range [2][]float32{out0, out1} {
		oy := 2*ty + r
		if oy >= c.oh {
			break
		}
		if c.epi.head != nil {
			c.headUnit(s, o, ob, img, oy*c.ow+ox, n)
			continue
		}
		c.store(o, ob, img, oy, ox, n)
	}
}

// winogradStride pads a matrix size n so that consecutive matrices start an
// odd number of cache lines apart: the 16 transformed values of a tile go
// to 16 matrices, which would otherwise share a few cache sets.
func winogradStride(n int) int {
	n = (n + 15) / 16 * 16
	if (n/16)%2 == 0 {
		n += 16
	}
	return n
}

// winogradColumns applies B^T down the columns of four input rows (a nil
// row is zero): t0 = d0-d2, t1 = d1+d2, t2 = d2-d1, t3 = d1-d3.
func winogradColumns(t0, t1, t2, t3 []float32, rows [4][]float32) {
	n := len(t0)
	t1, t2, t3 = t1[:n], t2[:n], t3[:n]
	if rows[0] != nil && rows[1] != nil && rows[2] != nil && rows[3] != nil {
		d0, d1, d2, d3 := rows[0][:n], rows[1][:n], rows[2][:n], rows[3][:n]
		for x := range t0 {
			a, b, c, d := d0[x], d1[x], d2[x], d3[x]
			t0[x], t1[x], t2[x], t3[x] = a-c, b+c, c-b, b-d
		}
		return
	}
	var zero []float32
	var d [4][]float32
	for r := range d {
		d[r] = rows[r]
		if d[r] == nil {
			if zero == nil {
				zero = t3[:n] // zero rows read as t3 before t3 is written
				clear(zero)
			}
			d[r] = zero
		}
		d[r] = d[r][:n]
	}
	for x := range t0 {
		a, b, c, e := d[0][x], d[1][x], d[2][x], d[3][x]
		t0[x], t1[x], t2[x], t3[x] = a-c, b+c, c-b, b-e
	}
}

// convHeadBand is how many output rows ConvTranspose2dHead makes at a time.
var convHeadBand = 128

// ConvTranspose2dHead is Conv2dHead(LeakyReLU(slope)(ConvTranspose2d(x,
// wt, bt, stride, pad)), w1, b1, w2, b2, hpad, slope): a transposed
// convolution whose activated output feeds straight into a Conv2dHead (M2M's
// conv1 and refine_OS1). x is (N, Cin, H, W), wt (Cin, C, K, K) with K >=
// pad+stride, bt (C) or nil, w1 (C1, C, 2*hpad+1, 2*hpad+1), b1 (C1) or
// nil, w2 (1, C1, ...), b2 (1) -> (N, 1, OH, OW). The upsampled C-channel
// image is never stored whole: it is made by bands of rows (with the
// halo of rows the head needs), each reduced to the head's output at once.
//
// Only the region r of the output is computed (the zero Region: all).
func (g *Graph) ConvTranspose2dHead(x, wt, bt, w1, b1, w2, b2 *Node, stride, pad, hpad int, slope float32, r Region) *Node {
	if !g.ok(x, wt, w1, w2, b2) {
		return nil
	}
	xs, ws, w1s, w2s := shapeOf(x), shapeOf(wt), shapeOf(w1), shapeOf(w2)
	hk := 2*hpad + 1
	if len(xs) != 4 || len(ws) != 4 || ws[0] != xs[1] || ws[2] != ws[3] || stride < 1 || pad < 0 || ws[2] < pad+stride {
		return g.fail("convtranspose2d head: input %v, weight %v, stride %d, padding %d", xs, ws, stride, pad)
	}
	if len(w1s) != 4 || len(w2s) != 4 || w1s[1] != ws[1] || w1s[2] != hk || w1s[3] != hk ||
		w2s[0] != 1 || w2s[1] != w1s[0] || w2s[2] != hk || w2s[3] != hk || prod(shapeOf(b2)) != 1 {
		return g.fail("convtranspose2d head: weights %v, %v and %v, head padding %d", ws, w1s, w2s, hpad)
	}
	if bt != nil && (!g.ok(bt) || prod(shapeOf(bt)) != ws[1]) {
		return g.fail("convtranspose2d head: bias %v for %d channels", shapeOf(bt), ws[1])
	}
	if b1 != nil && (!g.ok(b1) || prod(shapeOf(b1)) != w1s[0]) {
		return g.fail("convtranspose2d head: bias %v for %d channels", shapeOf(b1), w1s[0])
	}
	n, cin, h, w := xs[0], xs[1], xs[2], xs[3]
	c, k, cmid := ws[1], ws[2], w1s[0]
	oh, ow := ConvTransposeOutSize(h, k, stride, pad), ConvTransposeOutSize(w, k, stride, pad)
	if oh <= 0 || ow <= 0 {
		return g.fail("convtranspose2d head: input %v, kernel %d, stride %d, padding %d: empty output", xs, k, stride, pad)
	}
	ins := []*Node{x, wt, w1, w2, b2}
	bti, b1i := -1, -1
	if bt != nil {
		bti = len(ins)
		ins = append(ins, bt)
	}
	if b1 != nil {
		b1i = len(ins)
		ins = append(ins, b1)
	}
	cache := g.weightCache(wt, w1, w2)
	type plan struct{ t, hc *convOp }
	return g.Op("ConvTranspose2dHead", []int{n, 1, oh, ow}, func(o []float32, v [][]float32) error {
		var btv, b1v []float32
		if bti >= 0 {
			btv = v[bti]
		}
		if b1i >= 0 {
			b1v = v[b1i]
		}
		p := cache.get([][]float32{v[1], v[2], v[3]}, func() any {
			hc := newConv2d(nil, []int{c}, 1, oh, ow, v[2], cmid, hk, hk, 1, hpad, nil)
			hc.epi.head = newConvHead(v[3], cmid, hk*hk)
			return plan{newConvTranspose2d(nil, []int{cin}, 1, h, w, v[1], c, k, k, stride, pad, nil), hc}
		}).(plan)
		rows, cols := r.limits(oh, ow)
		convTransposeHead(o, v[0], n, cin, h, w, p.t, c, k, btv, stride, pad, p.hc, cmid, hpad, b1v, v[4][0], slope, rows, cols)
		return nil
	}, ins...)
}

// convTransposeHead computes ConvTranspose2dHead by bands of output rows
// [r0, r1): the head's first convolution is needed on rows [a, b) = [r0,
// r1) widened by hpad, which needs the transposed convolution's rows [y0,
// y1) = [a, b) widened by hpad, which come from input rows [x0, x1). The
// transposed convolution of input rows [x0, x1) alone is exact on rows
// [y0, y1) (every input row they take is inside, or outside the image),
// and so is the head on [a, b).
//
// tOp is the transposed convolution lowered for one image (any number of
// rows: each band gets a copy), hOp the head's first convolution with its
// head, likewise. Only output rows [0, orows) and columns [0, ocols) are
// computed; the columns the head needs are [0, ocols+hpad) of its first
// convolution, which needs [0, ocols+2*hpad) of the transposed one.
func convTransposeHead(out, x []float32, n, cin, h, w int, tOp *convOp, c, k int, bt []float32, stride, pad int,
	hOp *convOp, cmid, hpad int, b1 []float32, b2, slope float32, orows, ocols int) {
	oh, ow := ConvTransposeOutSize(h, k, stride, pad), ConvTransposeOutSize(w, k, stride, pad)
	hk := 2*hpad + 1
	taps := hk * hk
	band := max(1, min(convHeadBand, oh))
	// Rows of a band's buffers: the transposed convolution's output for
	// the band's input rows.
	maxRows := 0
	type plan struct{ r0, r1, a, b, y0, y1, x0, x1 int }
	var plans []plan
	for r0 := 0; r0 < orows; r0 += band {
		r1 := min(r0+band, orows)
		a, b := max(r0-hpad, 0), min(r1+hpad, oh)
		y0, y1 := max(a-hpad, 0), min(b+hpad, oh)
		x0 := max(ceilDiv(y0+pad-k+1, stride), 0)
		x1 := min(floorDiv(y1-1+pad, stride)+1, h)
		plans = append(plans, plan{r0, r1, a, b, y0, y1, x0, x1})
		maxRows = max(maxRows, ConvTransposeOutSize(x1-x0, k, stride, pad))
	}
	ybuf := pool.get(c * maxRows * ow)
	defer pool.put(ybuf)
	tap := pool.get(taps * maxRows * ow)
	defer pool.put(tap)
	for img := 0; img < n; img++ {
		xi := x[img*cin*h*w : (img+1)*cin*h*w]
		oi := out[img*oh*ow : (img+1)*oh*ow]
		for _, p := range plans {
			rows := ConvTransposeOutSize(p.x1-p.x0, k, stride, pad) // band row i is output row i+off
			off := p.x0 * stride
			t := tOp.withRows(p.x1-p.x0, rows, ybuf[:c*rows*ow])
			t.srcs = [][]float32{xi}
			t.rowOff, t.pstride = p.x0, h*w
			t.oLo, t.oHi = p.y0-off, p.y1-off
			t.epi.bias, t.epi.leaky, t.epi.slope = bt, true, slope
			if ocols < ow {
				t.oWi = ocols + 2*hpad
			}
			t.run()
			hc := hOp.withRows(rows, rows, nil)
			hc.srcs = [][]float32{ybuf[:c*rows*ow]}
			hc.oLo, hc.oHi = p.a-off, p.b-off
			hc.epi.bias, hc.epi.leaky, hc.epi.slope = b1, true, slope
			hc.epi.headTapOut = tap[:taps*rows*ow]
			if ocols < ow {
				hc.oWi = ocols + hpad
			}
			hc.run()
			// out(r, x) = b2 + sum of tap[(i, j)](r+i-hpad, x+j-hpad) over rows
			// inside the image.
			ParallelFor(p.r1-p.r0, func(lo, hi int) {
				for r := p.r0 + lo; r < p.r0+hi; r++ {
					o := oi[r*ow : r*ow+ocols]
					clear(o)
					for i := 0; i < hk; i++ {
						iy := r + i - hpad
						if iy < 0 || iy >= oh {
							continue
						}
						for j := 0; j < hk; j++ {
							src := tap[((i*hk+j)*rows+iy-off)*ow : ((i*hk+j)*rows+iy-off+1)*ow]
							dx := j - hpad
							xlo, xhi := max(0, -dx), min(ocols, ow-dx)
							if xhi <= xlo {
								continue
							}
							s, d := src[xlo+dx:xhi+dx], o[xlo:xhi]
							for q, v := range s {
								d[q] += v
							}
						}
					}
					for q := range o {
						o[q] += b2
					}
				}
			})
		}
	}
}

func ceilDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a > 0) == (b > 0) {
		q++
	}
	return q
}

func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// onWorkers runs work on min(GOMAXPROCS, units) goroutines, the caller's
// included, and waits for all; work pulls its units from a shared counter.
func onWorkers(units int, work func()) {
	workers := min(runtime.GOMAXPROCS(0), units)
	var wg sync.WaitGroup
	for i := 1; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}
