package mam

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand"
	"runtime"
	"testing"
)

// idat joins a PNG's IDAT chunks: the zlib stream.
func idat(t *testing.T, b []byte) []byte {
	t.Helper()
	var z []byte
	for i := 8; i+8 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[i:]))
		if string(b[i+4:i+8]) == "IDAT" {
			z = append(z, b[i+8:i+8+n]...)
		}
		i += 12 + n
	}
	return z
}

// EncodePNG writes PNGs that image/png reads back pixel for pixel, with a
// zlib stream whose checksum holds, in every compression and on several
// threads (images of several bands).
func TestEncodePNG(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	noisy := func(p []byte) {
		for i := range p {
			p[i] = uint8(i/7) + uint8(rng.Intn(4))
		}
	}
	defer func(n int) { pngBand = n }(pngBand)
	pngBand = 20000 // several bands per image
	big := image.Rect(0, 0, 210, 150)
	gray := image.NewGray(big)
	noisy(gray.Pix)
	g16 := image.NewGray16(image.Rect(0, 0, 120, 90))
	noisy(g16.Pix)
	opaque := image.NewNRGBA(big)
	noisy(opaque.Pix)
	for i := 3; i < len(opaque.Pix); i += 4 {
		opaque.Pix[i] = 255
	}
	nrgba := image.NewNRGBA(image.Rect(0, 0, 130, 70))
	noisy(nrgba.Pix)
	rgba := image.NewRGBA(image.Rect(0, 0, 90, 60))
	noisy(rgba.Pix)
	for i := 3; i < len(rgba.Pix); i += 4 {
		a := rgba.Pix[i]
		rgba.Pix[i-1], rgba.Pix[i-2], rgba.Pix[i-3] = min(rgba.Pix[i-1], a), min(rgba.Pix[i-2], a), min(rgba.Pix[i-3], a)
	}
	sub := opaque.SubImage(image.Rect(13, 7, 200, 140))
	paletted := image.NewPaletted(image.Rect(0, 0, 10, 10), color.Palette{color.Black, color.White})
	for _, img := range []image.Image{gray, g16, opaque, nrgba, rgba, sub, paletted} {
		for _, c := range []PNGCompression{PNGDefault, PNGFast, PNGSmall, PNGNoCompression} {
			for _, procs := range []int{1, 3} {
				old := runtime.GOMAXPROCS(procs)
				var buf bytes.Buffer
				err := EncodePNG(&buf, img, c)
				runtime.GOMAXPROCS(old)
				if err != nil {
					t.Fatal(err)
				}
				got, err := png.Decode(bytes.NewReader(buf.Bytes()))
				if err != nil {
					t.Fatalf("%T, compression %d: %v", img, c, err)
				}
				if _, ok := img.(*image.Paletted); !ok {
					zr, err := zlib.NewReader(bytes.NewReader(idat(t, buf.Bytes())))
					if err != nil {
						t.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, zr); err != nil {
						t.Fatalf("%T, compression %d: zlib stream: %v", img, c, err)
					}
				}
				b := img.Bounds()
				if got.Bounds().Dx() != b.Dx() || got.Bounds().Dy() != b.Dy() {
					t.Fatalf("%T: bounds %v", img, got.Bounds())
				}
				model := color.NRGBAModel // 8-bit straight colours, as image/png writes them
				if _, ok := img.(*image.Gray16); ok {
					model = color.NRGBA64Model
				}
				for y := 0; y < b.Dy(); y++ {
					for x := 0; x < b.Dx(); x++ {
						w := model.Convert(img.At(b.Min.X+x, b.Min.Y+y))
						g := model.Convert(got.At(x, y))
						if w != g {
							t.Fatalf("%T, compression %d, (%d, %d): got %v, want %v", img, c, x, y, g, w)
						}
					}
				}
			}
		}
	}
}

func TestParsePNGCompression(t *testing.T) {
	for s, want := range map[string]PNGCompression{"default": PNGDefault, "fast": PNGFast, "small": PNGSmall, "none": PNGNoCompression} {
		if got, err := ParsePNGCompression(s); err != nil || got != want {
			t.Errorf("%s: %v %v", s, got, err)
		}
	}
	if _, err := ParsePNGCompression("tiny"); err == nil {
		t.Error("tiny: no error")
	}
}

func TestAdler32Combine(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, n := range []int{0, 1, 5, 65520, 65521, 65522, 200000} {
		a, b := make([]byte, rng.Intn(70000)), make([]byte, n)
		rng.Read(a)
		rng.Read(b)
		if got, want := adler32Combine(adler(a), adler(b), len(b)), adler(append(a, b...)); got != want {
			t.Errorf("len %d+%d: %08x, want %08x", len(a), n, got, want)
		}
	}
}

func adler(b []byte) uint32 {
	s1, s2 := uint32(1), uint32(0)
	for _, v := range b {
		s1 = (s1 + uint32(v)) % 65521
		s2 = (s2 + s1) % 65521
	}
	return s2<<16 | s1
}

// BenchmarkEncodePNG times the encoding of a 12 MP photo-like cutout.
func BenchmarkEncodePNG(b *testing.B) {
	img := image.NewNRGBA(image.Rect(0, 0, 4000, 3000))
	rng := rand.New(rand.NewSource(1))
	for y := 0; y < 3000; y++ {
		for x := 0; x < 4000; x++ {
			i := img.PixOffset(x, y)
			img.Pix[i], img.Pix[i+1], img.Pix[i+2] = uint8(x/16+rng.Intn(8)), uint8(y/12+rng.Intn(8)), uint8((x+y)/28)
			img.Pix[i+3] = uint8(min(255, max(0, 2000-abs(x-2000))))
		}
	}
	for _, c := range []struct {
		name string
		c    PNGCompression
	}{{"fast", PNGFast}, {"default", PNGDefault}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var n int
			for i := 0; i < b.N; i++ {
				var buf bytes.Buffer
				if err := EncodePNG(&buf, img, c.c); err != nil {
					b.Fatal(err)
				}
				n = buf.Len()
			}
			b.ReportMetric(float64(n)/1e6, "MB")
		})
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
