package mam

import (
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"sync"

	"github.com/mam-go/mam-go/sam"
)

// OutputOption configures Foreground, Cutout, CutoutPremultiplied,
// Composite and CompositeOver.
type OutputOption func(*outputConfig)

type outputConfig struct {
	plain bool
	fg    ForegroundOptions
}

func newOutputConfig(opts []OutputOption) outputConfig {
	oc := outputConfig{fg: DefaultForegroundOptions()}
	for _, o := range opts {
		if o != nil {
			o(&oc)
		}
	}
	return oc
}

// WithPlainColors makes cutouts and composites use the image's own colours
// (the plain product alpha * image) instead of the estimated foreground:
// faster, but the old background shows through in hair and soft edges.
func WithPlainColors() OutputOption { return func(c *outputConfig) { c.plain = true } }

// WithForegroundOptions sets the parameters of the foreground estimation
// (DefaultForegroundOptions otherwise).
func WithForegroundOptions(o ForegroundOptions) OutputOption {
	return func(c *outputConfig) { c.fg = o }
}

// check reports whether r is a usable result: non-nil, a positive size and
// one alpha value per pixel.
func (r *Result) check() error {
	if r == nil {
		return fmt.Errorf("mam: %w: nil result", ErrInvalidInput)
	}
	if r.Width <= 0 || r.Height <= 0 || r.Width > math.MaxInt32/r.Height {
		return fmt.Errorf("mam: %w: result is %dx%d", ErrInvalidInput, r.Width, r.Height)
	}
	if len(r.Alpha) != r.Width*r.Height {
		return fmt.Errorf("mam: %w: result has %d alpha values for %dx%d pixels", ErrInvalidInput, len(r.Alpha), r.Width, r.Height)
	}
	return nil
}

// Gray returns the matte as an 8-bit image, uint8(alpha*255) truncated as
// the reference writes it (Cutout's alpha channel holds the same values).
// A nil or inconsistent result gives an empty image.
func (r *Result) Gray() *image.Gray {
	if r.check() != nil {
		return image.NewGray(image.Rectangle{})
	}
	g := image.NewGray(image.Rect(0, 0, r.Width, r.Height))
	parallelRange(len(r.Alpha), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g.Pix[i] = to8(r.Alpha[i])
		}
	})
	return g
}

// Gray16 returns the matte as a 16-bit image, alpha*65535 rounded. A nil or
// inconsistent result gives an empty image.
func (r *Result) Gray16() *image.Gray16 {
	if r.check() != nil {
		return image.NewGray16(image.Rectangle{})
	}
	g := image.NewGray16(image.Rect(0, 0, r.Width, r.Height))
	parallelRange(len(r.Alpha), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v := uint16(math.Round(float64(clamp01(r.Alpha[i])) * 65535))
			g.Pix[2*i], g.Pix[2*i+1] = uint8(v>>8), uint8(v)
		}
	})
	return g
}

// MaskImage returns the SAM mask as a black and white image. A nil result
// or one without a mask of its size gives an empty image.
func (r *Result) MaskImage() *image.Gray {
	if r.check() != nil || len(r.Mask) != r.Width*r.Height {
		return image.NewGray(image.Rectangle{})
	}
	g := image.NewGray(image.Rect(0, 0, r.Width, r.Height))
	for i, m := range r.Mask {
		if m != 0 {
			g.Pix[i] = 255
		}
	}
	return g
}

// Cutout returns the object on a transparent background: the estimated
// foreground colours (see Foreground; WithPlainColors keeps img's own) with
// the matte as straight, non-premultiplied alpha, uint8(alpha*255)
// truncated as Gray and the alpha PNG have it. img must have the result's
// size.
func (r *Result) Cutout(img image.Image, opts ...OutputOption) (*image.NRGBA, error) {
	oc := newOutputConfig(opts)
	rgb, err := r.prepare(img, oc)
	if err != nil {
		return nil, err
	}
	w := r.Width
	out := image.NewNRGBA(image.Rect(0, 0, w, r.Height))
	r.colorRows(rgb, oc, func(y int, src []uint8) {
		o, a := out.Pix[4*w*y:4*w*(y+1)], r.Alpha[w*y:w*(y+1)]
		for x := 0; x < w; x++ {
			o[4*x], o[4*x+1], o[4*x+2], o[4*x+3] = src[3*x], src[3*x+1], src[3*x+2], to8(a[x])
		}
	})
	return out, nil
}

// CutoutPremultiplied is Cutout with premultiplied alpha: an *image.RGBA
// whose colours are the cutout's multiplied by its alpha, as
// color.RGBAModel converts them.
func (r *Result) CutoutPremultiplied(img image.Image, opts ...OutputOption) (*image.RGBA, error) {
	oc := newOutputConfig(opts)
	rgb, err := r.prepare(img, oc)
	if err != nil {
		return nil, err
	}
	w := r.Width
	out := image.NewRGBA(image.Rect(0, 0, w, r.Height))
	r.colorRows(rgb, oc, func(y int, src []uint8) {
		o, a := out.Pix[4*w*y:4*w*(y+1)], r.Alpha[w*y:w*(y+1)]
		for x := 0; x < w; x++ {
			a8 := to8(a[x])
			o[4*x], o[4*x+1], o[4*x+2], o[4*x+3] = premul(src[3*x], a8), premul(src[3*x+1], a8), premul(src[3*x+2], a8), a8
		}
	})
	return out, nil
}

// premul multiplies a straight 8-bit colour value by alpha as
// color.RGBAModel.Convert(color.NRGBA{...}) does.
func premul(v, a uint8) uint8 {
	c := uint32(v)
	c |= c << 8
	c *= uint32(a)
	c /= 0xff
	return uint8(c >> 8)
}

// Composite blends the object over a solid colour with the matte, as the
// reference demo's green screen does: uint8(alpha*fg + (1-alpha)*bg),
// truncated, where fg is the estimated foreground rounded to 8 bits (see
// Foreground) or, with WithPlainColors, img's own colour.
func (r *Result) Composite(img image.Image, bg color.Color, opts ...OutputOption) (*image.RGBA, error) {
	if isNil(bg) {
		return nil, fmt.Errorf("mam: %w: composite: nil background colour", ErrInvalidInput)
	}
	c := color.RGBAModel.Convert(bg).(color.RGBA)
	return r.composite(img, newOutputConfig(opts), func(y int, dst []float64) {
		for x := 0; x < len(dst); x += 3 {
			dst[x], dst[x+1], dst[x+2] = float64(c.R), float64(c.G), float64(c.B)
		}
	})
}

// CompositeOver blends the object over background with the matte, as
// Composite does. The background is resized to the image's size with
// bilinear sampling (cv2.resize's INTER_LINEAR) when they differ; a
// translucent background is taken as composited over black.
func (r *Result) CompositeOver(img, background image.Image, opts ...OutputOption) (*image.RGBA, error) {
	if err := checkImage(background); err != nil {
		return nil, fmt.Errorf("mam: composite background: %w", err)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	bb := background.Bounds()
	bw, bh := bb.Dx(), bb.Dy()
	bgRGB, err := premultipliedRGB(background)
	if err != nil {
		return nil, fmt.Errorf("mam: composite background: %w", err)
	}
	// Bilinear taps with half-pixel centres, per column and per row.
	type tap struct {
		i0, i1 int
		f      float64
	}
	taps := func(n, size int) []tap {
		s := float64(size) / float64(n)
		t := make([]tap, n)
		for i := range t {
			p := math.Max((float64(i)+0.5)*s-0.5, 0)
			i0 := min(int(p), size-1)
			t[i] = tap{i0, min(i0+1, size-1), p - float64(i0)}
		}
		return t
	}
	xt, yt := taps(r.Width, bw), taps(r.Height, bh)
	same := bw == r.Width && bh == r.Height
	return r.composite(img, newOutputConfig(opts), func(y int, dst []float64) {
		if same {
			for i, v := range bgRGB[3*bw*y : 3*bw*(y+1)] {
				dst[i] = float64(v)
			}
			return
		}
		ty := yt[y]
		r0, r1 := bgRGB[3*bw*ty.i0:], bgRGB[3*bw*ty.i1:]
		for x, tx := range xt {
			for c := 0; c < 3; c++ {
				v := (float64(r0[3*tx.i0+c])*(1-tx.f)+float64(r0[3*tx.i1+c])*tx.f)*(1-ty.f) +
					(float64(r1[3*tx.i0+c])*(1-tx.f)+float64(r1[3*tx.i1+c])*tx.f)*ty.f
				dst[3*x+c] = math.Round(v)
			}
		}
	})
}

// premultipliedRGB converts img to 8-bit RGB as color.RGBAModel sees it
// (colours premultiplied by alpha, that is, over black).
func premultipliedRGB(img image.Image) ([]uint8, error) {
	if o, ok := img.(interface{ Opaque() bool }); ok && o.Opaque() {
		rgb, err := toRGB(img)
		if err != nil {
			return nil, err
		}
		return rgb.Pix, nil
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w > sam.MaxPixels/h {
		return nil, fmt.Errorf("mam: %w: image is %dx%d", ErrImageTooLarge, w, h)
	}
	out := make([]uint8, 3*w*h)
	err := safeParallelRange(h, func(lo, hi int) {
		for y := lo; y < hi; y++ {
			for x := 0; x < w; x++ {
				c := color.RGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.RGBA)
				o := 3 * (y*w + x)
				out[o], out[o+1], out[o+2] = c.R, c.G, c.B
			}
		}
	})
	return out, err
}

// composite writes uint8(a*fg + (1-a)*bg) per channel; bg fills dst with
// the 3*Width background values of row y.
func (r *Result) composite(img image.Image, oc outputConfig, bg func(y int, dst []float64)) (*image.RGBA, error) {
	rgb, err := r.prepare(img, oc)
	if err != nil {
		return nil, err
	}
	w := r.Width
	out := image.NewRGBA(image.Rect(0, 0, w, r.Height))
	var bufs sync.Pool
	r.colorRows(rgb, oc, func(y int, src []uint8) {
		buf, _ := bufs.Get().([]float64)
		if buf == nil {
			buf = make([]float64, 3*w)
		}
		defer bufs.Put(buf)
		bg(y, buf)
		o, al := out.Pix[4*w*y:4*w*(y+1)], r.Alpha[w*y:w*(y+1)]
		for x := 0; x < w; x++ {
			a := float64(clamp01(al[x]))
			for c := 0; c < 3; c++ {
				o[4*x+c] = uint8(a*float64(src[3*x+c]) + (1-a)*buf[3*x+c])
			}
			o[4*x+3] = 255
		}
	})
	return out, nil
}

// prepare checks the result, img and the options, and converts img to RGB.
func (r *Result) prepare(img image.Image, oc outputConfig) (*sam.RGB, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	if !oc.plain {
		if err := oc.fg.validate(); err != nil {
			return nil, err
		}
	}
	return r.rgbOf(img)
}

// rgbOf converts img, which must have the result's size, to RGB.
func (r *Result) rgbOf(img image.Image) (*sam.RGB, error) {
	if err := checkImage(img); err != nil {
		return nil, err
	}
	if err := r.sameSize(img); err != nil {
		return nil, err
	}
	return toRGB(img)
}

// colorRows calls fn with each row's 8-bit foreground colours (3*Width
// bytes, R G B per pixel): img's own colours with WithPlainColors, rows
// shared between threads; otherwise the estimated foreground rounded to 8
// bits, rows in order as the estimation finishes them. fn must be safe to
// run concurrently on different rows, and must not keep src.
func (r *Result) colorRows(rgb *sam.RGB, oc outputConfig, fn func(y int, src []uint8)) {
	w := r.Width
	if oc.plain {
		parallelRange(r.Height, func(lo, hi int) {
			for y := lo; y < hi; y++ {
				fn(y, rgb.Pix[3*w*y:3*w*(y+1)])
			}
		})
		return
	}
	q := make([]uint8, 3*w)
	r.foregroundRows(rgb, oc.fg, func(y int, fb []float32) {
		fb = fb[:8*w]
		for x := 0; x < w; x++ {
			// The estimate is in [0, 1] already.
			f := fb[8*x : 8*x+3]
			q[3*x], q[3*x+1], q[3*x+2] = uint8(f[0]*255+0.5), uint8(f[1]*255+0.5), uint8(f[2]*255+0.5)
		}
		fn(y, q)
	})
}

func (r *Result) sameSize(img image.Image) error {
	if b := img.Bounds(); b.Dx() != r.Width || b.Dy() != r.Height {
		return fmt.Errorf("mam: %w: image is %dx%d, matte is %dx%d", ErrInvalidInput, b.Dx(), b.Dy(), r.Width, r.Height)
	}
	return nil
}

// WriteAlphaPNG writes the matte as a grayscale PNG of 8 or 16 bits
// (PNGDefault compression).
func (r *Result) WriteAlphaPNG(w io.Writer, bits int) error {
	return r.WriteAlphaPNGWith(w, bits, PNGDefault)
}

// WriteAlphaPNGWith is WriteAlphaPNG with a choice of compression.
func (r *Result) WriteAlphaPNGWith(w io.Writer, bits int, c PNGCompression) error {
	if err := r.check(); err != nil {
		return err
	}
	switch bits {
	case 8:
		return EncodePNG(w, r.Gray(), c)
	case 16:
		return EncodePNG(w, r.Gray16(), c)
	}
	return fmt.Errorf("mam: %w: alpha PNG depth %d: want 8 or 16", ErrInvalidInput, bits)
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
	if len(h) == 6 && isHex(h) {
		if _, err := fmt.Sscanf(h, "%02x%02x%02x", &c.R, &c.G, &c.B); err == nil {
			c.A = 255
			return c, nil
		}
	}
	return color.RGBA{}, fmt.Errorf("mam: %w: colour %q: want a name (green, blue, white, black, red) or #rrggbb", ErrInvalidInput, s)
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
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
