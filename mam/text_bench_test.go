package mam

import (
	"context"
	"sync"
	"testing"

	"github.com/mam-go/mam-go/gdino"
	"github.com/mam-go/mam-go/internal/testutil"
)

// Text-prompt benchmarks at the released sizes (ViT-B + M2M + GroundingDINO
// Swin-T OGC), random weights, the real vocabulary:
//
//	go test ./mam/ -run '^$' -bench 'TextMatte' -benchtime 3x

var (
	textOnce  sync.Once
	textModel *Model
	textErr   error
)

func vitbText(b *testing.B) *Model {
	b.Helper()
	m := vitb(b)
	textOnce.Do(func() {
		tok, err := gdino.LoadVocab(testutil.Golden("gdino_tiny", "weights", "vocab.txt"))
		if err != nil {
			textErr = err
			return
		}
		cfg := gdino.SwinTOGC()
		d, err := gdino.New(gdino.RandomWeights(cfg, 5), cfg, tok)
		if err != nil {
			textErr = err
			return
		}
		textModel = &Model{SAM: m.SAM, M2M: m.M2M, Detector: d}
	})
	if textErr != nil {
		b.Fatal(textErr)
	}
	return textModel
}

// Random weights score every box alike: a box threshold of 0 keeps them
// all, so that the best one always exists.
var textOpts = []MatteOption{WithThresholds(0, 0.25, 0.5)}

// BenchmarkTextMatteViTB is a whole text-prompted matte of a 1024x768
// photo: SAM's image encoder, GroundingDINO (image side and caption), the
// best box through SAM's decoder, M2M and the refinement.
func BenchmarkTextMatteViTB(b *testing.B) {
	m := vitbText(b)
	img := benchImage()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.Matte(context.Background(), img, Prompt{Text: "the dog ."}, textOpts...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTextSecondCaptionViTB is one more caption on a session whose
// SAM embedding and detector image side are already computed (the
// captions alternate, so that each one runs the detector's caption side).
func BenchmarkTextSecondCaptionViTB(b *testing.B) {
	m := vitbText(b)
	s, err := m.NewSession(context.Background(), benchImage())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Matte(context.Background(), Prompt{Text: "a cat ."}, textOpts...); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	captions := []string{"the dog .", "a cat ."}
	for i := 0; i < b.N; i++ {
		if _, err := s.Matte(context.Background(), Prompt{Text: captions[i%2]}, textOpts...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTextCorrectionViTB is a text prompt corrected with a point, on
// a session that has already matted that caption: the detection is reused,
// only SAM's decoder, M2M and the refinement run.
func BenchmarkTextCorrectionViTB(b *testing.B) {
	m := vitbText(b)
	s, err := m.NewSession(context.Background(), benchImage())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Matte(context.Background(), Prompt{Text: "the dog ."}, textOpts...); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := Prompt{Text: "the dog .", Points: []Point{{X: 500, Y: 400, Label: 1}}}
		if _, err := s.Matte(context.Background(), p, textOpts...); err != nil {
			b.Fatal(err)
		}
	}
}
