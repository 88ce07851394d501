package nn

// Convolution heads: a convolution, LeakyReLU, and a second convolution to
// one channel, fused so that the wide activation is never stored (MAM's
// refine_OSk heads, and the transposed convolution before refine_OS1).

// convHead is a second, single-output-channel convolution applied to the
// activated outputs of the first: per pixel, the products with each of its
// taps (a taps x cout GEMM) go to headTapOut, and convHeadSum adds the
// shifted tap planes.
type convHead struct {
	kern *gemmKernel
	taps int
	ap   []float32 // packed (taps, cout) weight, full depth
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
