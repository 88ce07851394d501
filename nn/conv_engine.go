package nn

import (
	"math"
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

// newConvOp returns the parts of a lowered convolution that do not depend
// on how it is lowered: inputs, output and micro-kernel.
func newConvOp(srcs [][]float32, srcC []int, n, h, w, cout, oh, ow int, dst []float32) *convOp {
	cin := 0
	for _, c := range srcC {
		cin += c
	}
	kern := pickKernel(cout)
	return &convOp{kern: kern, n: n, srcs: srcs, srcC: srcC, cin: cin, h: h, w: w,
		m: cout, mPanels: (cout + kern.mr - 1) / kern.mr, dst: dst, oh: oh, ow: ow}
}

// newConv2d lowers a convolution (stride, zero padding) over the channel
// concatenation of srcs to one implicit GEMM phase.
func newConv2d(srcs [][]float32, srcC []int, n, h, w int, weight []float32, cout, kh, kw, stride, pad int, dst []float32) *convOp {
	c := newConvOp(srcs, srcC, n, h, w, cout, ConvOutSize(h, kh, stride, pad), ConvOutSize(w, kw, stride, pad), dst)
	c.stride, c.step, c.gh, c.gw = stride, 1, c.oh, c.ow
	kern, cin := c.kern, c.cin
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
	c := newConvOp(srcs, srcC, n, h, w, cout, ConvTransposeOutSize(h, kh, stride, pad), ConvTransposeOutSize(w, kw, stride, pad), dst)
	c.stride, c.step, c.gh, c.gw = 1, stride, ceilDiv(c.oh, stride), ceilDiv(c.ow, stride)
	kern, cin := c.kern, c.cin
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
	if ConvOutSize(h, kh, stride, pad) > 0 && ConvOutSize(w, kw, stride, pad) > 0 && n > 0 && cout > 0 {
		runConv(newConv2d([][]float32{x}, []int{cin}, n, h, w, weight, cout, kh, kw, stride, pad, dst), bias)
	}
}

// ConvTranspose2dInto computes a 2-d transposed convolution, as
// torch.nn.functional.conv_transpose2d with groups 1, dilation 1 and no
// output padding: x is (n, cin, h, w), weight (cin, cout, kh, kw), bias
// (cout) or nil, dst (n, cout, oh, ow) with oh = (h-1)*stride-2*pad+kh and
// likewise ow.
func ConvTranspose2dInto(dst, x []float32, n, cin, h, w int, weight []float32, cout, kh, kw int, bias []float32, stride, pad int) {
	if ConvTransposeOutSize(h, kh, stride, pad) > 0 && ConvTransposeOutSize(w, kw, stride, pad) > 0 && n > 0 && cout > 0 {
		runConv(newConvTranspose2d([][]float32{x}, []int{cin}, n, h, w, weight, cout, kh, kw, stride, pad, dst), bias)
	}
}

// runConv runs c with a bias.
func runConv(c *convOp, bias []float32) {
	c.epi.bias = bias
	c.run()
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
