package mam

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif"  // GIF input
	_ "image/jpeg" // JPEG input
	_ "image/png"  // PNG input
	"io"
	"os"

	"github.com/mam-go/mam-go/sam"
	_ "golang.org/x/image/webp" // WebP input
)

// DefaultMaxPixels is the largest image (width * height) DecodeImage and
// ReadImage accept unless WithMaxPixels says otherwise: 64 megapixels.
const DefaultMaxPixels = 64_000_000

// maxJPEGScans bounds the scans of a progressive JPEG: each one walks the
// whole image, and a crafted file with thousands of them decodes for
// minutes. Encoders write about ten. (A variable for the tests.)
var maxJPEGScans = 256

// ImageOption configures DecodeImage and ReadImage.
type ImageOption func(*imageConfig)

type imageConfig struct {
	maxPixels int64
	noEXIF    bool
	header    func(w, h int, format string) error
}

// WithHeader calls fn with the image's size (as displayed, after the EXIF
// orientation) and format once the header is read, before any pixel is
// decoded; an error from fn stops the decoding and is returned as it is.
// A program can check a prompt against the size, or start loading a
// model, while the pixels decode.
func WithHeader(fn func(w, h int, format string) error) ImageOption {
	return func(c *imageConfig) { c.header = fn }
}

// WithMaxPixels sets the largest image (width * height) to decode; the
// size is read from the file's header and checked before any pixel is
// decoded. n <= 0 keeps DefaultMaxPixels.
func WithMaxPixels(n int64) ImageOption {
	return func(c *imageConfig) {
		if n > 0 {
			c.maxPixels = n
		}
	}
}

// WithEXIF turns the JPEG EXIF orientation on (the default: the image comes
// out as a photo viewer shows it, and prompt coordinates are taken in that
// orientation) or off (the pixels as stored).
func WithEXIF(on bool) ImageOption { return func(c *imageConfig) { c.noEXIF = !on } }

// DecodeImage decodes a PNG, JPEG, GIF (first frame) or WebP image. It reads
// the header first and refuses an image of more than DefaultMaxPixels
// pixels (or the WithMaxPixels limit) with ErrImageTooLarge before decoding
// any pixel. A JPEG's EXIF orientation is applied unless WithEXIF(false).
// It returns the image and its format name.
func DecodeImage(r io.Reader, opts ...ImageOption) (image.Image, string, error) {
	cfg := imageConfig{maxPixels: DefaultMaxPixels}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if isNil(r) {
		return nil, "", fmt.Errorf("mam: %w: decode image: nil reader", ErrInvalidInput)
	}
	// A budget of bytes keeps an endless stream (a pipe, /dev/zero) from
	// being read forever: no image within the pixel limit is larger.
	budget := &limitedReader{r: r, left: 1<<20 + 10*cfg.maxPixels}
	rec := &recorder{r: budget}
	ic, format, err := image.DecodeConfig(rec)
	if err != nil {
		return nil, "", decodeError("read image header", err, budget)
	}
	if ic.Width <= 0 || ic.Height <= 0 {
		return nil, format, fmt.Errorf("mam: %w: %s image is %dx%d", ErrImageFormat, format, ic.Width, ic.Height)
	}
	if px := int64(ic.Width) * int64(ic.Height); px > cfg.maxPixels {
		return nil, format, fmt.Errorf("mam: %w: %s image is %dx%d (%s), more than the limit of %s",
			ErrImageTooLarge, format, ic.Width, ic.Height, pixelCount(px), pixelCount(cfg.maxPixels))
	}
	orientation := 1
	if format == "jpeg" && !cfg.noEXIF {
		orientation = jpegOrientation(rec.buf)
	}
	if cfg.header != nil {
		w, h := ic.Width, ic.Height
		if orientation >= 5 {
			w, h = h, w
		}
		if err := cfg.header(w, h, format); err != nil {
			return nil, format, err
		}
	}
	var body io.Reader = io.MultiReader(bytes.NewReader(rec.buf), budget)
	if format == "jpeg" {
		body = &scanCounter{r: body, max: maxJPEGScans}
	}
	rec.buf = nil
	img, _, err := image.Decode(body)
	if err != nil {
		return nil, format, decodeError("decode "+format, err, budget)
	}
	if b := img.Bounds(); b.Dx() != ic.Width || b.Dy() != ic.Height {
		return nil, format, fmt.Errorf("mam: %w: %s image decodes to %dx%d, its header says %dx%d", ErrImageFormat, format, b.Dx(), b.Dy(), ic.Width, ic.Height)
	}
	if orientation != 1 {
		if img, err = Orient(img, orientation); err != nil {
			return nil, format, err
		}
	}
	return img, format, nil
}

// pixelCount writes n pixels as megapixels, or as pixels below one.
func pixelCount(n int64) string {
	if n < 1e6 {
		return fmt.Sprintf("%d pixels", n)
	}
	return fmt.Sprintf("%.1f MP", float64(n)/1e6)
}

func decodeError(what string, err error, budget *limitedReader) error {
	switch {
	case budget.over:
		return fmt.Errorf("mam: %w: %s: more input than any image within the pixel limit", ErrImageTooLarge, what)
	case errors.Is(err, errTooManyScans):
		return fmt.Errorf("mam: %w: %s: %w", ErrImageFormat, what, err)
	case errors.Is(err, image.ErrFormat):
		return fmt.Errorf("mam: %w: %s: not a PNG, JPEG, GIF or WebP image", ErrImageFormat, what)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fmt.Errorf("mam: %w: %s: the file is truncated", ErrImageFormat, what)
	}
	return fmt.Errorf("mam: %w: %s: %v", ErrImageFormat, what, err)
}

// ReadImage decodes the image file at path as DecodeImage does.
func ReadImage(path string, opts ...ImageOption) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mam: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("mam: %w: %s is a directory, not an image", ErrImageFormat, path)
	}
	img, _, err := DecodeImage(f, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// recorder keeps what is read through it, so that the bytes DecodeConfig
// consumed can be read again by Decode.
type recorder struct {
	r   io.Reader
	buf []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

type limitedReader struct {
	r    io.Reader
	left int64
	over bool
}

var errInputTooLong = errors.New("input too long")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		l.over = true
		return 0, errInputTooLong
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

var errTooManyScans = errors.New("too many progressive JPEG scans")

// scanCounter passes a JPEG stream through, failing once it has seen more
// than max start-of-scan markers (0xFF 0xDA: entropy-coded data stuffs
// every 0xFF data byte with 0x00, so the pair only occurs as a marker).
type scanCounter struct {
	r      io.Reader
	max    int
	scans  int
	lastFF bool
}

func (s *scanCounter) Read(p []byte) (int, error) {
	if s.scans > s.max {
		return 0, fmt.Errorf("%w: more than %d", errTooManyScans, s.max)
	}
	n, err := s.r.Read(p)
	for i, b := range p[:n] {
		if s.lastFF && b == 0xDA {
			if s.scans++; s.scans > s.max {
				// Hand over what comes before the marker; fail next time.
				return i, nil
			}
		}
		s.lastFF = b == 0xFF
	}
	return n, err
}

// RGB is an opaque 8-bit RGB image: Pix holds H*W*3 bytes, row-major, R G B
// per pixel. It is what the model and the outputs read: ToRGB converts any
// image to it (on all threads), and Matte, NewSession, Foreground, Cutout
// and Composite take one without converting it again.
type RGB struct {
	W, H int
	Pix  []uint8
}

// ColorModel is color.RGBAModel.
func (m *RGB) ColorModel() color.Model { return color.RGBAModel }

// Bounds is (0, 0)-(W, H).
func (m *RGB) Bounds() image.Rectangle { return image.Rect(0, 0, m.W, m.H) }

// Opaque reports true: the image has no alpha.
func (m *RGB) Opaque() bool { return true }

// At returns the pixel at (x, y) as a color.RGBA (zero outside the image).
func (m *RGB) At(x, y int) color.Color {
	if x < 0 || y < 0 || x >= m.W || y >= m.H || len(m.Pix) < 3*m.W*m.H {
		return color.RGBA{}
	}
	i := 3 * (y*m.W + x)
	return color.RGBA{m.Pix[i], m.Pix[i+1], m.Pix[i+2], 0xff}
}

// ToRGB converts img to an RGB image as Pillow's convert("RGB") does (the
// model's preprocessing): colours of translucent pixels are taken straight
// (un-premultiplied) and the alpha dropped, 16-bit values keep their high
// byte.
func ToRGB(img image.Image) (*RGB, error) {
	if m, ok := img.(*RGB); ok && m != nil {
		return m, checkImage(m)
	}
	rgb, err := toRGB(img)
	if err != nil {
		return nil, err
	}
	return &RGB{W: rgb.W, H: rgb.H, Pix: rgb.Pix}, nil
}

// toRGB converts img to 8-bit RGB exactly as sam.ToRGB does (Pillow's
// convert("RGB")), with the rows shared between threads. It checks the
// image first and returns an error, never a panic, for a nil, empty or
// inconsistent one.
func toRGB(img image.Image) (*sam.RGB, error) {
	if err := checkImage(img); err != nil {
		return nil, err
	}
	if m, ok := img.(*RGB); ok {
		return &sam.RGB{W: m.W, H: m.H, Pix: m.Pix}, nil // checked by checkImage
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w > sam.MaxPixels/h {
		return nil, fmt.Errorf("mam: %w: image is %dx%d, more than %d pixels", ErrImageTooLarge, w, h, sam.MaxPixels)
	}
	out := &sam.RGB{W: w, H: h, Pix: make([]uint8, w*h*3)}
	var row func(y int, o []uint8)
	switch m := img.(type) {
	case *image.NRGBA:
		row = func(y int, o []uint8) {
			p := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				o[3*x], o[3*x+1], o[3*x+2] = p[4*x], p[4*x+1], p[4*x+2]
			}
		}
	case *image.RGBA:
		row = func(y int, o []uint8) {
			p := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				q := p[4*x : 4*x+4]
				if q[3] == 0xff {
					o[3*x], o[3*x+1], o[3*x+2] = q[0], q[1], q[2]
					continue
				}
				c := color.NRGBAModel.Convert(color.RGBA{q[0], q[1], q[2], q[3]}).(color.NRGBA)
				o[3*x], o[3*x+1], o[3*x+2] = c.R, c.G, c.B
			}
		}
	case *image.Gray:
		row = func(y int, o []uint8) {
			p := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				o[3*x], o[3*x+1], o[3*x+2] = p[x], p[x], p[x]
			}
		}
	case *image.YCbCr:
		row = func(y int, o []uint8) {
			for x := 0; x < w; x++ {
				// As NRGBAModel converts an opaque colour: RGBA() >> 8.
				r, g, bb, _ := m.YCbCrAt(b.Min.X+x, b.Min.Y+y).RGBA()
				o[3*x], o[3*x+1], o[3*x+2] = uint8(r>>8), uint8(g>>8), uint8(bb>>8)
			}
		}
	default:
		row = func(y int, o []uint8) {
			for x := 0; x < w; x++ {
				c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				o[3*x], o[3*x+1], o[3*x+2] = c.R, c.G, c.B
			}
		}
	}
	err := safeParallelRange(h, func(lo, hi int) {
		for y := lo; y < hi; y++ {
			row(y, out.Pix[y*w*3:(y+1)*w*3])
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
