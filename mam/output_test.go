package mam

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"
)

func testResult() (*Result, *image.NRGBA) {
	r := &Result{Width: 3, Height: 2, Alpha: []float32{0, 0.5, 1, 0.25, 1.5, -1}, Mask: []uint8{0, 1, 1, 0, 1, 0}}
	img := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	for i := 0; i < 6; i++ {
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = 200, 100, 50, 255
	}
	return r, img
}

func TestOutputs(t *testing.T) {
	r, img := testResult()
	// uint8(alpha*255) truncated, clamped to [0, 1], as the reference writes it.
	if got, want := r.Gray().Pix, []uint8{0, 127, 255, 63, 255, 0}; !bytes.Equal(got, want) {
		t.Errorf("Gray = %v, want %v", got, want)
	}
	if g := r.Gray16(); g.Gray16At(1, 0).Y != 32768 || g.Gray16At(2, 0).Y != 65535 {
		t.Errorf("Gray16: %v %v", g.Gray16At(1, 0), g.Gray16At(2, 0))
	}
	if got := r.MaskImage().Pix; !bytes.Equal(got, []uint8{0, 255, 255, 0, 255, 0}) {
		t.Errorf("MaskImage = %v", got)
	}
	c, err := r.Cutout(img, WithPlainColors())
	if err != nil {
		t.Fatal(err)
	}
	// The cutout's alpha is the alpha PNG's: 0.5 -> 127, truncated.
	if px := c.NRGBAAt(1, 0); px != (color.NRGBA{200, 100, 50, 127}) {
		t.Errorf("Cutout pixel = %v", px)
	}
	g, err := r.Composite(img, color.RGBA{0, 255, 0, 255}, WithPlainColors())
	if err != nil {
		t.Fatal(err)
	}
	// 0.5*200 + 0.5*0 = 100; 0.5*100 + 0.5*255 = 177.5 -> 177; 0.5*50 = 25
	if px := g.RGBAAt(1, 0); px != (color.RGBA{100, 177, 25, 255}) {
		t.Errorf("Composite pixel = %v", px)
	}
	bg := image.NewUniform(color.RGBA{10, 20, 30, 255})
	bgImg := image.NewRGBA(image.Rect(0, 0, 7, 5))
	for y := 0; y < 5; y++ {
		for x := 0; x < 7; x++ {
			bgImg.Set(x, y, bg.C)
		}
	}
	o, err := r.CompositeOver(img, bgImg)
	if err != nil {
		t.Fatal(err)
	}
	if px := o.RGBAAt(0, 0); px != (color.RGBA{10, 20, 30, 255}) {
		t.Errorf("CompositeOver background pixel = %v", px)
	}
	var buf bytes.Buffer
	for _, bits := range []int{8, 16} {
		buf.Reset()
		if err := r.WriteAlphaPNG(&buf, bits); err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(&buf); err != nil {
			t.Fatalf("%d-bit PNG: %v", bits, err)
		}
	}
	if err := r.WriteAlphaPNG(&buf, 12); err == nil {
		t.Error("12-bit PNG: no error")
	}
	if _, err := r.Cutout(image.NewNRGBA(image.Rect(0, 0, 4, 4))); err == nil {
		t.Error("size mismatch: no error")
	}
}

func TestParseColor(t *testing.T) {
	for _, c := range []struct {
		in   string
		want color.RGBA
		ok   bool
	}{
		{"green", color.RGBA{0, 255, 0, 255}, true},
		{"#10ff20", color.RGBA{16, 255, 32, 255}, true},
		{"0a0b0c", color.RGBA{10, 11, 12, 255}, true},
		{"#12345", color.RGBA{}, false},
		{"purple-ish", color.RGBA{}, false},
	} {
		got, err := ParseColor(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ParseColor(%q) = %v, %v", c.in, got, err)
		}
	}
}

// Cutout and Composite use the estimated foreground by default: the
// cutout's colours are Foreground's rounded to 8 bits, its alpha the alpha
// PNG's; the composite is the cutout's colours blended; the premultiplied
// cutout is the cutout as color.RGBAModel converts it.
func TestOutputsWithForeground(t *testing.T) {
	img, _, alpha, _, w, h := loadFGCase(t, "large")
	r := &Result{Width: w, Height: h, Alpha: alpha}
	F, err := r.Foreground(img)
	if err != nil {
		t.Fatal(err)
	}
	cut, err := r.Cutout(img)
	if err != nil {
		t.Fatal(err)
	}
	gray := r.Gray()
	for i := 0; i < w*h; i++ {
		for c := 0; c < 3; c++ {
			if want := uint8(F[3*i+c]*255 + 0.5); cut.Pix[4*i+c] != want {
				t.Fatalf("pixel %d channel %d: cutout %d, foreground %d", i, c, cut.Pix[4*i+c], want)
			}
		}
		if cut.Pix[4*i+3] != gray.Pix[i] {
			t.Fatalf("pixel %d: cutout alpha %d, alpha PNG %d", i, cut.Pix[4*i+3], gray.Pix[i])
		}
	}
	green := color.RGBA{0, 255, 0, 255}
	comp, err := r.Composite(img, green)
	if err != nil {
		t.Fatal(err)
	}
	comp2, err := r.Composite(cut, green, WithPlainColors())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(comp.Pix, comp2.Pix) {
		t.Error("composite differs from the cutout's colours blended")
	}
	pm, err := r.CutoutPremultiplied(img)
	if err != nil {
		t.Fatal(err)
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			if want := color.RGBAModel.Convert(cut.NRGBAAt(x, y)).(color.RGBA); pm.RGBAAt(x, y) != want {
				t.Fatalf("(%d, %d): premultiplied %v, want %v", x, y, pm.RGBAAt(x, y), want)
			}
		}
	}
	bg := image.NewNRGBA(image.Rect(0, 0, 2*w+3, h/2))
	for i := range bg.Pix {
		bg.Pix[i] = uint8(i)
	}
	over, err := r.CompositeOver(img, bg)
	if err != nil {
		t.Fatal(err)
	}
	over2, err := r.CompositeOver(cut, bg, WithPlainColors())
	if err != nil || !bytes.Equal(over.Pix, over2.Pix) {
		t.Errorf("CompositeOver: %v", err)
	}
}

// A red object with soft edges photographed on green: the plain product
// keeps green in the soft edge's colours, the estimated foreground is red.
func TestForegroundRemovesBleeding(t *testing.T) {
	const w, h = 64, 48
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	r := &Result{Width: w, Height: h, Alpha: make([]float32, w*h)}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			a := clamp01(float32(x-20) / 24) // a ramp from x = 20 to 44
			r.Alpha[y*w+x] = a
			img.SetNRGBA(x, y, color.NRGBA{uint8(220*a + 0.5), uint8(200*(1-a) + 0.5), 30, 255})
		}
	}
	est, err := r.Cutout(img)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := r.Cutout(img, WithPlainColors())
	if err != nil {
		t.Fatal(err)
	}
	px := est.NRGBAAt(26, 20) // alpha 0.25: a quarter red, three quarters green
	if px.R < 180 || px.G > 40 {
		t.Errorf("estimated foreground at alpha 0.25: %v, want about (220, 0, 30)", px)
	}
	if p := plain.NRGBAAt(26, 20); p.G < 120 {
		t.Errorf("plain colours at alpha 0.25: %v", p)
	}
}
