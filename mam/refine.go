package mam

import (
	"fmt"
	"math/bits"

	"github.com/mam-go/mam-go/nn"
)

// Kernel sizes of the one-sided refinement (inference_benchmark.py's
// default widths os8 10, os4 20, os1 10, halved at inference).
const (
	os8Width = 5
	os4Width = 10
	os1Width = 5
)

// Alpha thresholds of utils.get_unknown_tensor_from_pred_oneside: Python
// doubles compared against a float32 array, so rounded to float32.
var (
	alphaLow  = float32(1.0 / 255.0)
	alphaHigh = float32(1 - 1.0/255.0)
)

// CropResize takes an M2M output of s x s values (one (1, 1, S, S) plane),
// crops it to the top-left newh x neww (the resized image before padding)
// and resizes that bilinearly (align_corners=False, no antialias) to h x w,
// as single_ms_inference does with slicing and F.interpolate. It returns
// nil when the sizes are inconsistent.
func CropResize(os []float32, s, newh, neww, h, w int) []float32 {
	if s < 1 || len(os) < s*s || newh < 1 || neww < 1 || newh > s || neww > s || h < 1 || w < 1 {
		return nil
	}
	out := make([]float32, h*w) // (h, w) = interpolate(os[:newh, :neww])
	nn.ResizeBilinearRegionInto(out, os, s, newh, neww, h, w)
	return out
}

// Refine is the one-sided iterative refinement of the reference's
// single_ms_inference (Matting-Anything's inference_benchmark.py, with
// utils.get_unknown_tensor_from_pred_oneside). os1, os4 and os8 are the M2M mattes already cropped
// and resized to h x w (CropResize); post is SAM's binarised full-size mask
// (h x w, 0 or 1; any non-zero value counts as 1). The result is the alpha
// matte, h x w values in [0, 1].
//
//   - PostProcess: alpha = os8 inside the mask's bounding box (rows
//     y_min..y_max-1, columns x_min..x_max-1, end-exclusive as the reference
//     slices), post outside it; an empty mask gives post (all zero).
//   - MaskGuide: alpha = post, with os8 in the band of background pixels
//     that erode(1 - post, ellipse 5) clears.
//   - Plain: alpha = os8.
//
// Then twice, with ellipse 10 and os4, then ellipse 5 and os1: the pixels of
// dilate(alpha >= 1/255) where alpha <= 1 - 1/255 take the finer output.
func Refine(mode Mode, os1, os4, os8 []float32, post []uint8, h, w int) ([]float32, error) {
	if h < 1 || w < 1 {
		return nil, fmt.Errorf("mam: refine: image size %dx%d", w, h)
	}
	n := h * w
	for _, in := range []struct {
		name string
		len  int
	}{{"os1", len(os1)}, {"os4", len(os4)}, {"os8", len(os8)}, {"mask", len(post)}} {
		if in.len != n {
			return nil, fmt.Errorf("mam: refine: %s has %d values, want %dx%d = %d", in.name, in.len, w, h, n)
		}
	}
	mask := newBitImage(h, w) // post != 0
	mask.packU8(post, false)
	alpha := make([]float32, n)
	switch mode {
	case PostProcess:
		// weight_os8 = get_unknown_box_from_mask(post): 1 outside the box
		x0, y0, x1, y1, ok := maskBox(post, h, w)
		nn.ParallelFor(h, func(lo, hi int) {
			for y := lo; y < hi; y++ {
				a, m := alpha[y*w:(y+1)*w], post[y*w:(y+1)*w]
				for x := range a {
					a[x] = float32(min(m[x], 1))
				}
				if ok && y >= y0 && y < y1 && x1 > x0 {
					copy(a[x0:x1], os8[y*w+x0:y*w+x1])
				}
			}
		})
	case MaskGuide:
		// weight_os8 = get_unknown_tensor_from_mask_oneside(post): the
		// background pixels that erode(1 - post, ellipse 5) clears, i.e.
		// those of dilate(post, ellipse 5) outside the mask.
		band := dilateBits(mask, EllipseKernel(os8Width))
		nn.ParallelFor(h, func(lo, hi int) {
			for y := lo; y < hi; y++ {
				a, m, bd := alpha[y*w:(y+1)*w], mask.row(y), band.row(y)
				for x := range a {
					in := m[x>>6]>>(x&63)&1 != 0
					switch {
					case in:
						a[x] = 1
					case bd[x>>6]>>(x&63)&1 != 0:
						a[x] = os8[y*w+x]
					}
				}
			}
		})
	case Plain:
		copy(alpha, os8)
	default:
		return nil, fmt.Errorf("mam: refine: unknown mode %q", mode)
	}
	refineStep(alpha, os4, h, w, os4Width)
	refineStep(alpha, os1, h, w, os1Width)
	return alpha, nil
}

// refineStep is get_unknown_tensor_from_pred_oneside(alpha, width)
// followed by alpha[weight > 0] = finer[weight > 0]: the pixels of
// dilate(alpha >= 1/255, ellipse width) whose alpha is not above
// 1 - 1/255 take the finer output.
func refineStep(alpha, finer []float32, h, w, width int) {
	known := newBitImage(h, w) // alpha >= 1/255: uncertain_area[pred < 1/255] = 0
	nn.ParallelFor(h, func(lo, hi int) {
		for y := lo; y < hi; y++ {
			r, a := known.row(y), alpha[y*w:(y+1)*w]
			for i := range r {
				var word uint64
				seg := a[i<<6 : min(i<<6+64, w)]
				for b, v := range seg {
					if !(v < alphaLow) {
						word |= 1 << b
					}
				}
				r[i] = word
			}
		}
	})
	unknown := dilateBits(known, EllipseKernel(width))
	nn.ParallelFor(h, func(lo, hi int) {
		for y := lo; y < hi; y++ {
			a, f := alpha[y*w:(y+1)*w], finer[y*w:(y+1)*w]
			for i, word := range unknown.row(y) {
				for word != 0 {
					x := i<<6 + bits.TrailingZeros64(word)
					word &= word - 1
					if !(a[x] > alphaHigh) { // uncertain_area[pred > 1 - 1/255] = 0
						a[x] = f[x]
					}
				}
			}
		}
	})
}

// maskBox returns the end-exclusive box of get_unknown_box_from_mask:
// columns x_min .. x_max-1 and rows y_min .. y_max-1, where x_max and y_max
// are the last set column and row (so they are excluded, as the reference
// slices). ok is false for an empty mask.
func maskBox(mask []uint8, h, w int) (x0, y0, x1, y1 int, ok bool) {
	x0, y0, x1, y1 = w, h, -1, -1
	for y := 0; y < h; y++ {
		for x, v := range mask[y*w : (y+1)*w] {
			if v != 0 {
				x0, x1 = min(x0, x), max(x1, x)
				y0, y1 = min(y0, y), max(y1, y)
			}
		}
	}
	return x0, y0, x1, y1, x1 >= 0
}
