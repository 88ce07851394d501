package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"

	"github.com/mam-go/mam-go/internal/imagefile"
)

// loadRGB reads an input image as cv2.imread(path) followed by BGR->RGB
// gives it to the reference: colour channels as stored, any alpha channel
// dropped (not blended). JPEG decoding is Go's, which may differ from
// libjpeg by a level or two on some pixels.
func loadRGB(path string) (image.Image, error) {
	img, err := imagefile.Read(path)
	if err != nil {
		return nil, err
	}
	switch img.(type) {
	case *image.RGBA, *image.YCbCr, *image.Gray:
		if o, ok := img.(interface{ Opaque() bool }); ok && o.Opaque() {
			return img, nil
		}
	}
	b := img.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			o := out.PixOffset(x, y)
			out.Pix[o], out.Pix[o+1], out.Pix[o+2], out.Pix[o+3] = c.R, c.G, c.B, 255
		}
	}
	return out, nil
}

// libpng's rgb_to_gray coefficients for OpenCV's (0.299, 0.587), in
// 1/32768ths (png_set_rgb_to_gray_fixed truncates; blue takes the rest).
const (
	grayR = 29900 * 32768 / 100000
	grayG = 58700 * 32768 / 100000
	grayB = 32768 - grayR - grayG
)

// loadGray reads an alpha matte or trimap as cv2.imread(path, 0) gives it:
// 8-bit gray as stored; 16-bit gray by its high byte; a colour JPEG by its
// luma (libjpeg's grayscale output); a colour PNG with libpng's
// rgb_to_gray (OpenCV's 0.299/0.587 weights, truncated), alpha dropped.
func loadGray(path string) (*image.Gray, error) {
	img, err := imagefile.Read(path)
	if err != nil {
		return nil, err
	}
	return toGray(img), nil
}

// toGray converts img to 8-bit gray the way loadGray describes.
func toGray(img image.Image) *image.Gray {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := image.NewGray(image.Rect(0, 0, w, h))
	switch m := img.(type) {
	case *image.Gray:
		for y := range h {
			copy(out.Pix[y*w:(y+1)*w], m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):])
		}
		return out
	case *image.YCbCr:
		for y := range h {
			for x := range w {
				out.Pix[y*w+x] = m.Y[m.YOffset(b.Min.X+x, b.Min.Y+y)]
			}
		}
		return out
	case *image.Gray16:
		for y := range h {
			for x := range w {
				out.Pix[y*w+x] = m.Pix[m.PixOffset(b.Min.X+x, b.Min.Y+y)]
			}
		}
		return out
	}
	switch img.(type) {
	case *image.NRGBA64, *image.RGBA64:
		for y := range h {
			for x := range w {
				c := color.NRGBA64Model.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA64)
				out.Pix[y*w+x] = rgbToGray16(c.R, c.G, c.B)
			}
		}
	default:
		for y := range h {
			for x := range w {
				c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				out.Pix[y*w+x] = rgbToGray8(c.R, c.G, c.B)
			}
		}
	}
	return out
}

// rgbToGray8 is libpng's 8-bit png_do_rgb_to_gray without gamma: equal
// channels pass through, otherwise the weighted sum truncated.
func rgbToGray8(r, g, b uint8) uint8 {
	if r == g && r == b {
		return r
	}
	return uint8((grayR*uint32(r) + grayG*uint32(g) + grayB*uint32(b)) >> 15)
}

// rgbToGray16 is libpng's 16-bit png_do_rgb_to_gray (rounded), then the
// high byte (png_set_strip_16).
func rgbToGray16(r, g, b uint16) uint8 {
	if r == g && r == b {
		return uint8(r >> 8)
	}
	return uint8(((grayR*uint32(r) + grayG*uint32(g) + grayB*uint32(b) + 16384) >> 15) >> 8)
}

// grayFloats returns the pixels of g as 0..255 float32 values, row-major.
func grayFloats(g *image.Gray) []float32 {
	b := g.Bounds()
	out := make([]float32, 0, b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for _, v := range g.Pix[g.PixOffset(b.Min.X, y):g.PixOffset(b.Max.X, y)] {
			out = append(out, float32(v))
		}
	}
	return out
}

// writePNGAtomic encodes img as PNG into path, through a temporary file
// renamed into place, so that an interrupted run never leaves a partial
// file that resumption would take for a finished prediction.
func writePNGAtomic(path string, img image.Image) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*.png")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := png.Encode(f, img); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
