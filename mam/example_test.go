package mam_test

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"log"
	"os"

	"github.com/mam-go/mam-go/mam"
)

// The checkpoints of the examples are the small random-weight test model;
// use sam_vit_b_01ec64.pth and mam_vitb.pth (see Download) for real
// mattes.
const (
	samPath = "../testdata/golden/tiny/weights/sam.pth"
	mamPath = "../testdata/golden/tiny/weights/mam.pth"
)

func loadImage(path string) image.Image {
	f, err := os.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		log.Fatal(err)
	}
	return img
}

// Matte one object of a photo given a box around it.
func ExampleModel_Matte() {
	ctx := context.Background()
	model, err := mam.Load(ctx, samPath, mamPath)
	if err != nil {
		log.Fatal(err)
	}
	img := loadImage("../testdata/golden/tiny/dog_240/image.png")
	res, err := model.Matte(ctx, img, mam.Prompt{Box: &mam.Box{X0: 52.8, Y0: 28.8, X1: 187.2, Y1: 137.6}})
	if err != nil {
		log.Fatal(err)
	}
	// Write it with res.WriteAlphaPNG(w, 8), or cut the object out with
	// res.Cutout(img), or put it on a green screen with res.Composite.
	fmt.Printf("%dx%d matte, mode %s, SAM mask %d of %d\n", res.Width, res.Height, res.Mode, res.Index, len(res.Scores))

	// Output: 240x160 matte, mode postprocess, SAM mask 1 of 3
}

// Several instances of one image: the image is encoded once.
func ExampleModel_NewSession() {
	ctx := context.Background()
	model, err := mam.Load(ctx, samPath, mamPath)
	if err != nil {
		log.Fatal(err)
	}
	sess, err := model.NewSession(ctx, loadImage("../testdata/golden/tiny/dog_240/image.png"))
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range []mam.Prompt{
		{Points: []mam.Point{{X: 120, Y: 80, Label: 1}}},
		{Box: &mam.Box{X0: 10, Y0: 10, X1: 90, Y1: 150}},
	} {
		res, err := sess.Matte(ctx, p, mam.WithMode(mam.MaskGuide))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(len(res.Alpha) == res.Width*res.Height)
	}
	// Output:
	// true
	// true
}

// exampleSession loads the test model and encodes the test image, as
// ExampleModel_NewSession does.
func exampleSession(ctx context.Context) (*mam.Session, image.Image) {
	model, err := mam.Load(ctx, samPath, mamPath)
	if err != nil {
		log.Fatal(err)
	}
	img := loadImage("../testdata/golden/tiny/dog_240/image.png")
	sess, err := model.NewSession(ctx, img)
	if err != nil {
		log.Fatal(err)
	}
	return sess, img
}

// Iterative refinement: a first click, then a second one with the first
// result's mask as a prompt, as SAM's demos do.
func ExampleSession_Matte() {
	ctx := context.Background()
	sess, _ := exampleSession(ctx)
	first, err := sess.Matte(ctx, mam.Prompt{Points: []mam.Point{{X: 120, Y: 80, Label: 1}}})
	if err != nil {
		log.Fatal(err)
	}
	second, err := sess.Matte(ctx, mam.Prompt{
		Points:     []mam.Point{{X: 120, Y: 80, Label: 1}, {X: 30, Y: 140, Label: 0}},
		Mask:       first.MaskPrompt(),
		SingleMask: true, // with a mask prompt, one mask is enough
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(first.Scores), "masks, then", len(second.Scores))
	// Output: 3 masks, then 1
}

// Matte a mask that came from elsewhere (here, a rectangle).
func ExampleSession_MatteMask() {
	ctx := context.Background()
	sess, img := exampleSession(ctx)
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	mask := make([]uint8, w*h)
	for y := 30; y < 130; y++ {
		for x := 60; x < 180; x++ {
			mask[y*w+x] = 1
		}
	}
	res, err := sess.MatteMask(ctx, mask)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%dx%d matte of a given mask\n", res.Width, res.Height)
	// Output: 240x160 matte of a given mask
}
