package mam

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
)

// Gray returns the matte as an 8-bit image, uint8(alpha*255) truncated as
// the reference writes it.
func (r *Result) Gray() *image.Gray {
	g := image.NewGray(image.Rect(0, 0, r.Width, r.Height))
	for i, a := range r.Alpha {
		g.Pix[i] = to8(a)
	}
	return g
}

// Gray16 returns the matte as a 16-bit image, alpha*65535 rounded.
func (r *Result) Gray16() *image.Gray16 {
	g := image.NewGray16(image.Rect(0, 0, r.Width, r.Height))
	for i, a := range r.Alpha {
		v := uint16(math.Round(float64(clamp01(a)) * 65535))
		g.Pix[2*i], g.Pix[2*i+1] = uint8(v>>8), uint8(v)
	}
	return g
}

// MaskImage returns the SAM mask as a black and white image.
func (r *Result) MaskImage() *image.Gray {
	g := image.NewGray(image.Rect(0, 0, r.Width, r.Height))
	for i, m := range r.Mask {
		if m != 0 {
			g.Pix[i] = 255
		}
	}
	return g
}

// Cutout returns img with the matte as its (straight, non-premultiplied)
// alpha channel. img must have the result's size.
func (r *Result) Cutout(img image.Image) (*image.NRGBA, error) {
	out := image.NewNRGBA(image.Rect(0, 0, r.Width, r.Height))
	err := r.eachPixel(img, func(x, y int, c color.NRGBA, a float64) {
		o := out.PixOffset(x, y)
		out.Pix[o], out.Pix[o+1], out.Pix[o+2] = c.R, c.G, c.B
		out.Pix[o+3] = uint8(math.Round(a * 255))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Composite blends img over a solid colour with the matte, as the reference
// demo's green screen does: uint8(alpha*img + (1-alpha)*bg), truncated.
func (r *Result) Composite(img image.Image, bg color.Color) (*image.RGBA, error) {
	c := color.RGBAModel.Convert(bg).(color.RGBA)
	return r.composite(img, func(x, y int) (uint8, uint8, uint8) { return c.R, c.G, c.B })
}

// CompositeOver blends img over background with the matte. The background
// is resized to the image's size with bilinear sampling when they differ.
func (r *Result) CompositeOver(img, background image.Image) (*image.RGBA, error) {
	bb := background.Bounds()
	if bb.Dx() <= 0 || bb.Dy() <= 0 {
		return nil, fmt.Errorf("mam: background image is empty")
	}
	sx := float64(bb.Dx()) / float64(r.Width)
	sy := float64(bb.Dy()) / float64(r.Height)
	at := func(x, y int) color.RGBA {
		return color.RGBAModel.Convert(background.At(bb.Min.X+x, bb.Min.Y+y)).(color.RGBA)
	}
	return r.composite(img, func(x, y int) (uint8, uint8, uint8) {
		// Bilinear with half-pixel centres (cv2.resize INTER_LINEAR).
		fx := math.Max((float64(x)+0.5)*sx-0.5, 0)
		fy := math.Max((float64(y)+0.5)*sy-0.5, 0)
		x0, y0 := int(fx), int(fy)
		x1, y1 := min(x0+1, bb.Dx()-1), min(y0+1, bb.Dy()-1)
		ax, ay := fx-float64(x0), fy-float64(y0)
		c00, c01, c10, c11 := at(x0, y0), at(x1, y0), at(x0, y1), at(x1, y1)
		mix := func(a, b, c, d uint8) uint8 {
			v := (float64(a)*(1-ax)+float64(b)*ax)*(1-ay) + (float64(c)*(1-ax)+float64(d)*ax)*ay
			return uint8(math.Round(v))
		}
		return mix(c00.R, c01.R, c10.R, c11.R), mix(c00.G, c01.G, c10.G, c11.G), mix(c00.B, c01.B, c10.B, c11.B)
	})
}

func (r *Result) composite(img image.Image, bg func(x, y int) (uint8, uint8, uint8)) (*image.RGBA, error) {
	out := image.NewRGBA(image.Rect(0, 0, r.Width, r.Height))
	err := r.eachPixel(img, func(x, y int, c color.NRGBA, a float64) {
		br, bgc, bb := bg(x, y)
		o := out.PixOffset(x, y)
		out.Pix[o] = uint8(a*float64(c.R) + (1-a)*float64(br))
		out.Pix[o+1] = uint8(a*float64(c.G) + (1-a)*float64(bgc))
		out.Pix[o+2] = uint8(a*float64(c.B) + (1-a)*float64(bb))
		out.Pix[o+3] = 255
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachPixel calls fn with every pixel of img (which must have the result's
// size) as straight RGBA and its alpha in [0, 1].
func (r *Result) eachPixel(img image.Image, fn func(x, y int, c color.NRGBA, a float64)) error {
	if err := r.sameSize(img); err != nil {
		return err
	}
	b := img.Bounds()
	for y := 0; y < r.Height; y++ {
		for x := 0; x < r.Width; x++ {
			c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			fn(x, y, c, float64(clamp01(r.Alpha[y*r.Width+x])))
		}
	}
	return nil
}

func (r *Result) sameSize(img image.Image) error {
	if b := img.Bounds(); b.Dx() != r.Width || b.Dy() != r.Height {
		return fmt.Errorf("mam: image is %dx%d, matte is %dx%d", b.Dx(), b.Dy(), r.Width, r.Height)
	}
	return nil
}

// WriteAlphaPNG writes the matte as a grayscale PNG of 8 or 16 bits.
func (r *Result) WriteAlphaPNG(w io.Writer, bits int) error {
	switch bits {
	case 8:
		return png.Encode(w, r.Gray())
	case 16:
		return png.Encode(w, r.Gray16())
	}
	return fmt.Errorf("mam: alpha PNG depth %d: want 8 or 16", bits)
}

// SavePNG encodes img as PNG into the file at path.
func SavePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("mam: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("mam: %s: %w", path, err)
	}
	return f.Close()
}

// ParseColor reads a colour name (green, blue, white, black, red) or a
// hex value "#rrggbb" / "rrggbb".
func ParseColor(s string) (color.RGBA, error) {
	switch s {
	case "green":
		return color.RGBA{0, 255, 0, 255}, nil
	case "blue":
		return color.RGBA{0, 0, 255, 255}, nil
	case "white":
		return color.RGBA{255, 255, 255, 255}, nil
	case "black":
		return color.RGBA{0, 0, 0, 255}, nil
	case "red":
		return color.RGBA{255, 0, 0, 255}, nil
	}
	h := s
	if len(h) > 0 && h[0] == '#' {
		h = h[1:]
	}
	var c color.RGBA
	if len(h) == 6 {
		if _, err := fmt.Sscanf(h, "%02x%02x%02x", &c.R, &c.G, &c.B); err == nil {
			c.A = 255
			return c, nil
		}
	}
	return c, fmt.Errorf("mam: colour %q: want a name (green, blue, white, black, red) or #rrggbb", s)
}

func clamp01(a float32) float32 {
	if a < 0 || a != a {
		return 0
	}
	if a > 1 {
		return 1
	}
	return a
}

func to8(a float32) uint8 { return uint8(clamp01(a) * 255) }
