package gdino

import (
	"context"
	"sync"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// encTol is the golden README's tolerance for the deep stages: relative
// 1e-4 of the tensor's largest magnitude.
const encTol = 1e-4

var encTinyOnce struct {
	sync.Once
	s   *weights.Store
	err error
}

// encTinyStore is the golden tiny checkpoint ("module." stripped), loaded
// once.
func encTinyStore(t testing.TB) *weights.Store {
	t.Helper()
	encTinyOnce.Do(func() {
		encTinyOnce.s, encTinyOnce.err = weights.Open(testutil.Golden("gdino_tiny", "weights", "gdino.pth"))
	})
	if encTinyOnce.err != nil {
		t.Fatal(encTinyOnce.err)
	}
	return encTinyOnce.s
}

// encGolden loads a golden tensor of the image (caption "") or of a caption.
func encGolden(t testing.TB, caption, name string) *weights.Tensor {
	t.Helper()
	if caption == "" {
		return testutil.NPY(t, testutil.Golden("gdino_tiny", "cat_dog_240", name+".npy"))
	}
	return testutil.NPY(t, testutil.Golden("gdino_tiny", "cat_dog_240", caption, name+".npy"))
}

// encInts loads an int64 golden tensor as ints.
func encInts(t testing.TB, caption, name string) []int {
	t.Helper()
	x := encGolden(t, caption, name)
	if !x.IsInt() {
		t.Fatalf("%s: stored as %s, want int64", name, x.Stored)
	}
	v := make([]int, len(x.I64))
	for i, id := range x.I64 {
		v[i] = int(id)
	}
	return v
}

// encLevels are the golden image's level shapes (H, W) and start rows.
func encLevels(t testing.TB) ([][2]int, []int) {
	t.Helper()
	ss := encInts(t, "", "spatial_shapes")
	var shapes [][2]int
	for i := 0; i+1 < len(ss); i += 2 {
		shapes = append(shapes, [2]int{ss[i], ss[i+1]})
	}
	return shapes, encInts(t, "", "level_start_index")
}

// encRun compiles and runs g.
func encRun(t testing.TB, g *nn.Graph) {
	t.Helper()
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Exec(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

// encCheck compares a dumped node with the golden tensor of the same name,
// whose shape it takes (the node's values in the same order).
func encCheck(t testing.TB, caption, name string, n *nn.Node) {
	t.Helper()
	if n == nil {
		t.Errorf("%s: not dumped", name)
		return
	}
	want := encGolden(t, caption, name)
	got := nn.Values(n)
	if len(got) != want.NumElements() {
		t.Errorf("%s: shape %v, want %v", name, nn.Shape(n), want.Shape)
		return
	}
	testutil.Check(t, name, got, want.Shape, want, encTol, true)
}

// TestMSDeformAttnGolden runs the first encoder layer's deformable
// self-attention (2-d reference points) and the first decoder layer's
// deformable cross-attention (4-d reference boxes) on their golden inputs
// and compares the internals: value_proj's output, the sampling locations,
// the softmaxed weights and the sampled core.
func TestMSDeformAttnGolden(t *testing.T) {
	cfg := Tiny()
	root := nn.NewParams(encTinyStore(t))
	shapes, starts := encLevels(t)
	s := starts[len(starts)-1] + shapes[len(shapes)-1][0]*shapes[len(shapes)-1][1]
	d := cfg.HiddenDim
	param := func(g *nn.Graph, name string, x *weights.Tensor, shape ...int) *nn.Node {
		return g.Param("test."+name, x.Float32s(), shape...)
	}
	t.Run("encoder", func(t *testing.T) {
		const caption = "cat_dog"
		m := newMSDeformAttn(root.Sub("transformer.encoder.layers.0.self_attn"), d, cfg.Heads, cfg.NumLevels, cfg.EncPoints)
		if err := root.Err(); err != nil {
			t.Fatal(err)
		}
		g := nn.NewGraph()
		img := param(g, "img", encGolden(t, caption, "enc0_fused_img"), s, d)
		pos := param(g, "pos", encGolden(t, "", "lvl_pos_embed_flatten"), s, d)
		ref := param(g, "ref", encGolden(t, "", "enc_reference_points"), s, cfg.NumLevels, 2)
		dump := map[string]*nn.Node{}
		m.forwardDump(g, g.Add(img, pos), img, ref, shapes, starts, dump, "enc0_deform", nil)
		encRun(t, g)
		for _, name := range []string{"value", "sampling_locations", "attention_weights", "core"} {
			encCheck(t, caption, "enc0_deform_"+name, dump["enc0_deform_"+name])
		}
	})
	t.Run("decoder", func(t *testing.T) {
		const caption = "cat_dog"
		m := newMSDeformAttn(root.Sub("transformer.decoder.layers.0.cross_attn"), d, cfg.Heads, cfg.NumLevels, cfg.DecPoints)
		if err := root.Err(); err != nil {
			t.Fatal(err)
		}
		nq := cfg.NumQueries
		g := nn.NewGraph()
		tgt := param(g, "tgt", encGolden(t, caption, "dec0_after_ca_text"), nq, d)
		qpos := param(g, "qpos", encGolden(t, caption, "dec0_query_pos"), nq, d)
		memory := param(g, "memory", encGolden(t, caption, "enc1_memory"), s, d)
		// reference boxes times the valid ratios (1) of every level
		box := encGolden(t, caption, "dec_ref0").Float32s()
		refs := make([]float32, 0, nq*cfg.NumLevels*4)
		for q := 0; q < nq; q++ {
			for l := 0; l < cfg.NumLevels; l++ {
				refs = append(refs, box[4*q:4*q+4]...)
			}
		}
		ref := g.Param("test.ref", refs, nq, cfg.NumLevels, 4)
		dump := map[string]*nn.Node{}
		m.forwardDump(g, g.Add(tgt, qpos), memory, ref, shapes, starts, dump, "dec0_deform", nil)
		encRun(t, g)
		for _, name := range []string{"sampling_locations", "attention_weights", "core"} {
			encCheck(t, caption, "dec0_deform_"+name, dump["dec0_deform_"+name])
		}
	})
}

// TestMSDeformAttnErrors checks that mismatched inputs are graph errors.
func TestMSDeformAttnErrors(t *testing.T) {
	m := newMSDeformAttn(nn.RandomParams(1, nil), 16, 2, 2, 1)
	shapes, starts := [][2]int{{2, 2}, {1, 1}}, []int{0, 4}
	for _, c := range []struct {
		name          string
		nq, s, refDim int
		shapes        [][2]int
		starts        []int
	}{
		{"3-d reference", 3, 5, 3, shapes, starts},
		{"one level", 3, 5, 2, shapes[:1], starts[:1]},
		{"value rows", 3, 6, 2, shapes, starts},
		{"level start", 3, 5, 4, shapes, []int{0, 3}},
	} {
		g := nn.NewGraph()
		out := m.forward(g, g.Input("q", c.nq, 16), g.Input("v", c.s, 16), g.Input("ref", c.nq, 2, c.refDim), c.shapes, c.starts)
		if g.Err() == nil || out != nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}
