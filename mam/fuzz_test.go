package mam

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	fuzzModelOnce sync.Once
	fuzzModel     *Model
)

// FuzzDecodeImage decodes arbitrary bytes as an image (a pixel limit of
// 64 K, EXIF on or off) and, when that works, takes a box and a point
// through the prompt checks, the tiny model, the cutout (with foreground
// estimation) and the PNG encoder. Nothing may panic; errors must carry
// the package's sentinels. Seeds: the images of testdata/images and
// testdata/fuzz/FuzzDecodeImage.
func FuzzDecodeImage(f *testing.F) {
	ents, err := os.ReadDir(filepath.Join("testdata", "images"))
	if err != nil {
		f.Fatal(err)
	}
	for i, e := range ents {
		b, err := os.ReadFile(filepath.Join("testdata", "images", e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, i%2 == 0, 2.0, 3.0, 20.0, 12.0, 10.0, 8.0)
	}
	f.Fuzz(func(t *testing.T, data []byte, exif bool, x0, y0, x1, y1, px, py float64) {
		img, _, err := DecodeImage(bytes.NewReader(data), WithMaxPixels(1<<16), WithEXIF(exif))
		if err != nil {
			if !errors.Is(err, ErrImageFormat) && !errors.Is(err, ErrImageTooLarge) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		b := img.Bounds()
		w, h := b.Dx(), b.Dy()
		if w <= 0 || h <= 0 || w*h > 1<<16 {
			t.Fatalf("decoded a %dx%d image", w, h)
		}
		p := Prompt{Box: &Box{X0: x0, Y0: y0, X1: x1, Y1: y1}, Points: []Point{{X: px, Y: py, Label: 1}}}
		if err := p.ValidateFor(w, h); err != nil {
			if !errors.Is(err, ErrBadPrompt) {
				t.Fatalf("prompt error without ErrBadPrompt: %v", err)
			}
			if math.IsNaN(x0) || x1 < x0 || px < 0 || px > float64(w) {
				return
			}
			p.Box = nil // try the point alone
			if p.ValidateFor(w, h) != nil {
				return
			}
		}
		fuzzModelOnce.Do(func() { fuzzModel = tinyModel(t) })
		res, err := fuzzModel.Matte(context.Background(), img, p)
		if err != nil {
			// Images too thin for the model's resize are refused.
			return
		}
		if res.Width != w || res.Height != h || len(res.Alpha) != w*h {
			t.Fatalf("matte %dx%d (%d values) of a %dx%d image", res.Width, res.Height, len(res.Alpha), w, h)
		}
		cut, err := res.Cutout(img)
		if err != nil {
			t.Fatal(err)
		}
		if err := EncodePNG(io.Discard, cut, PNGFast); err != nil {
			t.Fatal(err)
		}
	})
}
