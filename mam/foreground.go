package mam

import (
	"fmt"
	"image"
	"math"
	"runtime"
	"sync/atomic"

	"github.com/mam-go/mam-go/sam"
)

// This file estimates the foreground colours of a matted image with the
// multi-level method of Germer et al. 2020 ("Fast multi-level foreground
// estimation"), computing what pymatting's estimate_foreground_ml computes:
// the same level sizes, nearest-neighbour resizing between levels, float32
// planes with its float64 intermediates, and Gauss-Seidel sweeps in
// row-major order. A cutout or composite made with the estimate shows the
// object's own colour in hair and soft edges instead of a mix with the old
// background.

// ForegroundOptions are the parameters of the foreground estimation, named
// after pymatting's estimate_foreground_ml; DefaultForegroundOptions gives
// its defaults.
type ForegroundOptions struct {
	// Regularization (epsilon, > 0) pulls each colour towards its
	// neighbours'; higher values give smoother colours.
	Regularization float32
	// SmallIterations is the number of sweeps on levels whose width and
	// height are both at most SmallSize; BigIterations on the larger ones.
	SmallIterations, BigIterations int
	SmallSize                      int
	// GradientWeight (>= 0) weighs the alpha gradient in the smoothness
	// term: larger values give smoother foregrounds.
	GradientWeight float32
}

// DefaultForegroundOptions returns pymatting's defaults: regularization
// 1e-5, 10 iterations on levels up to 32x32 pixels and 2 on larger ones,
// gradient weight 1.
func DefaultForegroundOptions() ForegroundOptions {
	return ForegroundOptions{Regularization: 1e-5, SmallIterations: 10, BigIterations: 2, SmallSize: 32, GradientWeight: 1}
}

// maxForegroundIterations bounds the sweeps per level, so that options
// from untrusted input cannot make the estimation run for hours.
const maxForegroundIterations = 1000

func (o ForegroundOptions) validate() error {
	r, g := float64(o.Regularization), float64(o.GradientWeight)
	switch {
	case !(r > 0) || math.IsInf(r, 0):
		return fmt.Errorf("mam: %w: foreground: regularization %v: want a finite value > 0", ErrInvalidInput, o.Regularization)
	case !(g >= 0) || math.IsInf(g, 0):
		return fmt.Errorf("mam: %w: foreground: gradient weight %v: want a finite value >= 0", ErrInvalidInput, o.GradientWeight)
	case o.SmallIterations < 0 || o.BigIterations < 0 || o.SmallIterations > maxForegroundIterations || o.BigIterations > maxForegroundIterations:
		return fmt.Errorf("mam: %w: foreground: iterations %d and %d: want 0 to %d", ErrInvalidInput, o.SmallIterations, o.BigIterations, maxForegroundIterations)
	case o.SmallSize < 0:
		return fmt.Errorf("mam: %w: foreground: small size %d: want >= 0", ErrInvalidInput, o.SmallSize)
	}
	return nil
}

// EstimateForeground estimates the foreground colours of an image given its
// alpha matte, as pymatting's estimate_foreground_ml(image, alpha) does.
// img holds h*w*3 colours in [0, 1] (row-major, R G B per pixel, numpy's
// HxWx3 layout), alpha h*w values in [0, 1]. The result has img's layout.
func EstimateForeground(img, alpha []float32, w, h int, o ForegroundOptions) ([]float32, error) {
	if err := checkPlanes(len(img), len(alpha), w, h); err != nil {
		return nil, err
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	out := make([]float32, len(img))
	estimateForeground(fgImageF32{pix: img, w: w}, alpha, w, h, o, func(y int, fb []float32) {
		fgCopyF(out[3*w*y:3*w*(y+1)], fb)
	})
	return out, nil
}

func checkPlanes(nimg, nalpha, w, h int) error {
	if w <= 0 || h <= 0 || w > math.MaxInt32/h/3 {
		return fmt.Errorf("mam: %w: foreground: image size %dx%d", ErrInvalidInput, w, h)
	}
	if nimg != w*h*3 || nalpha != w*h {
		return fmt.Errorf("mam: foreground: %d colour values and %d alpha values for a %dx%d image, want %d and %d: %w",
			nimg, nalpha, w, h, w*h*3, w*h, ErrInvalidInput)
	}
	return nil
}

// Foreground estimates the foreground colours of img (the image the result
// was matted from) with DefaultForegroundOptions, or the options given:
// h*w*3 values in [0, 1], row-major, R G B per pixel. img's 8-bit values v
// are taken as v/255. Cutout and Composite use it unless WithPlainColors is
// given.
func (r *Result) Foreground(img image.Image, opts ...OutputOption) ([]float32, error) {
	oc := newOutputConfig(opts)
	if err := r.check(); err != nil {
		return nil, err
	}
	if err := oc.fg.validate(); err != nil {
		return nil, err
	}
	rgb, err := r.rgbOf(img)
	if err != nil {
		return nil, err
	}
	w := r.Width
	out := make([]float32, w*r.Height*3)
	r.foregroundRows(rgb, oc.fg, func(y int, fb []float32) { fgCopyF(out[3*w*y:3*w*(y+1)], fb) })
	return out, nil
}

// fgCopyF copies the foreground colours of an emitted row (8 values per
// pixel) to dst (3 per pixel).
func fgCopyF(dst, fb []float32) {
	for x := 0; x < len(dst)/3; x++ {
		dst[3*x], dst[3*x+1], dst[3*x+2] = fb[8*x], fb[8*x+1], fb[8*x+2]
	}
}

// foregroundRows estimates the foreground of an 8-bit image and hands its
// rows, in order, to emit (8 values per pixel, the foreground's R, G, B in
// [0, 1] first; emit must not keep the slice).
func (r *Result) foregroundRows(rgb *sam.RGB, o ForegroundOptions, emit func(y int, F []float32)) {
	im := fgImageU8{pix: rgb.Pix, w: rgb.W}
	for i := range im.lut {
		im.lut[i] = float32(float64(i) / 255)
	}
	estimateForeground(&im, r.Alpha, r.Width, r.Height, o, emit)
}

// fgImage gives the estimator rows of the input image: the colours of row
// y at columns xs (every column when xs is nil), 4 values per pixel (R, G,
// B, 0).
type fgImage interface {
	row(y int, xs []int, dst []float32)
}

type fgImageF32 struct {
	pix []float32
	w   int
}

func (m fgImageF32) row(y int, xs []int, dst []float32) {
	src := m.pix[3*m.w*y : 3*m.w*(y+1)]
	if xs == nil {
		for x := 0; x < m.w; x++ {
			d := dst[4*x : 4*x+4]
			d[0], d[1], d[2], d[3] = src[3*x], src[3*x+1], src[3*x+2], 0
		}
		return
	}
	for x, sx := range xs {
		d := dst[4*x : 4*x+4]
		d[0], d[1], d[2], d[3] = src[3*sx], src[3*sx+1], src[3*sx+2], 0
	}
}

// fgImageU8 reads 8-bit colours as float32(v/255), the values pymatting
// gets from an image divided by 255.
type fgImageU8 struct {
	pix []uint8
	w   int
	lut [256]float32
}

func (m *fgImageU8) row(y int, xs []int, dst []float32) {
	src := m.pix[3*m.w*y : 3*m.w*(y+1)]
	if xs == nil {
		for x := 0; x < m.w; x++ {
			d := dst[4*x : 4*x+4]
			d[0], d[1], d[2], d[3] = m.lut[src[3*x]], m.lut[src[3*x+1]], m.lut[src[3*x+2]], 0
		}
		return
	}
	for x, sx := range xs {
		d := dst[4*x : 4*x+4]
		d[0], d[1], d[2], d[3] = m.lut[src[3*sx]], m.lut[src[3*sx+1]], m.lut[src[3*sx+2]], 0
	}
}

// nearestIndex is pymatting's nearest-neighbour source index for each of
// n outputs from size inputs: min(size-1, i*size/n).
func nearestIndex(n, size int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = min(size-1, i*size/n)
	}
	return xs
}

// estimateForeground runs the multi-level estimation over the three
// channels at once (they do not interact: each channel's values are
// computed in pymatting's order) and emits the finest level's rows in
// order: 8 values per pixel, the foreground's R, G, B, 0 then the
// background's. Every level but the finest keeps its F and B planes, for
// the next level to start from; the finest level runs in a window of rows
// (see fgPass), so its planes are never held whole.
func estimateForeground(img fgImage, alpha []float32, w0, h0 int, o ForegroundOptions, emit func(y int, F []float32)) {
	n := 0
	if m := max(w0, h0); m > 1 {
		n = int(math.Ceil(math.Log2(float64(m))))
	}
	// Mean colours of the sure foreground and background, summed in
	// float32 in row-major order as pymatting does.
	var fSum, bSum [3]float32
	fCount, bCount := 0, 0
	row := make([]float32, 4*w0)
	for y := 0; y < h0; y++ {
		img.row(y, nil, row)
		for x, a := range alpha[y*w0 : (y+1)*w0] {
			if a > 0.9 {
				fSum[0] += row[4*x]
				fSum[1] += row[4*x+1]
				fSum[2] += row[4*x+2]
				fCount++
			}
			if a < 0.1 {
				bSum[0] += row[4*x]
				bSum[1] += row[4*x+1]
				bSum[2] += row[4*x+2]
				bCount++
			}
		}
	}
	fPrev, bPrev := make([]float32, 3), make([]float32, 3)
	for c := range 3 {
		fPrev[c] = float32(float64(fSum[c]) / (float64(fCount) + 1e-5))
		bPrev[c] = float32(float64(bSum[c]) / (float64(bCount) + 1e-5))
	}
	wPrev, hPrev := 1, 1
	for i := 0; i <= n; i++ {
		w, h := w0, h0
		if i < n {
			// Python's round(w0 ** (i / n)): halves to even.
			f := float64(i) / float64(n)
			w = int(math.RoundToEven(math.Pow(float64(w0), f)))
			h = int(math.RoundToEven(math.Pow(float64(h0), f)))
		}
		p := &fgPass{w: w, h: h, reg: o.Regularization, gw: o.GradientWeight}
		p.sweeps = o.BigIterations
		if w <= o.SmallSize && h <= o.SmallSize {
			p.sweeps = o.SmallIterations
		}
		if i == n {
			p.alpha = alpha
			p.img = func(y int, dst []float32) { img.row(y, nil, dst) }
		} else {
			xs, ys := nearestIndex(w, w0), nearestIndex(h, h0)
			p.alpha = make([]float32, w*h)
			for y := 0; y < h; y++ {
				src := alpha[ys[y]*w0:]
				for x, sx := range xs {
					p.alpha[y*w+x] = src[sx]
				}
			}
			p.img = func(y int, dst []float32) { img.row(ys[y], xs, dst) }
		}
		pxs, pys := nearestIndex(w, wPrev), nearestIndex(h, hPrev)
		fp, bp, wp := fPrev, bPrev, wPrev
		p.init = func(y int, FB []float32) {
			fr, br := fp[3*wp*pys[y]:], bp[3*wp*pys[y]:]
			for x, sx := range pxs {
				d := FB[8*x : 8*x+8]
				d[0], d[1], d[2], d[3] = fr[3*sx], fr[3*sx+1], fr[3*sx+2], 0
				d[4], d[5], d[6], d[7] = br[3*sx], br[3*sx+1], br[3*sx+2], 0
			}
		}
		if i == n {
			p.emit = emit
			p.run()
			return
		}
		fNext, bNext := make([]float32, 3*w*h), make([]float32, 3*w*h)
		p.emit = func(y int, FB []float32) {
			f, b := fNext[3*w*y:3*w*(y+1)], bNext[3*w*y:3*w*(y+1)]
			for x := range w {
				f[3*x], f[3*x+1], f[3*x+2] = FB[8*x], FB[8*x+1], FB[8*x+2]
				b[3*x], b[3*x+1], b[3*x+2] = FB[8*x+4], FB[8*x+5], FB[8*x+6]
			}
		}
		p.run()
		fPrev, bPrev, wPrev, hPrev = fNext, bNext, w, h
	}
}

// fgPass runs the Gauss-Seidel sweeps of one level over a window of rows.
// Sweep k updates row y once sweep k-1 has updated row y+1, so the sweeps
// follow one another down the image a row apart: each pixel sees exactly
// the values the sequential sweeps give it, and only the rows between the
// last sweep's and the first sweep's (plus one on each side) are held.
// Rows enter with init (the previous level's values, resized) and leave
// with emit after the last sweep. On large levels with several threads each
// sweep runs on its own goroutine, a chunk of columns behind the one before.
type fgPass struct {
	w, h, sweeps int
	reg, gw      float32
	alpha        []float32
	img          func(y int, dst []float32)
	init         func(y int, FB []float32)
	emit         func(y int, FB []float32)

	ring int         // rows held
	fb   [][]float32 // per row, per pixel F (R, G, B, 0) then B (R, G, B, 0)
	im   [][]float32 // per row, the image's colours (R, G, B, 0)
}

// fgParallelMin is the smallest level (in pixels) whose sweeps run on
// several goroutines.
const fgParallelMin = 1 << 15

// fgChunk is the number of columns a sweep updates between two
// publications of its progress.
const fgChunk = 1024

// fgSlack is how far past what it needs a sweep that had to sleep waits
// for the sweep before it to be.
const fgSlack = 4 * fgChunk

// fgLead is how many rows the first sweep may run ahead of the last beyond
// what the order needs, so that the goroutines rarely wait on each other.
const fgLead = 8

func (p *fgPass) slot(y int) []float32 { return p.fb[y%p.ring] }

// enter brings row y into the window: its starting F and B, its colours.
func (p *fgPass) enter(y int) {
	p.init(y, p.fb[y%p.ring])
	p.img(y, p.im[y%p.ring])
}

func (p *fgPass) run() {
	w, h, K := p.w, p.h, p.sweeps
	if K == 0 {
		FB := make([]float32, 8*w)
		for y := 0; y < h; y++ {
			p.init(y, FB)
			p.emit(y, FB)
		}
		return
	}
	parallel := runtime.GOMAXPROCS(0) > 1 && K > 1 && w*h >= fgParallelMin && h > 2
	p.ring = min(h, K+2)
	if parallel {
		// Each sweep may sleep until the one before is a row further than
		// it needs: 2K rows and a lead keep the first sweep from ever
		// waiting for a slot the last one cannot free.
		p.ring = min(h, 2*K+3+fgLead)
	}
	p.fb, p.im = make([][]float32, p.ring), make([][]float32, p.ring)
	for i := range p.fb {
		p.fb[i], p.im[i] = make([]float32, 8*w), make([]float32, 4*w)
	}
	p.enter(0)
	if h > 1 {
		p.enter(1)
	}
	if parallel {
		p.runParallel()
		return
	}
	// Step t: sweep k updates row t-k, after sweep k-1 updated row t-k+1.
	for t := 0; t < h+K-1; t++ {
		if t+1 < h && t >= 1 {
			p.enter(t + 1)
		}
		for k := 0; k < K; k++ {
			y := t - k
			if y < 0 || y >= h {
				continue
			}
			p.row(y, 0, w)
			if k == K-1 {
				p.emit(y, p.slot(y))
			}
		}
	}
}

// row updates columns [x0, x1) of row y.
func (p *fgPass) row(y int, x0, x1 int) {
	up, down := max(y-1, 0), min(y+1, p.h-1)
	w := p.w
	fgRow(p.slot(y), p.slot(up), p.slot(down), p.im[y%p.ring], p.alpha[y*w:(y+1)*w], p.alpha[up*w:(up+1)*w], p.alpha[down*w:(down+1)*w], x0, x1, p.reg, p.gw)
}

// runParallel runs each sweep on its own goroutine. Progress is counted in
// pixels (y*w + x of the next pixel to update); sweep k may update columns
// [x0, x1) of row y once sweep k-1 is at (y+1)*w + x1 or done, and the
// first sweep may bring row y+1 in once the last sweep is past the row
// whose slot it takes.
func (p *fgPass) runParallel() {
	w, h, K := p.w, p.h, p.sweeps
	total := int64(w * h)
	prog := make([]fgProgress, K)
	for k := range prog {
		prog[k].wake = make(chan struct{}, 1)
		prog[k].want.Store(-1)
	}
	done := make(chan struct{}, K)
	for k := 0; k < K; k++ {
		go func(k int) {
			defer func() { done <- struct{}{} }()
			me := &prog[k]
			for y := 0; y < h; y++ {
				if k == 0 && y+1 < h && y >= 1 {
					// Row y+1 takes the slot of row y+1-ring, which the
					// last sweep reads last when it updates row y+2-ring.
					if y+1 >= p.ring {
						need := int64(y+3-p.ring) * int64(w)
						me.wait(&prog[K-1], need, need+int64(w))
					}
					p.enter(y + 1)
				}
				for x0 := 0; x0 < w; x0 += fgChunk {
					x1 := min(x0+fgChunk, w)
					if k > 0 {
						need := int64(y+1)*int64(w) + int64(x1)
						me.wait(&prog[k-1], min(need, total), min(need+int64(min(fgSlack, w)), total))
					}
					p.row(y, x0, x1)
					pos := int64(y)*int64(w) + int64(x1)
					me.publish(pos)
					if k+1 < K {
						prog[k+1].notify(pos, me)
					}
				}
				if k == K-1 {
					p.emit(y, p.slot(y))
					// The first sweep waits on the last one's progress
					// past the emitted row.
					prog[0].notify(me.pos.Load(), me)
				}
			}
		}(k)
	}
	for k := 0; k < K; k++ {
		<-done
	}
}

// fgProgress is one sweep's position, and the wake-up channel of its
// goroutine when it waits for another sweep.
type fgProgress struct {
	pos  atomic.Int64
	want atomic.Int64 // position awaited on the sweep it waits for, -1 if not waiting
	wake chan struct{}
	_    [40]byte // keep sweeps' counters on separate cache lines
}

func (p *fgProgress) publish(pos int64) { p.pos.Store(pos) }

// notify wakes p's goroutine if it waits for a position that src has
// reached.
func (p *fgProgress) notify(pos int64, src *fgProgress) {
	if t := p.want.Load(); t >= 0 && t <= pos && p.want.CompareAndSwap(t, -1) {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// wait returns once src has reached pos. It polls for a while; if src is
// not there by then, it sleeps until src reaches slack (>= pos, at most
// one row further), so that a sweep that catches up with the one before
// it sleeps once for several chunks rather than at every chunk.
func (p *fgProgress) wait(src *fgProgress, pos, slack int64) {
	for i := 0; i < 200; i++ {
		if src.pos.Load() >= pos {
			return
		}
	}
	for {
		p.want.Store(slack)
		if src.pos.Load() >= slack {
			p.want.Store(-1)
			return
		}
		<-p.wake
		if src.pos.Load() >= slack {
			p.want.Store(-1)
			return
		}
	}
}

// fgRowGo updates pixels [x0, x1) of a row: for each pixel the
// closed-form solution of the 2x2 system of pymatting's _estimate_fb_ml
// from the current values of its four neighbours (left, right, up, down,
// clamped at the border), with its float32 and float64 steps in its order.
// fb, fbu and fbd are the row, the row above and the row below (the row
// itself at the top and bottom) with 8 values per pixel: F's R, G, B, 0,
// then B's; img has 4 per pixel (R, G, B, 0), a, au, ad one alpha each.
// fgRow is this function, or the same computation in assembly.
func fgRowGo(fb, fbu, fbd, img, a, au, ad []float32, x0, x1 int, reg, gw float32) {
	w := len(a)
	if x0 >= x1 {
		return
	}
	fb, fbu, fbd, img = fb[:8*w], fbu[:8*w], fbd[:8*w], img[:4*w]
	au, ad = au[:w], ad[:w]
	// The left neighbour's values, carried from one pixel to the next.
	xl := max(x0-1, 0)
	l := fb[8*xl : 8*xl+8]
	fl0, fl1, fl2, bl0, bl1, bl2 := l[0], l[1], l[2], l[4], l[5], l[6]
	al := a[xl]
	for x := x0; x < x1; x++ {
		xr := x + 1
		if x == w-1 {
			xr = w - 1
		}
		a0 := a[x]
		a1 := 1 - float64(a0)
		a00 := a0 * a0
		a01 := float64(a0) * a1
		a11 := a1 * a1
		dl := reg + float32(gw*abs32(a0-al))
		dr := reg + float32(gw*abs32(a0-a[xr]))
		du := reg + float32(gw*abs32(a0-au[x]))
		dd := reg + float32(gw*abs32(a0-ad[x]))
		a00 += dl
		a00 += dr
		a00 += du
		a00 += dd
		a11 += float64(dl)
		a11 += float64(dr)
		a11 += float64(du)
		a11 += float64(dd)
		inv := 1 / (float64(float64(a00)*a11) - float64(a01*a01))
		b00, b01, b11 := inv*a11, inv*-a01, inv*float64(a00)
		r, u, d, v := fb[8*xr:8*xr+8], fbu[8*x:8*x+8], fbd[8*x:8*x+8], img[4*x:4*x+4]

		b0 := a0 * v[0]
		b1 := float32(a1 * float64(v[0]))
		b0 += float32(dl * fl0)
		b1 += float32(dl * bl0)
		b0 += float32(dr * r[0])
		b1 += float32(dr * r[4])
		b0 += float32(du * u[0])
		b1 += float32(du * u[4])
		b0 += float32(dd * d[0])
		b1 += float32(dd * d[4])
		fl0 = clamp01f(float64(b00*float64(b0)) + float64(b01*float64(b1)))
		bl0 = clamp01f(float64(b01*float64(b0)) + float64(b11*float64(b1)))

		b0 = a0 * v[1]
		b1 = float32(a1 * float64(v[1]))
		b0 += float32(dl * fl1)
		b1 += float32(dl * bl1)
		b0 += float32(dr * r[1])
		b1 += float32(dr * r[5])
		b0 += float32(du * u[1])
		b1 += float32(du * u[5])
		b0 += float32(dd * d[1])
		b1 += float32(dd * d[5])
		fl1 = clamp01f(float64(b00*float64(b0)) + float64(b01*float64(b1)))
		bl1 = clamp01f(float64(b01*float64(b0)) + float64(b11*float64(b1)))

		b0 = a0 * v[2]
		b1 = float32(a1 * float64(v[2]))
		b0 += float32(dl * fl2)
		b1 += float32(dl * bl2)
		b0 += float32(dr * r[2])
		b1 += float32(dr * r[6])
		b0 += float32(du * u[2])
		b1 += float32(du * u[6])
		b0 += float32(dd * d[2])
		b1 += float32(dd * d[6])
		fl2 = clamp01f(float64(b00*float64(b0)) + float64(b01*float64(b1)))
		bl2 = clamp01f(float64(b01*float64(b0)) + float64(b11*float64(b1)))

		o := fb[8*x : 8*x+8]
		o[0], o[1], o[2], o[3] = fl0, fl1, fl2, 0
		o[4], o[5], o[6], o[7] = bl0, bl1, bl2, 0
		al = a0
	}
}

// clamp01f is pymatting's max(0, min(1, v)), rounded to float32 (NaN
// gives 0).
func clamp01f(v float64) float32 {
	if !(v > 0) {
		return 0
	}
	if v > 1 {
		return 1
	}
	return float32(v)
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}
