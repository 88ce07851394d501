package gdino

// This file mirrors datasets/transforms.py as util/inference.py's
// preprocessing uses it: RandomResize([800], max_size=1333) (one size, so
// nothing random) with Pillow's bilinear filter, ToTensor and Normalize.

import (
	"fmt"
	"image"
	"math"

	"github.com/mam-go/mam-go/sam"
)

// ImageNet statistics of T.Normalize, as float32 (torch.as_tensor of the
// Python floats).
var (
	imgMean = [3]float32{0.485, 0.456, 0.406}
	imgStd  = [3]float32{0.229, 0.224, 0.225}
)

// Preprocess resizes and normalises an image as the official transforms do:
// returns (1,3,h,w) values.
//
// The short side becomes cfg.ResizeShort, unless the long side would then
// exceed cfg.ResizeMax (see resizeShape); the image is resized with
// Pillow's antialiased bilinear filter (sam.ResizePIL, bit-exact), then
// each channel becomes (p/255 - mean) / std in float32. It errors for a nil
// or empty image (or one too large for sam.ToRGB). h and w are at least 1.
func Preprocess(img image.Image, cfg Config) (input []float32, h, w int, err error) {
	rgb, err := sam.ToRGB(img)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("gdino: preprocess: %w", err)
	}
	r, err := resizeImage(rgb, cfg)
	if err != nil {
		return nil, 0, 0, err
	}
	return normalizeImage(r), r.H, r.W, nil
}

// resizeShape is datasets/transforms.py resize's get_size_with_aspect_ratio
// for a w x h image, the short side size and the max_size: it returns the
// resized (oh, ow). With mn, mx the short and long sides, size becomes
// round(maxSize * mn / mx) (Python's round: half to even) when mx/mn*size
// > maxSize; an image whose short side already equals size keeps its size;
// otherwise the short side becomes size and the long one
// int(size * long / short) (truncated). Sides are clamped to at least 1
// (where the reference would ask Pillow for an empty image); maxSize <= 0
// means no limit.
func resizeShape(w, h, size, maxSize int) (oh, ow int) {
	if w <= 0 || h <= 0 {
		return 0, 0
	}
	mn, mx := float64(min(w, h)), float64(max(w, h))
	if maxSize > 0 && mx/mn*float64(size) > float64(maxSize) {
		size = int(math.RoundToEven(float64(maxSize) * mn / mx))
	}
	switch {
	case (w <= h && w == size) || (h <= w && h == size):
		oh, ow = h, w
	case w < h:
		ow = size
		oh = int(float64(size) * float64(h) / float64(w))
	default:
		oh = size
		ow = int(float64(size) * float64(w) / float64(h))
	}
	return max(oh, 1), max(ow, 1)
}

// resizeImage is T.RandomResize([ResizeShort], max_size=ResizeMax) on an
// RGB image: F.resize of a PIL image, Pillow's BILINEAR (a copy when the
// size does not change).
func resizeImage(rgb *sam.RGB, cfg Config) (*sam.RGB, error) {
	if cfg.ResizeShort <= 0 {
		return nil, fmt.Errorf("gdino: preprocess: config %q: resize size %d", cfg.Name, cfg.ResizeShort)
	}
	oh, ow := resizeShape(rgb.W, rgb.H, cfg.ResizeShort, cfg.ResizeMax)
	r := sam.ResizePIL(rgb, ow, oh)
	if r == nil {
		return nil, fmt.Errorf("gdino: preprocess: cannot resize a %dx%d image to %dx%d: %w", rgb.W, rgb.H, ow, oh, sam.ErrBadImage)
	}
	return r, nil
}

// normalizeImage is T.ToTensor + T.Normalize: (h, w, 3) uint8 -> (1, 3, h,
// w) float32 (p / 255 - mean) / std, each step rounded to float32 as torch
// computes it.
func normalizeImage(r *sam.RGB) []float32 {
	hw := r.W * r.H
	out := make([]float32, 3*hw)
	for ch := 0; ch < 3; ch++ {
		mean, std := imgMean[ch], imgStd[ch]
		plane := out[ch*hw : (ch+1)*hw]
		for i := range plane {
			v := float32(r.Pix[3*i+ch]) / 255
			plane[i] = (v - mean) / std
		}
	}
	return out
}
