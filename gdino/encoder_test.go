package gdino

import (
	"context"
	"math"
	"math/rand"
	"testing"

	"github.com/mam-go/mam-go/nn"
)

// encCaptions are the golden captions' folders under cat_dog_240:
// cat_dog has the full set of dumps, the others the light set.
var encCaptions = []string{"cat_dog", "a_sleepy_cat", "whiskered_kitty_caf_sofa"}

// encSrc is the golden encoder input: the input_proj levels (1, d, H, W)
// flattened level by level to (H*W, d) rows.
func encSrc(t testing.TB, shapes [][2]int, d int) []float32 {
	t.Helper()
	var src []float32
	for l, sh := range shapes {
		x := encGolden(t, "", "input_proj_l"+string(rune('0'+l)))
		hw := sh[0] * sh[1]
		if x.NumElements() != d*hw {
			t.Fatalf("input_proj_l%d: shape %v for level %v", l, x.Shape, sh)
		}
		v := make([]float32, hw*d)
		nn.PermuteInto(v, x.Float32s(), []int{d, hw}, []int{1, 0}) // (d, HW) -> (HW, d)
		src = append(src, v...)
	}
	return src
}

// encText is a caption's golden text input: encoded_text (n, d), the
// sub-sentence mask and the position ids.
func encText(t testing.TB, caption string) (text []float32, mask []bool, positionIDs []int) {
	t.Helper()
	positionIDs = encInts(t, caption, "position_ids")
	for _, v := range encGolden(t, caption, "text_self_attention_masks").Float32s() {
		mask = append(mask, v != 0)
	}
	return encGolden(t, caption, "encoded_text").Float32s(), mask, positionIDs
}

// TestEncoderGolden runs the whole feature enhancer on the golden inputs
// and compares every stage: the full set of dumps for "cat . dog .", the
// light set for the other captions.
func TestEncoderGolden(t *testing.T) {
	cfg := Tiny()
	root := nn.NewParams(encTinyStore(t))
	enc := newEncoder(root.Sub("transformer").Sub("encoder"), cfg)
	if err := root.Err(); err != nil {
		t.Fatal(err)
	}
	shapes, _ := encLevels(t)
	d := cfg.HiddenDim
	src := encSrc(t, shapes, d)
	s := len(src) / d
	pos := encGolden(t, "", "lvl_pos_embed_flatten").Float32s()
	for _, caption := range encCaptions {
		t.Run(caption, func(t *testing.T) {
			text, mask, positionIDs := encText(t, caption)
			n := len(positionIDs)
			g := nn.NewGraph()
			dump := map[string]*nn.Node{}
			memory, memoryText := enc.forward(g, g.Param("test.src", src, s, d), g.Param("test.pos", pos, s, d),
				g.Param("test.text", text, n, d), mask, positionIDs, shapes, dump)
			encRun(t, g)
			if got := nn.Shape(memory); len(got) != 2 || got[0] != s || got[1] != d {
				t.Errorf("memory: shape %v", got)
			}
			if got := nn.Shape(memoryText); len(got) != 2 || got[0] != n || got[1] != d {
				t.Errorf("memory_text: shape %v", got)
			}
			names := []string{"pos_text"}
			if caption == "cat_dog" {
				encCheck(t, "", "enc_reference_points", dump["enc_reference_points"])
			}
			for _, i := range []string{"0", "1"} {
				names = append(names, "enc"+i+"_fused_text", "enc"+i+"_text_sa", "enc"+i+"_memory_text", "enc"+i+"_memory")
			}
			if caption == "cat_dog" {
				names = append(names, "enc0_fused_img", "enc1_fused_img", "enc0_img_sa",
					"enc0_deform_value", "enc0_deform_sampling_locations", "enc0_deform_attention_weights", "enc0_deform_core")
			}
			for _, name := range names {
				encCheck(t, caption, name, dump[name])
			}
			if dump["enc1_memory"] != memory || dump["enc1_memory_text"] != memoryText {
				t.Error("the outputs are not the last layer's")
			}
		})
	}
}

// TestTextPosEmbed checks the text sine embedding against the formula in
// float64, up to large position ids (where one float32 ulp of the argument,
// which the reference forms in float32, moves the sine by about 1e-4).
func TestTextPosEmbed(t *testing.T) {
	ids := []int{0, 1, 2, 7, 255}
	got := textPosEmbed(ids)
	for i, p := range ids {
		for k := 0; k < textPosFeats; k++ {
			v := float64(p) * 2 * math.Pi / math.Pow(10000, float64(2*(k/2))/textPosFeats)
			want := math.Sin(v)
			if k%2 == 1 {
				want = math.Cos(v)
			}
			if d := math.Abs(float64(got[i*textPosFeats+k]) - want); d > 3e-4 {
				t.Fatalf("position %d feature %d: %v, want %v", p, k, got[i*textPosFeats+k], want)
			}
		}
	}
}

// TestEncoderErrors checks that bad inputs are graph errors, not panics,
// and that the encoder reads every tensor under transformer.encoder.
func TestEncoderErrors(t *testing.T) {
	cfg := Tiny()
	root := nn.NewParams(encTinyStore(t))
	p := root.Sub("transformer").Sub("encoder")
	enc := newEncoder(p, cfg)
	if err := root.Err(); err != nil {
		t.Fatal(err)
	}
	if err := p.CheckUnused(); err != nil {
		t.Error(err)
	}
	d := cfg.HiddenDim
	shapes := [][2]int{{2, 3}, {1, 2}, {1, 1}, {1, 1}}
	s := 10
	eye := func(n int) []bool {
		m := make([]bool, n*n)
		for i := 0; i < n; i++ {
			m[i*n+i] = true
		}
		return m
	}
	for _, c := range []struct {
		name       string
		rows, n    int
		mask       []bool
		ids        []int
		shapes     [][2]int
		textRows   int
		imageWidth int
	}{
		{"no token", s, 0, nil, nil, shapes, 0, d},
		{"mask size", s, 2, eye(3), []int{0, 0}, shapes, 2, d},
		{"three levels", s, 2, eye(2), []int{0, 0}, shapes[:3], 2, d},
		{"empty level", s, 2, eye(2), []int{0, 0}, [][2]int{{2, 3}, {0, 2}, {1, 1}, {1, 1}}, 2, d},
		{"rows", s + 1, 2, eye(2), []int{0, 0}, shapes, 2, d},
		{"text rows", s, 2, eye(2), []int{0, 0}, shapes, 3, d},
		{"width", s, 2, eye(2), []int{0, 0}, shapes, 2, d + 1},
	} {
		g := nn.NewGraph()
		src := g.Input("src", c.rows, c.imageWidth)
		mem, memText := enc.forward(g, src, g.Input("pos", c.rows, d), g.Input("text", max(c.textRows, 1), d), c.mask, c.ids, c.shapes, nil)
		if g.Err() == nil || mem != nil || memText != nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	// the smallest valid input runs
	g := nn.NewGraph()
	mem, _ := enc.forward(g, g.Input("src", s, d), g.Input("pos", s, d), g.Input("text", 1, d), eye(1), []int{0}, shapes, nil)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	in := map[string][]float32{"src": make([]float32, s*d), "pos": make([]float32, s*d), "text": make([]float32, d)}
	if err := m.Exec(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	for _, v := range nn.Values(mem) {
		if math.IsNaN(float64(v)) {
			t.Fatal("NaN in the memory of a zero input")
		}
	}
}

// BenchmarkEncoderSwinT runs the full-size feature enhancer (Swin-T OGC
// configuration, random weights) on the levels of an 800x1065 image
// (S = 17821) and 6 text tokens ("cat . dog .").
func BenchmarkEncoderSwinT(b *testing.B) {
	cfg := SwinTOGC()
	p := nn.RandomParams(1, nil)
	enc := newEncoder(p.Sub("transformer").Sub("encoder"), cfg)
	if err := p.Err(); err != nil {
		b.Fatal(err)
	}
	shapes := [][2]int{{100, 134}, {50, 67}, {25, 34}, {13, 17}}
	s, d := 17821, cfg.HiddenDim
	ids := []int{0, 0, 1, 0, 1, 0}
	n := len(ids)
	mask := make([]bool, n*n) // [CLS] | cat . | dog . | [SEP]
	for _, blk := range [][2]int{{0, 1}, {1, 3}, {3, 5}, {5, 6}} {
		for i := blk[0]; i < blk[1]; i++ {
			for j := blk[0]; j < blk[1]; j++ {
				mask[i*n+j] = true
			}
		}
	}
	rng := rand.New(rand.NewSource(2))
	randn := func(k int) []float32 {
		x := make([]float32, k)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
	g := nn.NewGraph()
	mem, memText := enc.forward(g, g.Input("src", s, d), g.Input("pos", s, d), g.Input("text", n, d), mask, ids, shapes, nil)
	m, err := g.Compile()
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	in := map[string][]float32{"src": randn(s * d), "pos": randn(s * d), "text": randn(n * d)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.Exec(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if nn.Values(mem) == nil || nn.Values(memText) == nil {
		b.Fatal("no output")
	}
}
