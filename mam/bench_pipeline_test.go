package mam

import (
	"context"
	"io"
	"os"
	"testing"
	"time"
)

// BenchmarkPipelinePhoto mattes the photo named by $MAM_PHOTO (skipped
// without it) with the random-weight ViT-B model and writes what the
// matte command writes with -cutout: the alpha PNG and the cutout PNG
// (foreground estimation included, PNGFast). It reports the seconds of
// each stage and the share of the time spent outside the model:
//
//	MAM_PHOTO=photo48.jpg go test ./mam/ -run '^$' -bench PipelinePhoto -benchtime 1x -cpu 2
func BenchmarkPipelinePhoto(b *testing.B) {
	path := os.Getenv("MAM_PHOTO")
	if path == "" {
		b.Skip("set MAM_PHOTO to a photo")
	}
	m := vitb(b)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		img, err := ReadImage(path)
		if err != nil {
			b.Fatal(err)
		}
		w, h := img.Bounds().Dx(), img.Bounds().Dy()
		t1 := time.Now()
		res, err := m.Matte(ctx, img, Prompt{Box: &Box{X0: float64(w) / 8, Y0: float64(h) / 8, X1: float64(w) * 7 / 8, Y1: float64(h) * 7 / 8}})
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := EncodePNG(io.Discard, res.Gray(), PNGFast); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		cut, err := res.Cutout(img)
		if err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		if err := EncodePNG(io.Discard, cut, PNGFast); err != nil {
			b.Fatal(err)
		}
		t5 := time.Now()
		model := t2.Sub(t1).Seconds()
		outside := t5.Sub(t0).Seconds() - model
		b.ReportMetric(t1.Sub(t0).Seconds(), "decode_s")
		b.ReportMetric(model, "model_s")
		b.ReportMetric(t3.Sub(t2).Seconds(), "alpha_png_s")
		b.ReportMetric(t4.Sub(t3).Seconds(), "cutout_s")
		b.ReportMetric(t5.Sub(t4).Seconds(), "cutout_png_s")
		b.ReportMetric(outside/t5.Sub(t0).Seconds(), "outside_share")
	}
}
