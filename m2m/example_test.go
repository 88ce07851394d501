package m2m_test

import (
	"context"
	"fmt"
	"log"

	"github.com/mam-go/mam-go/m2m"
	"github.com/mam-go/mam-go/nn"
)

// Turn a guide mask into mattes. The weights are random here (load
// mam_vitb.pth with weights.Open and m2m.DetectConfig); the inputs are zeros
// of the shapes SAM gives for a 256-pixel input: embeddings (1, 32, 16,
// 16), the normalised input (1, 3, 256, 256) and the low-res mask (1, 1,
// 64, 64).
func ExampleDecoder_Forward() {
	cfg := m2m.Tiny()
	d, err := m2m.New(m2m.RandomWeights(cfg, 1), cfg)
	if err != nil {
		log.Fatal(err)
	}
	e := 16
	out, err := d.Forward(context.Background(),
		nn.NewTensor(nil, 1, cfg.FeatDim, e, e), nn.NewTensor(nil, 1, 3, 16*e, 16*e), nn.NewTensor(nil, 1, 1, 4*e, 4*e))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Name, out.OS1.Shape, out.OS4.Shape, out.OS8.Shape)
	// Output: tiny [1 1 256 256] [1 1 256 256] [1 1 256 256]
}
