package sam

// This file mirrors segment_anything/utils/transforms.py (ResizeLongestSide)
// and Sam.preprocess: the image is resized so that its long side is the
// model's input size with Pillow's bilinear resampler, bit for bit, then
// normalised and zero-padded to a square.

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"

	"github.com/mam-go/mam-go/nn"
)

// MaxPixels is the largest image (width * height) ToRGB accepts.
const MaxPixels = 1 << 28

// ErrBadImage is wrapped by errors for images that are nil, empty or too
// large.
var ErrBadImage = errors.New("bad image")

// RGB is an 8-bit RGB image: Pix holds H*W*3 bytes, row-major, R G B per
// pixel (numpy's HxWx3 uint8 layout).
type RGB struct {
	W, H int
	Pix  []uint8
}

// At returns the (r, g, b) of pixel (x, y).
func (m *RGB) At(x, y int) (r, g, b uint8) {
	i := (y*m.W + x) * 3
	return m.Pix[i], m.Pix[i+1], m.Pix[i+2]
}

// valid reports whether m is a well-formed non-empty image.
func (m *RGB) valid() bool {
	return m != nil && m.W > 0 && m.H > 0 && m.W <= MaxPixels/m.H && len(m.Pix) == m.W*m.H*3
}

// ToRGB converts any image to 8-bit RGB, as Pillow's convert("RGB") does:
// images with alpha keep their straight (un-premultiplied) colour values
// and drop the alpha; 16-bit images keep their high byte. It errors for an
// empty image or one of more than MaxPixels pixels.
func ToRGB(img image.Image) (*RGB, error) {
	if img == nil {
		return nil, fmt.Errorf("sam: to rgb: nil image: %w", ErrBadImage)
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("sam: to rgb: image is %dx%d: %w", w, h, ErrBadImage)
	}
	if w > MaxPixels/h {
		return nil, fmt.Errorf("sam: to rgb: image is %dx%d, more than %d pixels: %w", w, h, MaxPixels, ErrBadImage)
	}
	out := &RGB{W: w, H: h, Pix: make([]uint8, w*h*3)}
	switch m := img.(type) {
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			o := out.Pix[y*w*3:]
			for x := 0; x < w; x++ {
				o[3*x], o[3*x+1], o[3*x+2] = row[4*x], row[4*x+1], row[4*x+2]
			}
		}
	case *image.RGBA:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			o := out.Pix[y*w*3:]
			for x := 0; x < w; x++ {
				p := row[4*x : 4*x+4]
				if p[3] == 0xff {
					o[3*x], o[3*x+1], o[3*x+2] = p[0], p[1], p[2]
					continue
				}
				c := color.NRGBAModel.Convert(color.RGBA{p[0], p[1], p[2], p[3]}).(color.NRGBA)
				o[3*x], o[3*x+1], o[3*x+2] = c.R, c.G, c.B
			}
		}
	case *image.Gray:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			o := out.Pix[y*w*3:]
			for x := 0; x < w; x++ {
				o[3*x], o[3*x+1], o[3*x+2] = row[x], row[x], row[x]
			}
		}
	default:
		// YCbCr, Paletted, 16-bit and any other image: through NRGBA, which
		// un-premultiplies colours of translucent pixels.
		for y := 0; y < h; y++ {
			o := out.Pix[y*w*3:]
			for x := 0; x < w; x++ {
				c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				o[3*x], o[3*x+1], o[3*x+2] = c.R, c.G, c.B
			}
		}
	}
	return out, nil
}

// PreprocessShape is ResizeLongestSide.get_preprocess_shape: the size of an
// h x w image whose long side is scaled to long.
func PreprocessShape(h, w, long int) (newh, neww int) {
	scale := float64(long) / float64(max(h, w))
	// The explicit float64 conversions keep the compiler from fusing the
	// multiply-add, so the rounding matches Python's.
	newh = int(float64(float64(h)*scale) + 0.5)
	neww = int(float64(float64(w)*scale) + 0.5)
	return newh, neww
}

// ApplyCoords maps a point of the original h x w image to the resized
// newh x neww frame as ResizeLongestSide.apply_coords does:
// x * (neww / w), y * (newh / h), the ratio computed first.
func ApplyCoords(x, y float64, h, w, newh, neww int) (float64, float64) {
	return x * (float64(neww) / float64(w)), y * (float64(newh) / float64(h))
}

// Pillow's fixed-point resampling constants (libImaging/Resample.c).
const (
	pilPrecisionBits = 32 - 8 - 2
	pilHalf          = int32(1) << (pilPrecisionBits - 1)
)

// pilCoeffs holds one axis's resampling weights: for output index i, the
// input taps start at bounds[2i] and number bounds[2i+1], with fixed-point
// weights k[i*ksize:].
type pilCoeffs struct {
	ksize  int
	bounds []int
	k      []int32
}

// pilBilinear is Pillow's triangle filter.
func pilBilinear(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return 1 - x
	}
	return 0
}

// pilPrecompute is precompute_coeffs + normalize_coeffs_8bpc for the
// bilinear filter over the whole input range [0, inSize).
func pilPrecompute(inSize, outSize int) pilCoeffs {
	const support0 = 1.0 // BILINEAR support
	in0, in1 := float32(0), float32(inSize)
	scale := float64(in1-in0) / float64(outSize)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	support := support0 * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	c := pilCoeffs{ksize: ksize, bounds: make([]int, 2*outSize), k: make([]int32, outSize*ksize)}
	pre := make([]float64, ksize)
	inv := 1.0 / filterscale
	for xx := 0; xx < outSize; xx++ {
		center := float64(in0) + float64((float64(xx)+0.5)*scale)
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		ww := 0.0
		for x := 0; x < xmax; x++ {
			w := pilBilinear((float64(x+xmin) - center + 0.5) * inv)
			pre[x] = w
			ww += w
		}
		for x := 0; x < xmax; x++ {
			if ww != 0 {
				pre[x] /= ww
			}
			// Rounded to fixed point away from zero, as Pillow does.
			v := float64(pre[x] * (1 << pilPrecisionBits))
			if v < 0 {
				c.k[xx*ksize+x] = int32(-0.5 + v)
			} else {
				c.k[xx*ksize+x] = int32(0.5 + v)
			}
		}
		c.bounds[2*xx], c.bounds[2*xx+1] = xmin, xmax
	}
	return c
}

// pilClip8 is Pillow's clip8: the fixed-point sum shifted down and clamped
// to a byte.
func pilClip8(ss int32) uint8 {
	v := ss >> pilPrecisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// ResizePIL resizes src to neww x newh exactly as Pillow's
// Image.resize((neww, newh), Image.BILINEAR) does on an RGB image: an
// antialiased triangle filter (its support widens with the downscale
// factor), 22-bit fixed-point weights, a horizontal pass over the rows the
// vertical pass needs, then a vertical pass, each rounded and clipped to
// uint8. An axis whose size does not change is not resampled. It returns
// nil for an invalid src or a non-positive size.
func ResizePIL(src *RGB, neww, newh int) *RGB {
	if !src.valid() || neww <= 0 || newh <= 0 || neww > MaxPixels/newh {
		return nil
	}
	needH := neww != src.W
	needV := newh != src.H
	cur := src
	vert := pilPrecompute(src.H, newh)
	if needH {
		// Only the input rows the vertical pass reads: [first, last).
		first := vert.bounds[0]
		last := vert.bounds[2*newh-2] + vert.bounds[2*newh-1]
		if !needV {
			first, last = 0, src.H
		}
		hor := pilPrecompute(src.W, neww)
		tmp := &RGB{W: neww, H: last - first, Pix: make([]uint8, neww*(last-first)*3)}
		nn.ParallelFor(tmp.H, func(lo, hi int) {
			for yy := lo; yy < hi; yy++ {
				in := src.Pix[(yy+first)*src.W*3 : (yy+first+1)*src.W*3]
				out := tmp.Pix[yy*neww*3 : (yy+1)*neww*3]
				for xx := 0; xx < neww; xx++ {
					xmin, xmax := hor.bounds[2*xx], hor.bounds[2*xx+1]
					k := hor.k[xx*hor.ksize : xx*hor.ksize+xmax]
					s0, s1, s2 := pilHalf, pilHalf, pilHalf
					p := in[xmin*3:]
					for x, kx := range k {
						s0 += int32(p[3*x]) * kx
						s1 += int32(p[3*x+1]) * kx
						s2 += int32(p[3*x+2]) * kx
					}
					out[3*xx], out[3*xx+1], out[3*xx+2] = pilClip8(s0), pilClip8(s1), pilClip8(s2)
				}
			}
		})
		if needV {
			for i := 0; i < newh; i++ {
				vert.bounds[2*i] -= first
			}
		}
		cur = tmp
	}
	if !needV {
		if cur == src {
			return &RGB{W: src.W, H: src.H, Pix: append([]uint8(nil), src.Pix...)}
		}
		return cur
	}
	out := &RGB{W: cur.W, H: newh, Pix: make([]uint8, cur.W*newh*3)}
	rowLen := cur.W * 3
	nn.ParallelFor(newh, func(lo, hi int) {
		for yy := lo; yy < hi; yy++ {
			ymin, ymax := vert.bounds[2*yy], vert.bounds[2*yy+1]
			k := vert.k[yy*vert.ksize : yy*vert.ksize+ymax]
			o := out.Pix[yy*rowLen : (yy+1)*rowLen]
			for i := range o {
				s := pilHalf
				for y, ky := range k {
					s += int32(cur.Pix[(y+ymin)*rowLen+i]) * ky
				}
				o[i] = pilClip8(s)
			}
		}
	})
	return out
}

// Preprocess is ResizeLongestSide.apply_image followed by Sam.preprocess:
// the image is resized with Pillow's bilinear filter so that its long side
// is ImageSize, normalised with PixelMean and PixelStd and zero-padded at
// the bottom and right to a (1, 3, S, S) tensor. It returns the resized
// size (newh, neww), the valid region of the input. For an invalid image
// (nil, empty, or Pix of the wrong length) it returns nil and 0, 0.
func (c Config) Preprocess(img *RGB) (input *nn.Tensor, newh, neww int) {
	s := c.ImageSize
	if !img.valid() || s <= 0 {
		return nil, 0, 0
	}
	newh, neww = PreprocessShape(img.H, img.W, s)
	if newh <= 0 || neww <= 0 {
		return nil, 0, 0
	}
	r := img
	if newh != img.H || neww != img.W {
		r = ResizePIL(img, neww, newh)
	}
	// (newh, neww, 3) uint8 -> (1, 3, S, S) float32, zero outside the image.
	data := make([]float32, 3*s*s)
	for ch := 0; ch < 3; ch++ {
		mean, std := c.PixelMean[ch], c.PixelStd[ch]
		plane := data[ch*s*s : (ch+1)*s*s]
		for y := 0; y < newh; y++ {
			row := plane[y*s : y*s+neww]
			src := r.Pix[y*neww*3:]
			for x := range row {
				row[x] = (float32(src[3*x+ch]) - mean) / std
			}
		}
	}
	return nn.NewTensor(data, 1, 3, s, s), newh, neww
}
