//go:build amd64 && !purego

package mam

// fgRow is the estimation's pixel update: fgRowGo's computation with the
// three channels of a pixel in the lanes of SSE2 registers (every amd64
// processor has them), operation for operation, so the values are the
// same bit for bit.
func fgRow(fb, fbu, fbd, img, a, au, ad []float32, x0, x1 int, reg, gw float32) {
	w := len(a)
	if x0 < 0 || x1 > w || x0 >= x1 || len(fb) < 8*w || len(fbu) < 8*w || len(fbd) < 8*w ||
		len(img) < 4*w || len(au) < w || len(ad) < w {
		fgRowGo(fb, fbu, fbd, img, a, au, ad, x0, x1, reg, gw) // bounds-checked
		return
	}
	fgRowSSE2(&fb[0], &fbu[0], &fbd[0], &img[0], &a[0], &au[0], &ad[0], x0, x1, w, reg, gw)
}

//go:noescape
func fgRowSSE2(fb, fbu, fbd, img, a, au, ad *float32, x0, x1, w int, reg, gw float32)
