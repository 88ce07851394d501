package sam_test

import (
	"context"
	"fmt"
	"image/png"
	"log"
	"os"

	"github.com/mam-go/mam-go/sam"
	"github.com/mam-go/mam-go/weights"
)

// Segment an object interactively: encode the image once, then predict
// masks for prompts.
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
	f, err := os.Open("../testdata/golden/tiny/dog_240/image.png")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		log.Fatal(err)
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
	fmt.Println(cfg.Name, pred.K(), "masks, best", pred.Best(), pred.Masks().Shape)
	// Output: tiny 3 masks, best 1 [1 3 160 240]
}
