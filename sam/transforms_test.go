package sam

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"math/rand"
	"os"
	"testing"

	"github.com/sbinet/npyio/npy"

	"github.com/mam-go/mam-go/internal/testutil"
)

// goldenImages are the golden images: dog_240 is downscaled, demo_120 is
// upscaled on its short side.
var goldenImages = []string{"dog_240", "demo_120"}

// loadPNG decodes a golden image.png as RGB.
func loadPNG(t testing.TB, name string) *RGB {
	t.Helper()
	rgb, err := ToRGB(testutil.Image(t, testutil.Golden("tiny", name, "image.png")))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return rgb
}

// readNPYBytes reads a uint8 .npy file (weights.ReadNPYFile does not
// decode uint8 arrays).
func readNPYBytes(t testing.TB, path string) ([]uint8, []int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := npy.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var v []uint8
	if err := r.Read(&v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v, r.Header.Descr.Shape
}

// checkBytes compares an RGB image to a golden HxWx3 uint8 array, byte for byte.
func checkBytes(t *testing.T, what string, got *RGB, path string) {
	t.Helper()
	wv, shape := readNPYBytes(t, path)
	if len(shape) != 3 || shape[0] != got.H || shape[1] != got.W || shape[2] != 3 {
		t.Fatalf("%s: got %dx%dx3, golden shape %v", what, got.H, got.W, shape)
	}
	bad, first, maxd := 0, -1, 0
	for i, g := range got.Pix {
		d := int(g) - int(wv[i])
		if d < 0 {
			d = -d
		}
		if d != 0 {
			if first < 0 {
				first = i
			}
			bad++
			maxd = max(maxd, d)
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d bytes differ (max %d), first at %s: got %d want %v",
			what, bad, len(got.Pix), maxd, testutil.Index(first, shape), got.Pix[first], wv[first])
	} else {
		t.Logf("%s: %d bytes identical", what, len(got.Pix))
	}
}

func TestGoldenImageDecode(t *testing.T) {
	for _, name := range goldenImages {
		t.Run(name, func(t *testing.T) {
			checkBytes(t, "image", loadPNG(t, name), testutil.Golden("tiny", name, "image.npy"))
		})
	}
}

func TestPreprocessShape(t *testing.T) {
	tests := []struct {
		h, w, long, newh, neww int
	}{
		{160, 240, 256, 171, 256}, // dog_240
		{224, 120, 256, 256, 137}, // demo_120
		{480, 640, 1024, 768, 1024},
		{1080, 1920, 1024, 576, 1024},
		{1024, 1024, 1024, 1024, 1024},
		{1, 3000, 1024, 0, 1024},
		{3, 2, 1024, 1024, 683},
	}
	for _, tc := range tests {
		h, w := PreprocessShape(tc.h, tc.w, tc.long)
		if h != tc.newh || w != tc.neww {
			t.Errorf("PreprocessShape(%d, %d, %d) = %d, %d; want %d, %d", tc.h, tc.w, tc.long, h, w, tc.newh, tc.neww)
		}
	}
	// The golden image.json records orig and resized (h, w).
	for _, name := range goldenImages {
		var info struct{ Orig, Resized [2]int }
		testutil.JSON(t, testutil.Golden("tiny", name, "image.json"), &info)
		h, w := PreprocessShape(info.Orig[0], info.Orig[1], Tiny().ImageSize)
		if h != info.Resized[0] || w != info.Resized[1] {
			t.Errorf("%s: PreprocessShape = %d, %d; golden %v", name, h, w, info.Resized)
		}
	}
}

func TestResizePILGolden(t *testing.T) {
	for _, name := range goldenImages {
		t.Run(name, func(t *testing.T) {
			img := loadPNG(t, name)
			h, w := PreprocessShape(img.H, img.W, Tiny().ImageSize)
			got := ResizePIL(img, w, h)
			if got == nil {
				t.Fatal("ResizePIL returned nil")
			}
			checkBytes(t, "resized", got, testutil.Golden("tiny", name, "resized.npy"))
		})
	}
}

func TestPreprocessGolden(t *testing.T) {
	cfg := Tiny()
	for _, name := range goldenImages {
		t.Run(name, func(t *testing.T) {
			img := loadPNG(t, name)
			in, newh, neww := cfg.Preprocess(img)
			if in == nil {
				t.Fatal("Preprocess returned nil")
			}
			var info struct{ Resized [2]int }
			testutil.JSON(t, testutil.Golden("tiny", name, "image.json"), &info)
			if newh != info.Resized[0] || neww != info.Resized[1] {
				t.Errorf("size %d, %d; golden %v", newh, neww, info.Resized)
			}
			want := testutil.NPY(t, testutil.Golden("tiny", name, "input.npy"))
			testutil.Check(t, "input", in.Data, in.Shape, want, 1e-6, false)
		})
	}
}

func TestApplyCoordsGolden(t *testing.T) {
	for _, name := range goldenImages {
		var info struct {
			Orig, Resized [2]int
			Cases         []string
		}
		testutil.JSON(t, testutil.Golden("tiny", name, "image.json"), &info)
		h, w, newh, neww := info.Orig[0], info.Orig[1], info.Resized[0], info.Resized[1]
		for _, c := range info.Cases {
			var cs struct {
				Box           []float64   `json:"box"`
				BoxResized    []float64   `json:"box_resized"`
				Points        [][]float64 `json:"points"`
				PointsResized [][]float64 `json:"points_resized"`
			}
			testutil.JSON(t, testutil.Golden("tiny", name, c, "case.json"), &cs)
			var got, want [][2]float64
			if len(cs.PointsResized) != len(cs.Points) || (len(cs.Box) == 4) != (len(cs.BoxResized) == 4) {
				t.Fatalf("%s/%s: case.json lacks resized coordinates", name, c)
			}
			for i, p := range cs.Points {
				x, y := ApplyCoords(p[0], p[1], h, w, newh, neww)
				got = append(got, [2]float64{x, y})
				want = append(want, [2]float64{cs.PointsResized[i][0], cs.PointsResized[i][1]})
			}
			if len(cs.Box) == 4 {
				for i := 0; i < 4; i += 2 {
					x, y := ApplyCoords(cs.Box[i], cs.Box[i+1], h, w, newh, neww)
					got = append(got, [2]float64{x, y})
					want = append(want, [2]float64{cs.BoxResized[i], cs.BoxResized[i+1]})
				}
			}
			if len(got) == 0 {
				t.Errorf("%s/%s: no coordinates in case.json", name, c)
			}
			for i := range got {
				// Exact: the same float64 operations as numpy.
				if got[i] != want[i] {
					t.Errorf("%s/%s: coordinate %d = %v, golden %v", name, c, i, got[i], want[i])
				}
			}
		}
	}
}

// hugeImage reports enormous bounds without holding any pixels.
type hugeImage struct{ image.Gray }

func (*hugeImage) Bounds() image.Rectangle { return image.Rect(0, 0, 1<<15, 1<<14) }

func TestToRGB(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const w, h = 5, 3
	nrgba := image.NewNRGBA(image.Rect(2, 1, 2+w, 1+h)) // non-zero origin
	rgba := image.NewRGBA(image.Rect(0, 0, w, h))
	gray := image.NewGray(image.Rect(0, 0, w, h))
	gray16 := image.NewGray16(image.Rect(0, 0, w, h))
	ycc := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	pal := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.RGBA{10, 20, 30, 255}, color.NRGBA{200, 100, 50, 128}})
	wantN := make([]uint8, w*h*3)
	wantR := make([]uint8, w*h*3)
	wantG := make([]uint8, w*h*3)
	wantG16 := make([]uint8, w*h*3)
	wantP := make([]uint8, w*h*3)
	for i := range ycc.Y {
		ycc.Y[i] = uint8(rng.Intn(256))
	}
	for i := range ycc.Cb {
		ycc.Cb[i], ycc.Cr[i] = uint8(rng.Intn(256)), uint8(rng.Intn(256))
	}
	wantY := make([]uint8, w*h*3)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := (y*w + x) * 3
			// NRGBA: straight colour, any alpha -> the colour bytes unchanged.
			c := color.NRGBA{uint8(rng.Intn(256)), uint8(rng.Intn(256)), uint8(rng.Intn(256)), uint8(rng.Intn(256))}
			nrgba.SetNRGBA(2+x, 1+y, c)
			wantN[i], wantN[i+1], wantN[i+2] = c.R, c.G, c.B
			// RGBA: premultiplied by a; un-premultiplied back within rounding.
			a := uint8(64 + rng.Intn(192))
			r, g, b := uint8(rng.Intn(256)), uint8(rng.Intn(256)), uint8(rng.Intn(256))
			pm := func(v uint8) uint8 { return uint8((int(v)*int(a) + 127) / 255) }
			rgba.SetRGBA(x, y, color.RGBA{pm(r), pm(g), pm(b), a})
			wantR[i], wantR[i+1], wantR[i+2] = r, g, b
			v := uint8(rng.Intn(256))
			gray.SetGray(x, y, color.Gray{v})
			wantG[i], wantG[i+1], wantG[i+2] = v, v, v
			v16 := uint16(rng.Intn(65536))
			gray16.SetGray16(x, y, color.Gray16{v16})
			hb := uint8(v16 >> 8)
			wantG16[i], wantG16[i+1], wantG16[i+2] = hb, hb, hb
			k := uint8(rng.Intn(2))
			pal.SetColorIndex(x, y, k)
			pc := []color.NRGBA{{10, 20, 30, 255}, {200, 100, 50, 128}}[k]
			wantP[i], wantP[i+1], wantP[i+2] = pc.R, pc.G, pc.B
			yc := ycc.YCbCrAt(x, y)
			r8, g8, b8 := color.YCbCrToRGB(yc.Y, yc.Cb, yc.Cr)
			wantY[i], wantY[i+1], wantY[i+2] = r8, g8, b8
		}
	}
	tests := []struct {
		name string
		img  image.Image
		want []uint8
		tol  int
	}{
		{"nrgba", nrgba, wantN, 0},
		{"rgba", rgba, wantR, 2},
		{"gray", gray, wantG, 0},
		{"gray16", gray16, wantG16, 0},
		{"paletted", pal, wantP, 1},
		{"ycbcr", ycc, wantY, 0},
	}
	for _, tc := range tests {
		got, err := ToRGB(tc.img)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got.W != w || got.H != h || len(got.Pix) != w*h*3 {
			t.Errorf("%s: got %dx%d with %d bytes", tc.name, got.W, got.H, len(got.Pix))
			continue
		}
		for i := range tc.want {
			d := int(got.Pix[i]) - int(tc.want[i])
			if d < -tc.tol || d > tc.tol {
				t.Errorf("%s: byte %d = %d, want %d (+-%d)", tc.name, i, got.Pix[i], tc.want[i], tc.tol)
				break
			}
		}
	}

	bad := []struct {
		name string
		img  image.Image
	}{
		{"nil", nil},
		{"empty", image.NewNRGBA(image.Rect(0, 0, 0, 7))},
		{"huge", &hugeImage{}},
	}
	for _, tc := range bad {
		if _, err := ToRGB(tc.img); !errors.Is(err, ErrBadImage) {
			t.Errorf("%s: err = %v, want ErrBadImage", tc.name, err)
		}
	}
}

func TestResizePILProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for trial := 0; trial < 20; trial++ {
		w, h := 1+rng.Intn(40), 1+rng.Intn(40)
		nw, nh := 1+rng.Intn(60), 1+rng.Intn(60)
		// A constant image stays constant: the weights of each output sum
		// to one in fixed point.
		c := [3]uint8{uint8(rng.Intn(256)), uint8(rng.Intn(256)), uint8(rng.Intn(256))}
		src := &RGB{W: w, H: h, Pix: make([]uint8, w*h*3)}
		for i := range src.Pix {
			src.Pix[i] = c[i%3]
		}
		got := ResizePIL(src, nw, nh)
		if got == nil || got.W != nw || got.H != nh || len(got.Pix) != nw*nh*3 {
			t.Fatalf("%dx%d -> %dx%d: bad result", w, h, nw, nh)
		}
		for i, v := range got.Pix {
			if v != c[i%3] {
				t.Fatalf("%dx%d -> %dx%d: constant %v became %d at byte %d", w, h, nw, nh, c, v, i)
			}
		}
	}
	// Same size: an identical copy, not the same buffer.
	src := &RGB{W: 4, H: 2, Pix: make([]uint8, 24)}
	for i := range src.Pix {
		src.Pix[i] = uint8(rng.Intn(256))
	}
	got := ResizePIL(src, 4, 2)
	for i := range src.Pix {
		if got.Pix[i] != src.Pix[i] {
			t.Fatalf("identity resize changed byte %d", i)
		}
	}
	got.Pix[0]++
	if got.Pix[0] == src.Pix[0] {
		t.Error("identity resize shares the source buffer")
	}
	// Invalid input gives nil.
	for _, tc := range []struct {
		src    *RGB
		nw, nh int
	}{
		{nil, 2, 2},
		{&RGB{W: 2, H: 2, Pix: make([]uint8, 5)}, 2, 2},
		{src, 0, 3},
		{src, 3, -1},
	} {
		if ResizePIL(tc.src, tc.nw, tc.nh) != nil {
			t.Errorf("ResizePIL(%v, %d, %d) should be nil", tc.src != nil, tc.nw, tc.nh)
		}
	}
	if in, _, _ := Tiny().Preprocess(&RGB{}); in != nil {
		t.Error("Preprocess of an empty image should be nil")
	}
}
