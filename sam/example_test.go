package sam_test

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"log"

	"github.com/mam-go/mam-go/sam"
	"github.com/mam-go/mam-go/weights"
)

// Segment an object interactively: encode the image once, then predict
// masks for prompts. The checkpoint is the small random-weight test model
// (sam_vit_b_01ec64.pth loads the same way), the image a drawn disc.
func ExamplePredictor() {
	store, err := weights.Open("../testdata/golden/tiny/weights/sam.pth")
	if err != nil {
		log.Fatal(err)
	}
	cfg, err := sam.DetectConfig(store)
	if err != nil {
		log.Fatal(err)
	}
	model, err := sam.New(store, cfg)
	if err != nil {
		log.Fatal(err)
	}
	img := image.NewRGBA(image.Rect(0, 0, 240, 160))
	for y := 0; y < 160; y++ {
		for x := 0; x < 240; x++ {
			c := color.RGBA{40, 40, 40, 255}
			if (x-120)*(x-120)+(y-80)*(y-80) < 50*50 {
				c = color.RGBA{220, 120, 60, 255}
			}
			img.Set(x, y, c)
		}
	}

	p := sam.NewPredictor(model)
	if err := p.SetImage(context.Background(), img); err != nil {
		log.Fatal(err)
	}
	pred, err := p.Predict(context.Background(), sam.Prompt{
		Points: []sam.Point{{X: 120, Y: 80, Label: 1}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Name, pred.K(), "masks", pred.Masks().Shape)
	// Output: tiny 3 masks [1 3 160 240]
}
