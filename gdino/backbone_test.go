package gdino

import (
	"fmt"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
)

// imgStages lists the golden image-side tensors of the tiny model.
func imgStages(cfg Config) []string {
	names := []string{"swin_patch_embed"}
	for i := range cfg.SwinDepths {
		names = append(names, fmt.Sprintf("swin_s%d_block0", i), fmt.Sprintf("swin_s%d_out", i))
		if i < len(cfg.SwinDepths)-1 {
			names = append(names, fmt.Sprintf("swin_s%d_down", i))
		}
	}
	for k := range cfg.ReturnIndices {
		names = append(names, fmt.Sprintf("backbone_l%d", k))
	}
	for l := 0; l < cfg.NumLevels; l++ {
		names = append(names, fmt.Sprintf("input_proj_l%d", l), fmt.Sprintf("pos_l%d", l))
	}
	return names
}

func TestImageBackboneGolden(t *testing.T) {
	cfg := Tiny()
	store := loadTinyStore(t)
	p := nn.NewParams(store)
	b := newImageBackbone(p, cfg)
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"backbone", "input_proj"} {
		if err := p.Sub(prefix).CheckUnused(); err != nil {
			t.Error(err)
		}
	}
	input := imgGolden(t, "input")
	g := nn.NewGraph()
	x := g.Input("image", input.Shape...)
	dump := map[string]*nn.Node{}
	srcs, pos, shapes := b.forward(g, x, dump)
	imgRun(t, g, map[string][]float32{"image": input.Float32s()})

	wantShapes := [][2]int{{13, 17}, {7, 9}, {4, 5}, {2, 3}}
	if fmt.Sprint(shapes) != fmt.Sprint(wantShapes) || len(srcs) != 4 || len(pos) != 4 {
		t.Fatalf("level shapes %v (%d srcs, %d pos), want %v", shapes, len(srcs), len(pos), wantShapes)
	}
	for l := range srcs {
		if dump[fmt.Sprintf("input_proj_l%d", l)] != srcs[l] || dump[fmt.Sprintf("pos_l%d", l)] != pos[l] {
			t.Errorf("level %d: returned nodes are not the dumped ones", l)
		}
	}
	for _, name := range imgStages(cfg) {
		n, ok := dump[name]
		if !ok {
			t.Errorf("%s: not dumped", name)
			continue
		}
		testutil.Check(t, name, nn.Values(n), nn.Shape(n), imgGolden(t, name), 1e-4, false)
	}
	if len(dump) != len(imgStages(cfg)) {
		t.Errorf("%d dumped nodes, want %d", len(dump), len(imgStages(cfg)))
	}
}
