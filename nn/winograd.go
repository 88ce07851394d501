package nn

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
