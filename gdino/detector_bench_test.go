package gdino

import (
	"context"
	"image"
	"image/color"
	"sync"
	"testing"
)

var (
	swinTOnce sync.Once
	swinTDet  *Detector
)

// swinTDetector is the Swin-T OGC configuration with random weights (drawn
// through the same constructors as a checkpoint) and the real vocabulary.
func swinTDetector(b *testing.B) *Detector {
	b.Helper()
	swinTOnce.Do(func() {
		cfg := SwinTOGC()
		d, err := New(RandomWeights(cfg, 1), cfg, tinyDetector(b).Tokenizer())
		if err != nil {
			b.Fatal(err)
		}
		swinTDet = d
	})
	return swinTDet
}

// photo is a w x h test image with gradients (its content does not change
// the work done).
func photo(w, h int) image.Image {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetRGBA(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), uint8((x + y) % 256), 255})
		}
	}
	return m
}

// BenchmarkDetectSwinT is the whole detector (preprocessing, Swin-T, BERT,
// the 6-layer feature enhancer, query selection, the 6-layer decoder and
// post-processing) on a 1065x800 photo, whose resized input is 800x1065 as
// in the reference's timing, and a 6-token caption.
func BenchmarkDetectSwinT(b *testing.B) {
	d := swinTDetector(b)
	img := photo(1065, 800)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Detect(context.Background(), img, "a dog . a cat .", DefaultOptions()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDetectCaptionSwinT is one more caption on an image already
// encoded (the image side computed once).
func BenchmarkDetectCaptionSwinT(b *testing.B) {
	d := swinTDetector(b)
	im, err := d.Encode(context.Background(), photo(1065, 800), DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := im.Detect(context.Background(), "a dog . a cat .", DefaultOptions()); err != nil {
			b.Fatal(err)
		}
	}
}
