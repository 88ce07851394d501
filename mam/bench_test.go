package mam

import (
	"context"
	"github.com/mam-go/mam-go/internal/testutil"
	"image"
	"image/color"
	"math/rand"
	"sync"
	"testing"

	"github.com/mam-go/mam-go/m2m"
	"github.com/mam-go/mam-go/sam"
)

// Benchmarks at the released ViT-B size (1024 px), with seeded random
// weights made in Go, so no checkpoint is needed:
//
//	go test ./mam/ -run '^$' -bench ViTB -benchtime 3x -cpu 1,2

var (
	vitbOnce  sync.Once
	vitbModel *Model
	vitbErr   error
)

func vitb(b *testing.B) *Model {
	b.Helper()
	vitbOnce.Do(func() {
		vitbModel, vitbErr = New(sam.RandomWeights(sam.ViTB(), 1), m2m.RandomWeights(m2m.Default(), 2))
	})
	if vitbErr != nil {
		b.Fatal(vitbErr)
	}
	return vitbModel
}

// vitbSession is the ViT-B model and a session on benchImage.
func vitbSession(b *testing.B) (*Model, *Session) {
	m := vitb(b)
	s, err := m.NewSession(context.Background(), benchImage())
	if err != nil {
		b.Fatal(err)
	}
	return m, s
}

// benchImage is a seeded random photo-sized image (1024 x 768).
func benchImage() image.Image {
	rng := rand.New(rand.NewSource(3))
	img := image.NewRGBA(image.Rect(0, 0, 1024, 768))
	for y := 0; y < 768; y++ {
		for x := 0; x < 1024; x++ {
			v := uint8(rng.Intn(64)) + uint8((x+y)/16)
			img.Set(x, y, color.RGBA{v, v / 2, 255 - v, 255})
		}
	}
	return img
}

var benchPrompt = Prompt{Box: &Box{X0: 200, Y0: 150, X1: 800, Y1: 650}}

// BenchmarkEncoderViTB times the image encoder (preprocessing included).
func BenchmarkEncoderViTB(b *testing.B) {
	m := vitb(b)
	img := benchImage()
	testutil.Bench(b, func() error {
		_, err := m.NewSession(context.Background(), img)
		return err
	})
}

// BenchmarkDecoderViTB times one prompt through the prompt encoder and
// mask decoder, with the postprocessing of the best mask to a binary mask
// at the original size (what the matting pipeline uses);
// DecoderAllMasksViTB postprocesses all three logit masks, as the
// reference does.
func BenchmarkDecoderViTB(b *testing.B) { benchDecoder(b, false) }

// BenchmarkDecoderAllMasksViTB is DecoderViTB postprocessing all three
// masks.
func BenchmarkDecoderAllMasksViTB(b *testing.B) { benchDecoder(b, true) }

func benchDecoder(b *testing.B, all bool) {
	_, s := vitbSession(b)
	in := sam.Prompt{Box: &sam.Box{X0: 200, Y0: 150, X1: 800, Y1: 650}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pr, err := s.Predictor().Predict(context.Background(), in)
		if err != nil {
			b.Fatal(err)
		}
		if all {
			pr.Masks()
		} else {
			pr.Binary(pr.Best())
		}
	}
}

// BenchmarkM2MViTB times the M2M module alone, on the image's region of
// the padded input as Matte runs it (1024 x 768 of 1024 x 1024);
// M2MSquareViTB computes the whole square, as the reference does.
func BenchmarkM2MViTB(b *testing.B) { benchM2M(b, true) }

// BenchmarkM2MSquareViTB is M2MViTB computing the whole 1024 x 1024 mattes.
func BenchmarkM2MSquareViTB(b *testing.B) { benchM2M(b, false) }

func benchM2M(b *testing.B, region bool) {
	m, s := vitbSession(b)
	p := s.Predictor()
	pr, err := p.Predict(context.Background(), sam.Prompt{Box: &sam.Box{X0: 200, Y0: 150, X1: 800, Y1: 650}})
	if err != nil {
		b.Fatal(err)
	}
	guide := pr.LowResMask(pr.Best())
	rows, cols := 0, 0
	if region {
		rows, cols = p.InputSize()
	}
	testutil.Bench(b, func() error {
		_, err := m.M2M.ForwardRegion(context.Background(), p.Embeddings(), p.Input(), guide, rows, cols)
		return err
	})
}

// BenchmarkSecondPromptViTB times a matte on an image already encoded:
// decoder + M2M + refinement.
func BenchmarkSecondPromptViTB(b *testing.B) {
	_, s := vitbSession(b)
	testutil.Bench(b, func() error {
		_, err := s.Matte(context.Background(), benchPrompt)
		return err
	})
}

// BenchmarkMatteViTB times a whole Matte: encoder, decoder, M2M, refinement.
func BenchmarkMatteViTB(b *testing.B) {
	m := vitb(b)
	img := benchImage()
	testutil.Bench(b, func() error {
		_, err := m.Matte(context.Background(), img, benchPrompt)
		return err
	})
}
