package mam

import "math"

// fgReference is a line-by-line transcription of pymatting's
// _estimate_fb_ml (one channel at a time, whole planes, sequential sweeps),
// kept as the reference the pipelined estimator must match bit for bit.
func fgReference(img, alpha []float32, w0, h0 int, o ForegroundOptions) []float32 {
	n := 0
	if m := max(w0, h0); m > 1 {
		n = int(math.Ceil(math.Log2(float64(m))))
	}
	out := make([]float32, len(img))
	for c := 0; c < 3; c++ {
		plane := make([]float32, w0*h0)
		for i := range plane {
			plane[i] = img[3*i+c]
		}
		var fSum, bSum float32
		fCount, bCount := 0, 0
		for i := range plane {
			if alpha[i] > 0.9 {
				fSum += plane[i]
				fCount++
			}
			if alpha[i] < 0.1 {
				bSum += plane[i]
				bCount++
			}
		}
		fPrev := []float32{float32(float64(fSum) / (float64(fCount) + 1e-5))}
		bPrev := []float32{float32(float64(bSum) / (float64(bCount) + 1e-5))}
		wPrev, hPrev := 1, 1
		for i := 0; i <= n; i++ {
			w, h := w0, h0
			if n > 0 {
				f := float64(i) / float64(n)
				w = int(math.RoundToEven(math.Pow(float64(w0), f)))
				h = int(math.RoundToEven(math.Pow(float64(h0), f)))
			}
			resize := func(src []float32, ws, hs int) []float32 {
				dst := make([]float32, w*h)
				for y := 0; y < h; y++ {
					for x := 0; x < w; x++ {
						dst[y*w+x] = src[min(hs-1, y*hs/h)*ws+min(ws-1, x*ws/w)]
					}
				}
				return dst
			}
			im, al := resize(plane, w0, h0), resize(alpha, w0, h0)
			F, B := resize(fPrev, wPrev, hPrev), resize(bPrev, wPrev, hPrev)
			iters := o.BigIterations
			if w <= o.SmallSize && h <= o.SmallSize {
				iters = o.SmallIterations
			}
			dx, dy := [4]int{-1, 1, 0, 0}, [4]int{0, 0, -1, 1}
			for it := 0; it < iters; it++ {
				for y := 0; y < h; y++ {
					for x := 0; x < w; x++ {
						a0 := al[y*w+x]
						a1 := 1 - float64(a0)
						a00 := a0 * a0
						a01 := float64(a0) * a1
						a11 := a1 * a1
						b0 := a0 * im[y*w+x]
						b1 := float32(a1 * float64(im[y*w+x]))
						for d := 0; d < 4; d++ {
							x2 := max(0, min(w-1, x+dx[d]))
							y2 := max(0, min(h-1, y+dy[d]))
							g := float32(math.Abs(float64(a0 - al[y2*w+x2])))
							da := o.Regularization + float32(o.GradientWeight*g)
							a00 += da
							a11 += float64(da)
							b0 += float32(da * F[y2*w+x2])
							b1 += float32(da * B[y2*w+x2])
						}
						inv := 1 / (float64(float64(a00)*a11) - float64(a01*a01))
						b00, b01, b11 := inv*a11, inv*-a01, inv*float64(a00)
						fc := float64(b00*float64(b0)) + float64(b01*float64(b1))
						bc := float64(b01*float64(b0)) + float64(b11*float64(b1))
						F[y*w+x] = float32(max(0, min(1, fc)))
						B[y*w+x] = float32(max(0, min(1, bc)))
					}
				}
			}
			fPrev, bPrev, wPrev, hPrev = F, B, w, h
		}
		for i, v := range fPrev {
			out[3*i+c] = v
		}
	}
	return out
}
