package gdino

import (
	"context"
	"testing"

	"github.com/mam-go/mam-go/nn"
)

func TestHeadsGolden(t *testing.T) {
	tr := decTinyTransformer(t)
	for _, c := range decCaptions {
		t.Run(c, func(t *testing.T) {
			for l := 0; l < 2; l++ {
				hs, ref, text := decGolden(t, c, "dec"+string(rune('0'+l))+"_hs"), decGolden(t, c, "dec_ref"+string(rune('0'+l))), decGolden(t, c, "enc1_memory_text")
				g := nn.NewGraph()
				logits, boxes := tr.heads.forward(g, l, g.Input("hs", 30, 256), g.Input("ref", 30, 4), g.Input("text", text.Shape[1], 256))
				m, err := g.Compile()
				if err != nil {
					t.Fatal(err)
				}
				if err := m.Exec(context.Background(), map[string][]float32{"hs": hs.Float32s(), "ref": ref.Float32s(), "text": text.Float32s()}); err != nil {
					t.Fatal(err)
				}
				pre := "dec" + string(rune('0'+l))
				decCheck(t, pre+"_logits", nn.Values(logits), []int{1, 30, 256}, decGolden(t, c, pre+"_logits"), 1e-4, true)
				decCheck(t, pre+"_boxes", nn.Values(boxes), []int{1, 30, 4}, decGolden(t, c, pre+"_boxes"), 1e-4, true)
			}
		})
	}
}

func TestHeadsBadLayer(t *testing.T) {
	tr := decTinyTransformer(t)
	g := nn.NewGraph()
	tr.heads.forward(g, 2, g.Input("hs", 30, 256), g.Input("ref", 30, 4), g.Input("text", 6, 256))
	if g.Err() == nil {
		t.Error("layer 2 of 2: no error")
	}
}
