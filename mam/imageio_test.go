package mam

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/sam"
)

// pngWithHeader is a PNG whose IHDR declares w x h (colour type ct, depth
// 8), with a small IDAT: a decoder that trusted the header would allocate
// w*h pixels before finding the data short.
func pngWithHeader(w, h uint32, ct byte) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		binary.Write(&b, binary.BigEndian, crc.Sum32())
	}
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, ct, 0, 0, 0)
	chunk("IHDR", ihdr)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(make([]byte, 1<<16)) // 64 KiB of zero rows: compresses to a few hundred bytes
	zw.Close()
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return b.Bytes()
}

func testJPEG(w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	var buf bytes.Buffer
	jpeg.Encode(&buf, img, nil)
	return buf.Bytes()
}

// jpegWithSize patches the frame header of a JPEG to declare w x h.
func jpegWithSize(b []byte, w, h uint16) []byte {
	b = append([]byte{}, b...)
	for i := 2; i+9 < len(b); {
		if b[i] != 0xFF {
			break
		}
		if b[i+1] == 0xC0 || b[i+1] == 0xC2 {
			binary.BigEndian.PutUint16(b[i+5:], h)
			binary.BigEndian.PutUint16(b[i+7:], w)
			return b
		}
		i += 2 + int(binary.BigEndian.Uint16(b[i+2:]))
	}
	panic("no SOF")
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "images", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// endless reads as a JPEG start followed by APP15 segments for ever.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		switch {
		case e.n == 0:
			p[i] = 0xFF
		case e.n == 1:
			p[i] = 0xD8
		default:
			k := (e.n - 2) % 1000 // segments of 1000 bytes: FF EF 03 E6 ...
			switch k {
			case 0:
				p[i] = 0xFF
			case 1:
				p[i] = 0xEF
			case 2:
				p[i] = 0x03
			case 3:
				p[i] = 0xE6
			default:
				p[i] = 0
			}
		}
		e.n++
	}
	return len(p), nil
}

// Bombs, truncated files, wrong formats: each gives an error with its
// sentinel, quickly, without decoding the pixels a header claims.
func TestDecodeImageBadInput(t *testing.T) {
	gifBomb := func() []byte {
		var buf bytes.Buffer
		gif.Encode(&buf, image.NewPaletted(image.Rect(0, 0, 4, 4), color.Palette{color.Black, color.White}), nil)
		b := buf.Bytes()
		binary.LittleEndian.PutUint16(b[6:], 65535) // logical screen
		binary.LittleEndian.PutUint16(b[8:], 65535)
		return b
	}
	webpBomb := func() []byte {
		b := append([]byte{}, readTestdata(t, "rgb.webp")...)
		if string(b[12:16]) != "VP8L" || b[20] != 0x2f {
			t.Fatalf("rgb.webp is not a simple lossless WebP: %q", b[12:16])
		}
		binary.LittleEndian.PutUint32(b[21:], 16383|16383<<14) // 16384 x 16384
		return b
	}
	progressive := readTestdata(t, "progressive.jpg")
	scanBomb := func() []byte {
		last := bytes.LastIndex(progressive, []byte{0xFF, 0xDA})
		end := bytes.LastIndex(progressive, []byte{0xFF, 0xD9})
		var b []byte
		b = append(b, progressive[:end]...)
		for i := 0; i < 300; i++ {
			b = append(b, progressive[last:end]...)
		}
		return append(b, 0xFF, 0xD9)
	}
	small := testJPEG(16, 16)
	rgba := readTestdata(t, "rgba.png")
	for _, c := range []struct {
		name  string
		in    io.Reader
		max   int64
		want  error
		inMsg string
	}{
		{"PNG 30000x30000", bytes.NewReader(pngWithHeader(30000, 30000, 2)), 0, ErrImageTooLarge, "30000x30000"},
		{"grey PNG 16000x16000", bytes.NewReader(pngWithHeader(16000, 16000, 0)), 0, ErrImageTooLarge, "256.0 MP"},
		{"PNG over a lower limit", bytes.NewReader(pngWithHeader(2000, 2000, 0)), 1_000_000, ErrImageTooLarge, "limit"},
		{"PNG 0x10", bytes.NewReader(pngWithHeader(0, 10, 0)), 0, ErrImageFormat, ""},
		{"PNG short of its header's data", bytes.NewReader(pngWithHeader(3000, 3000, 0)), 0, ErrImageFormat, ""},
		{"JPEG 65000x65000", bytes.NewReader(jpegWithSize(small, 65000, 65000)), 0, ErrImageTooLarge, ""},
		{"GIF 65535x65535", bytes.NewReader(gifBomb()), 0, ErrImageTooLarge, ""},
		{"WebP 16384x16384", bytes.NewReader(webpBomb()), 0, ErrImageTooLarge, ""},
		{"JPEG with 300 more scans", bytes.NewReader(scanBomb()), 0, ErrImageFormat, ""},
		{"endless JPEG header", &endless{}, 10_000, ErrImageTooLarge, "more input"},
		{"truncated PNG", bytes.NewReader(rgba[:len(rgba)/2]), 0, ErrImageFormat, ""},
		{"truncated JPEG", bytes.NewReader(progressive[:len(progressive)/2]), 0, ErrImageFormat, ""},
		{"header only", bytes.NewReader(rgba[:8]), 0, ErrImageFormat, ""},
		{"empty", bytes.NewReader(nil), 0, ErrImageFormat, ""},
		{"text", strings.NewReader("hello, world"), 0, ErrImageFormat, "not a PNG, JPEG, GIF or WebP"},
		{"BMP", bytes.NewReader(append([]byte("BM"), make([]byte, 60)...)), 0, ErrImageFormat, ""},
		{"nil reader", nil, 0, ErrInvalidInput, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			img, _, err := DecodeImage(c.in, WithMaxPixels(c.max))
			if err == nil {
				t.Fatalf("no error (image %v)", img.Bounds())
			}
			if !errors.Is(err, c.want) {
				t.Errorf("error %q is not %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.inMsg) {
				t.Errorf("error %q does not say %q", err, c.inMsg)
			}
			t.Log(err)
		})
	}
}

func TestScanCounter(t *testing.T) {
	defer func(n int) { maxJPEGScans = n }(maxJPEGScans)
	maxJPEGScans = 3 // progressive.jpg has more
	_, _, err := DecodeImage(bytes.NewReader(readTestdata(t, "progressive.jpg")))
	if !errors.Is(err, errTooManyScans) || !errors.Is(err, ErrImageFormat) {
		t.Errorf("progressive JPEG over the scan limit: %v", err)
	}
	maxJPEGScans = 256
	in := bytes.Repeat([]byte{0x00, 0xFF, 0xDA, 0xFF, 0x00}, maxJPEGScans+1)
	_, err = io.ReadAll(&scanCounter{r: bytes.NewReader(in), max: maxJPEGScans})
	if !errors.Is(err, errTooManyScans) {
		t.Errorf("got %v", err)
	}
	in = bytes.Repeat([]byte{0xFF, 0x00, 0xDA}, 1000) // stuffed bytes are not markers
	if _, err := io.ReadAll(&scanCounter{r: bytes.NewReader(in), max: 3}); err != nil {
		t.Errorf("got %v", err)
	}
}

// Every format and odd image type decodes to the right size, and toRGB
// gives what sam.ToRGB gives.
func TestDecodeImageFormats(t *testing.T) {
	for _, c := range []struct{ file, format string }{
		{"rgb.webp", "webp"}, {"lossy.webp", "webp"}, {"rgba.webp", "webp"},
		{"cmyk.jpg", "jpeg"}, {"progressive.jpg", "jpeg"}, {"gray.jpg", "jpeg"},
		{"rgba.png", "png"}, {"gray_alpha.png", "png"}, {"paletted.png", "png"}, {"gray16.png", "png"},
		{"frame.gif", "gif"},
	} {
		t.Run(c.file, func(t *testing.T) {
			img, format, err := DecodeImage(bytes.NewReader(readTestdata(t, c.file)))
			if err != nil {
				t.Fatal(err)
			}
			if format != c.format || img.Bounds().Dx() != 24 || img.Bounds().Dy() != 16 {
				t.Errorf("%s image %v", format, img.Bounds())
			}
			checkToRGB(t, img)
		})
	}
}

func checkToRGB(t *testing.T, img image.Image) {
	t.Helper()
	want, err := sam.ToRGB(img)
	if err != nil {
		t.Fatal(err)
	}
	got, err := toRGB(img)
	if err != nil {
		t.Fatal(err)
	}
	if got.W != want.W || got.H != want.H || !bytes.Equal(got.Pix, want.Pix) {
		t.Errorf("%T: toRGB differs from sam.ToRGB", img)
	}
}

func TestToRGBTypes(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	r := image.Rect(0, 0, 37, 23)
	fill := func(p []byte) { rng.Read(p) }
	rgba := image.NewRGBA(r)
	fill(rgba.Pix)
	for i := 3; i < len(rgba.Pix); i += 4 { // valid premultiplied values
		a := rgba.Pix[i]
		rgba.Pix[i-1], rgba.Pix[i-2], rgba.Pix[i-3] = min(rgba.Pix[i-1], a), min(rgba.Pix[i-2], a), min(rgba.Pix[i-3], a)
	}
	nrgba := image.NewNRGBA(r)
	fill(nrgba.Pix)
	gray := image.NewGray(r)
	fill(gray.Pix)
	g16 := image.NewGray16(r)
	fill(g16.Pix)
	n64 := image.NewNRGBA64(r)
	fill(n64.Pix)
	cmyk := image.NewCMYK(r)
	fill(cmyk.Pix)
	ycc := image.NewYCbCr(r, image.YCbCrSubsampleRatio420)
	fill(ycc.Y)
	fill(ycc.Cb)
	fill(ycc.Cr)
	pal := image.NewPaletted(r, color.Palette{color.Black, color.White, color.RGBA{200, 10, 10, 255}})
	for i := range pal.Pix {
		pal.Pix[i] = uint8(i % 3)
	}
	for _, img := range []image.Image{
		rgba, nrgba, gray, g16, n64, cmyk, ycc, pal,
		rgba.SubImage(image.Rect(3, 2, 30, 20)), ycc.SubImage(image.Rect(5, 3, 31, 22)),
	} {
		checkToRGB(t, img)
	}
}

// EXIF orientations 1 to 8: the tag is read, and the image comes out as a
// viewer shows it (the stored top-left pixel lands where the standard says).
func TestEXIFOrientation(t *testing.T) {
	src := image.NewNRGBA(image.Rect(0, 0, 48, 32))
	for y := 0; y < 32; y++ {
		for x := 0; x < 48; x++ {
			c := color.NRGBA{0, 0, 0, 255}
			if x < 16 && y < 16 { // the stored top-left block is white
				c = color.NRGBA{255, 255, 255, 255}
			}
			src.SetNRGBA(x, y, c)
		}
	}
	// Where the stored top-left corner is displayed: (right?, bottom?).
	corner := map[int][2]bool{1: {false, false}, 2: {true, false}, 3: {true, true}, 4: {false, true},
		5: {false, false}, 6: {true, false}, 7: {true, true}, 8: {false, true}}
	for o := 0; o <= 8; o++ {
		data := testutil.JPEGWithOrientation(src, o)
		want := max(o, 1)
		if got := jpegOrientation(data); got != want {
			t.Errorf("orientation %d read as %d", o, got)
		}
		img, _, err := DecodeImage(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		w, h := 48, 32
		if want >= 5 {
			w, h = 32, 48
		}
		if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
			t.Fatalf("orientation %d: %v, want %dx%d", o, b, w, h)
		}
		x, y := 4, 4
		if corner[want][0] {
			x = w - 5
		}
		if corner[want][1] {
			y = h - 5
		}
		if r, _, _, _ := img.At(x, y).RGBA(); r < 0xc000 {
			t.Errorf("orientation %d: the white corner is not at (%d, %d)", o, x, y)
		}
		raw, _, err := DecodeImage(bytes.NewReader(data), WithEXIF(false))
		if err != nil || raw.Bounds().Dx() != 48 {
			t.Errorf("WithEXIF(false): %v %v", raw.Bounds(), err)
		}
	}
}

// Orient maps every pixel exactly; Orient of the inverse orientation
// undoes it.
func TestOrientExact(t *testing.T) {
	src := image.NewNRGBA(image.Rect(0, 0, 5, 3))
	for i := range src.Pix {
		src.Pix[i] = uint8(i)
	}
	inverse := map[int]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}
	for o := 1; o <= 8; o++ {
		img, err := Orient(src, o)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Orient(img, inverse[o])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.(*image.NRGBA).Pix, src.Pix) {
			t.Errorf("orientation %d: not undone by %d", o, inverse[o])
		}
	}
	g := image.NewGray(image.Rect(0, 0, 3, 2))
	copy(g.Pix, []uint8{1, 2, 3, 4, 5, 6})
	r6, _ := Orient(g, 6) // 90 degrees clockwise
	if got := r6.(*image.Gray).Pix; !bytes.Equal(got, []uint8{4, 1, 5, 2, 6, 3}) {
		t.Errorf("orientation 6 of a grey image: %v", got)
	}
	for _, bad := range []int{0, 9, -1} {
		if _, err := Orient(src, bad); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("orientation %d: %v", bad, err)
		}
	}
}

// Broken EXIF blocks are ignored (orientation 1), never a panic.
func TestEXIFMalformed(t *testing.T) {
	good := testutil.JPEGWithOrientation(image.NewGray(image.Rect(0, 0, 8, 8)), 6)
	app1 := bytes.Index(good, []byte("Exif\x00\x00"))
	tiff := app1 + 6
	cases := map[string]func(b []byte){
		"bad byte order": func(b []byte) { b[tiff] = 'X' },
		"bad magic":      func(b []byte) { b[tiff+2] = 0 },
		"IFD far away":   func(b []byte) { binary.LittleEndian.PutUint32(b[tiff+4:], 1<<30) },
		"IFD before 8":   func(b []byte) { binary.LittleEndian.PutUint32(b[tiff+4:], 2) },
		"many entries": func(b []byte) {
			binary.LittleEndian.PutUint16(b[tiff+8:], 60000)
			binary.LittleEndian.PutUint16(b[tiff+10:], 0x0100)
		},
		"type LONG":      func(b []byte) { binary.LittleEndian.PutUint16(b[tiff+12:], 4) },
		"value 9":        func(b []byte) { binary.LittleEndian.PutUint16(b[tiff+18:], 9) },
		"segment length": func(b []byte) { binary.BigEndian.PutUint16(b[app1-2:], 60000) },
	}
	for name, mutate := range cases {
		b := append([]byte{}, good...)
		mutate(b)
		if o := jpegOrientation(b); o != 1 {
			t.Errorf("%s: orientation %d", name, o)
		}
	}
	for n := 0; n < len(good); n += 7 { // every truncation
		jpegOrientation(good[:n])
	}
	// Big-endian TIFF.
	be := append([]byte{}, good...)
	copy(be[tiff:], "MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x03")
	if o := jpegOrientation(be); o != 3 {
		t.Errorf("big-endian: orientation %d", o)
	}
}

// ReadImage reads files, refuses directories, and names the file.
func TestReadImage(t *testing.T) {
	img, err := ReadImage(filepath.Join("testdata", "images", "rgba.png"))
	if err != nil || img.Bounds().Dx() != 24 {
		t.Fatalf("%v %v", img, err)
	}
	if _, err := ReadImage("testdata"); !errors.Is(err, ErrImageFormat) {
		t.Errorf("directory: %v", err)
	}
	if _, err := ReadImage("testdata/nope.png"); err == nil || !strings.Contains(err.Error(), "nope.png") {
		t.Errorf("missing file: %v", err)
	}
	p := filepath.Join(t.TempDir(), "big.png")
	os.WriteFile(p, pngWithHeader(9000, 9000, 0), 0o644)
	if _, err := ReadImage(p); !errors.Is(err, ErrImageTooLarge) || !strings.Contains(err.Error(), "big.png") {
		t.Errorf("bomb: %v", err)
	}
	if _, err := ReadImage(p, WithMaxPixels(100_000_000)); !errors.Is(err, ErrImageFormat) {
		t.Errorf("bomb under a raised limit: %v", err)
	}
}

// WithHeader sees the displayed size before any pixel is decoded, and its
// error stops the decoding as it is.
func TestDecodeImageHeader(t *testing.T) {
	src := image.NewGray(image.Rect(0, 0, 40, 24))
	data := testutil.JPEGWithOrientation(src, 6)
	var gotW, gotH int
	img, _, err := DecodeImage(bytes.NewReader(data), WithHeader(func(w, h int, format string) error {
		gotW, gotH = w, h
		return nil
	}))
	if err != nil || gotW != 24 || gotH != 40 || img.Bounds().Dx() != 24 {
		t.Fatalf("header %dx%d, image %v, %v", gotW, gotH, img, err)
	}
	stop := errors.New("stop here")
	if _, _, err := DecodeImage(bytes.NewReader(data), WithHeader(func(int, int, string) error { return stop })); err != stop {
		t.Errorf("header error: %v", err)
	}
	// A bomb never reaches the callback.
	called := false
	DecodeImage(bytes.NewReader(pngWithHeader(30000, 30000, 2)), WithHeader(func(int, int, string) error { called = true; return nil }))
	if called {
		t.Error("the callback saw an image over the limit")
	}
}

// ToRGB's image is read by the outputs and the model without another
// conversion and gives the same results as the image it came from.
func TestRGBImage(t *testing.T) {
	img := testutil.Image(t, testutil.Golden("tiny", "dog_240", "image.png"))
	rgb, err := ToRGB(img)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := ToRGB(rgb); again != rgb {
		t.Error("ToRGB of an RGB converts it again")
	}
	if rgb.Bounds() != image.Rect(0, 0, 240, 160) || !rgb.Opaque() || rgb.At(-1, 0) != (color.RGBA{}) {
		t.Error("RGB's image methods")
	}
	checkToRGB(t, rgb)
	m := tinyModel(t)
	p := Prompt{Box: &Box{X0: 52, Y0: 28, X1: 187, Y1: 137}}
	want, err := m.Matte(context.Background(), img, p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Matte(context.Background(), rgb, p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want.Alpha {
		if got.Alpha[i] != want.Alpha[i] {
			t.Fatalf("alpha %d: %v from RGB, %v from the image", i, got.Alpha[i], want.Alpha[i])
		}
	}
	c1, _ := want.Cutout(img)
	c2, _ := want.Cutout(rgb)
	if !bytes.Equal(c1.Pix, c2.Pix) {
		t.Error("cutouts differ")
	}
	if _, err := ToRGB(&RGB{W: 3, H: 3, Pix: make([]uint8, 5)}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("short RGB: %v", err)
	}
}
