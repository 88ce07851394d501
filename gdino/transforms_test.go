package gdino

import (
	"errors"
	"image"
	"image/color"
	"math"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/sam"
)

func TestPreprocessGolden(t *testing.T) {
	img := testutil.Image(t, testutil.Golden("gdino_tiny", "cat_dog_240", "image.png"))
	cfg := Tiny()
	rgb, err := sam.ToRGB(img)
	if err != nil {
		t.Fatal(err)
	}
	// The photo itself.
	photo := imgGolden(t, "image")
	for i, v := range photo.Float32s() {
		if float32(rgb.Pix[i]) != v {
			t.Fatalf("image.png decodes to %d at %d, image.npy has %v", rgb.Pix[i], i, v)
		}
	}
	// Pillow's resize, bit for bit.
	r, err := resizeImage(rgb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := imgGolden(t, "resized")
	if r.H != want.Shape[0] || r.W != want.Shape[1] {
		t.Fatalf("resized to %dx%d, want %v", r.W, r.H, want.Shape)
	}
	bad := 0
	for i, v := range want.Float32s() {
		if float32(r.Pix[i]) != v {
			if bad == 0 {
				t.Errorf("resized: first difference at %d: got %d want %v", i, r.Pix[i], v)
			}
			bad++
		}
	}
	t.Logf("resized: %d of %d bytes differ", bad, len(r.Pix))
	// ToTensor + Normalize.
	in, h, w, err := Preprocess(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Check(t, "input", in, []int{1, 3, h, w}, imgGolden(t, "input"), 1e-6, false)
}

func TestResizeShape(t *testing.T) {
	for _, tc := range []struct {
		w, h, size, max int
		oh, ow          int
	}{
		{240, 180, 100, 160, 100, 133},    // the golden photo
		{1065, 800, 800, 1333, 800, 1065}, // short side already 800: unchanged
		{1, 1, 800, 1333, 800, 800},       // square: both sides become size
		{640, 480, 800, 1333, 800, 1066},  // int(800*640/480) truncates 1066.67
		{480, 640, 800, 1333, 1066, 800},
		{2000, 3, 800, 1333, 2, 1333},      // max_size: size = round(1333*3/2000) = 2
		{3, 2000, 800, 1333, 1333, 2},      // the same, tall
		{2000, 1000, 800, 1333, 666, 1332}, // round(666.5) = 666 (half to even)
		{2002, 1000, 800, 1333, 666, 1333}, // round(665.83) = 666, int(666*2.002) = 1333
		{10000, 1, 800, 1333, 1, 1},        // size rounds to 0: clamped to 1 pixel
		{500, 400, 800, 0, 800, 1000},      // no max_size
	} {
		oh, ow := resizeShape(tc.w, tc.h, tc.size, tc.max)
		if oh != tc.oh || ow != tc.ow {
			t.Errorf("resizeShape(%d, %d, %d, %d) = (%d, %d), want (%d, %d)", tc.w, tc.h, tc.size, tc.max, oh, ow, tc.oh, tc.ow)
		}
	}
}

// uniform returns a w x h image of one colour.
func uniform(w, h int, c color.NRGBA) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetNRGBA(x, y, c)
		}
	}
	return m
}

func TestPreprocessSmallAndWide(t *testing.T) {
	c := color.NRGBA{R: 200, G: 10, B: 128, A: 255}
	for _, tc := range []struct {
		name   string
		w, h   int
		cfg    Config
		oh, ow int
	}{
		{"1x1 tiny", 1, 1, Tiny(), 100, 100},
		{"1x1 swint", 1, 1, SwinTOGC(), 800, 800},
		{"2000x3 swint", 2000, 3, SwinTOGC(), 2, 1333},
		{"3x2000 swint", 3, 2000, SwinTOGC(), 1333, 2},
	} {
		in, h, w, err := Preprocess(uniform(tc.w, tc.h, c), tc.cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if h != tc.oh || w != tc.ow || len(in) != 3*h*w {
			t.Fatalf("%s: %dx%d (%d values), want %dx%d", tc.name, w, h, len(in), tc.ow, tc.oh)
		}
		// A uniform image stays uniform: (p/255 - mean) / std per channel.
		for ch, p := range []uint8{c.R, c.G, c.B} {
			want := (float32(p)/255 - imgMean[ch]) / imgStd[ch]
			for _, v := range in[ch*h*w : (ch+1)*h*w] {
				if v != want {
					t.Fatalf("%s: channel %d: %v, want %v", tc.name, ch, v, want)
				}
			}
		}
	}
}

func TestPreprocessErrors(t *testing.T) {
	for name, img := range map[string]image.Image{
		"nil":      nil,
		"empty":    image.NewRGBA(image.Rect(0, 0, 0, 5)),
		"no rows":  image.NewGray(image.Rect(3, 3, 9, 3)),
		"negative": &image.RGBA{Rect: image.Rectangle{Min: image.Pt(5, 5), Max: image.Pt(2, 9)}},
	} {
		in, h, w, err := Preprocess(img, Tiny())
		if err == nil || !errors.Is(err, sam.ErrBadImage) || in != nil || h != 0 || w != 0 {
			t.Errorf("%s: got %d values %dx%d, error %v", name, len(in), w, h, err)
		}
	}
	bad := Tiny()
	bad.ResizeShort = 0
	if _, _, _, err := Preprocess(uniform(4, 4, color.NRGBA{A: 255}), bad); err == nil {
		t.Error("resize size 0: no error")
	}
}

func TestNormalizeMatchesFloat64(t *testing.T) {
	// Each value is within float32 rounding of the exact formula.
	r := &sam.RGB{W: 256, H: 1, Pix: make([]uint8, 3*256)}
	for i := range r.Pix {
		r.Pix[i] = uint8(i / 3)
	}
	in := normalizeImage(r)
	mean, std := [3]float64{0.485, 0.456, 0.406}, [3]float64{0.229, 0.224, 0.225}
	for ch := 0; ch < 3; ch++ {
		for x := 0; x < 256; x++ {
			want := (float64(x)/255 - mean[ch]) / std[ch]
			if d := math.Abs(float64(in[ch*256+x]) - want); d > 1e-6 {
				t.Fatalf("channel %d value %d: %v, want %v", ch, x, in[ch*256+x], want)
			}
		}
	}
}
