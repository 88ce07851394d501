package gdino

import (
	"context"
	"math"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// decCaptions are the golden captions' folders (cat_dog has every tensor).
var decCaptions = []string{"cat_dog", "a_sleepy_cat", "whiskered_kitty_caf_sofa"}

var decTiny struct {
	once  sync.Once
	store *weights.Store
	err   error
}

// decTinyTransformer loads the golden tiny checkpoint and builds the
// transformer's query selection, decoder and heads from it.
func decTinyTransformer(t testing.TB) *transformer {
	t.Helper()
	decTiny.once.Do(func() {
		decTiny.store, decTiny.err = weights.Open(testutil.Golden("gdino_tiny", "weights", "gdino.pth"))
	})
	if decTiny.err != nil {
		t.Fatal(decTiny.err)
	}
	p := nn.NewParams(decTiny.store)
	tr := newTransformer(p, Tiny())
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	return tr
}

// decGolden loads a golden tensor of the image (caption "") or of a caption.
func decGolden(t testing.TB, caption, name string) *weights.Tensor {
	t.Helper()
	if caption == "" {
		return testutil.NPY(t, testutil.Golden("gdino_tiny", "cat_dog_240", name+".npy"))
	}
	return testutil.NPY(t, testutil.Golden("gdino_tiny", "cat_dog_240", caption, name+".npy"))
}

// decHasGolden reports whether a caption has a golden tensor (the light
// captions lack some).
func decHasGolden(caption, name string) bool {
	_, err := weights.ReadNPYFile(testutil.Golden("gdino_tiny", "cat_dog_240", caption, name+".npy"))
	return err == nil
}

// decCheck compares got with a golden tensor that may hold infinities:
// they must sit at the same positions with the same sign; the finite
// values are compared as testutil.Check does.
func decCheck(t testing.TB, name string, got []float32, shape []int, want *weights.Tensor, tol float64, relative bool) {
	t.Helper()
	w := want.Float32s()
	if len(got) != len(w) {
		t.Errorf("%s: %d values, want %d", name, len(got), len(w))
		return
	}
	g2, w2 := make([]float32, len(w)), make([]float32, len(w))
	for i := range w {
		wi, gi := math.IsInf(float64(w[i]), 0), math.IsInf(float64(got[i]), 0)
		if wi || gi {
			if w[i] != got[i] {
				t.Errorf("%s: element %s: got %g, want %g", name, testutil.Index(i, want.Shape), got[i], w[i])
				return
			}
			continue
		}
		g2[i], w2[i] = got[i], w[i]
	}
	testutil.Check(t, name, g2, shape, &weights.Tensor{Shape: want.Shape, F32: w2}, tol, relative)
}

// decDumps collects dumped tensors by name.
type decDumps map[string]struct {
	shape []int
	data  []float32
}

func (m decDumps) fn(name string, shape []int, data []float32) {
	m[name] = struct {
		shape []int
		data  []float32
	}{append([]int(nil), shape...), append([]float32(nil), data...)}
}

func TestFlattenGolden(t *testing.T) {
	tr := decTinyTransformer(t)
	g := nn.NewGraph()
	var srcs, pos []*nn.Node
	in := map[string][]float32{}
	var levels []*weights.Tensor
	for l := 0; l < 4; l++ {
		s := decGolden(t, "", "input_proj_l"+string(rune('0'+l)))
		p := decGolden(t, "", "pos_l"+string(rune('0'+l)))
		levels = append(levels, s)
		srcs = append(srcs, g.Input("src"+string(rune('0'+l)), s.Shape...))
		pos = append(pos, g.Input("pos"+string(rune('0'+l)), p.Shape...))
		in["src"+string(rune('0'+l))], in["pos"+string(rune('0'+l))] = s.Float32s(), p.Float32s()
	}
	src, lvlPos, starts := tr.flatten(g, srcs, pos)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	testutil.Check(t, "lvl_pos_embed_flatten", nn.Values(lvlPos), append([]int{1}, nn.Shape(lvlPos)...), decGolden(t, "", "lvl_pos_embed_flatten"), 1e-6, false)
	wantStarts := decGolden(t, "", "level_start_index").I64
	wantShapes := decGolden(t, "", "spatial_shapes").I64
	shapes := levelShapes(srcs)
	for l := range starts {
		if int64(starts[l]) != wantStarts[l] || int64(shapes[l][0]) != wantShapes[2*l] || int64(shapes[l][1]) != wantShapes[2*l+1] {
			t.Errorf("level %d: start %d shape %v, want %d (%d, %d)", l, starts[l], shapes[l], wantStarts[l], wantShapes[2*l], wantShapes[2*l+1])
		}
	}
	// src_flatten row starts[l] + i*W + j = level l's channels at (i, j)
	got := nn.Values(src)
	for l, lv := range levels {
		h, w := lv.Shape[2], lv.Shape[3]
		x := lv.Float32s()
		for r := 0; r < h*w; r++ {
			for c := 0; c < 256; c++ {
				if got[(starts[l]+r)*256+c] != x[c*h*w+r] {
					t.Fatalf("src_flatten level %d token %d channel %d: got %g, want %g", l, r, c, got[(starts[l]+r)*256+c], x[c*h*w+r])
				}
			}
		}
	}
}

func TestFlattenBadLevels(t *testing.T) {
	tr := decTinyTransformer(t)
	g := nn.NewGraph()
	a := g.Input("a", 1, 256, 2, 3)
	b := g.Input("b", 1, 256, 2, 4)
	tr.flatten(g, []*nn.Node{a}, []*nn.Node{b})
	if g.Err() == nil {
		t.Fatal("mismatched position embedding: no error")
	}
	g = nn.NewGraph()
	tr.flatten(g, nil, nil)
	if g.Err() == nil {
		t.Fatal("no level: no error")
	}
}

// decShapes are the golden levels' (H, W).
var decShapes = [][2]int{{13, 17}, {7, 9}, {4, 5}, {2, 3}}

func TestSelectQueriesGolden(t *testing.T) {
	tr := decTinyTransformer(t)
	for _, c := range decCaptions {
		t.Run(c, func(t *testing.T) {
			mem, text := decGolden(t, c, "enc1_memory"), decGolden(t, c, "enc1_memory_text")
			dumps := decDumps{}
			sel, err := tr.selectQueries(context.Background(), mem.Float32s(), text.Float32s(), decShapes, dumps.fn)
			if err != nil {
				t.Fatal(err)
			}
			want := decGolden(t, c, "topk_proposals").I64
			if len(sel.Indices) != len(want) {
				t.Fatalf("%d queries, want %d", len(sel.Indices), len(want))
			}
			for i, r := range sel.Indices {
				if int64(r) != want[i] {
					t.Fatalf("topk_proposals[%d] = %d, want %d (got %v)", i, r, want[i], sel.Indices)
				}
			}
			testutil.Check(t, "refpoint_unsigmoid (result)", sel.RefUnsig, []int{1, len(sel.Indices), 4}, decGolden(t, c, "refpoint_unsigmoid"), 1e-4, true)
			for _, name := range []string{"output_proposals", "output_memory", "enc_outputs_class", "topk_logits",
				"enc_outputs_coord_unselected", "refpoint_unsigmoid", "init_box_proposal", "tgt"} {
				d, ok := dumps[name]
				if !ok {
					t.Errorf("%s not dumped", name)
					continue
				}
				if !decHasGolden(c, name) {
					continue
				}
				tol, rel := 1e-4, true
				if name == "output_proposals" || name == "tgt" || name == "init_box_proposal" {
					tol, rel = 1e-5, false
				}
				decCheck(t, name, d.data, d.shape, decGolden(t, c, name), tol, rel)
			}
		})
	}
}

func TestSelectRefsOp(t *testing.T) {
	tr := decTinyTransformer(t)
	c := "cat_dog"
	mem, text := decGolden(t, c, "enc1_memory"), decGolden(t, c, "enc1_memory_text")
	g := nn.NewGraph()
	ref := tr.selectRefs(g, g.Input("memory", 310, 256), g.Input("text", 6, 256), decShapes)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(context.Background(), map[string][]float32{"memory": mem.Float32s(), "text": text.Float32s()}); err != nil {
		t.Fatal(err)
	}
	testutil.Check(t, "refpoint_unsigmoid", nn.Values(ref), append([]int{1}, nn.Shape(ref)...), decGolden(t, c, "refpoint_unsigmoid"), 1e-4, true)
}

func TestProposalsValidity(t *testing.T) {
	// 800x1065 levels: the first and last column (row) of a level 50 or
	// more cells wide (high) are invalid: 694 tokens of levels 0 and 1.
	shapes := [][2]int{{100, 134}, {50, 67}, {25, 34}, {13, 17}}
	s := 0
	for _, hw := range shapes {
		s += hw[0] * hw[1]
	}
	if s != 17821 {
		t.Fatalf("S = %d", s)
	}
	props := make([]float32, s*4)
	valid := make([]bool, s)
	proposalsInto(props, valid, shapes)
	bad := 0
	for r, ok := range valid {
		if !ok {
			bad++
			for c := 0; c < 4; c++ {
				if !math.IsInf(float64(props[r*4+c]), 1) {
					t.Fatalf("invalid token %d has proposal %v", r, props[r*4:r*4+4])
				}
			}
		}
	}
	if bad != 694 {
		t.Errorf("%d invalid proposals, want 694", bad)
	}
	// level 1 (50 x 67): row 0 and column 0 invalid (0.5/50 == 0.01), (1, 1) valid
	l1 := 13400
	if valid[l1] || valid[l1+1] || valid[l1+67] || !valid[l1+67+1] {
		t.Errorf("level 1 border validity: %v %v %v %v", valid[l1], valid[l1+1], valid[l1+67], valid[l1+68])
	}
	// level 3 (w = h = 0.4): cx = (j+0.5)/17 -> log(p/(1-p)) in float32
	r := 17821 - 221 + 17 + 2 // (1, 2) of level 3
	want := []float32{logit32(2.5 / 17), logit32(1.5 / 13), logit32(0.4), logit32(0.4)}
	if !slices.Equal(props[r*4:r*4+4], want) {
		t.Errorf("level 3 (1, 2): %v, want %v", props[r*4:r*4+4], want)
	}
}

func TestTopkRows(t *testing.T) {
	nan := float32(math.NaN())
	scores := []float32{1, 3, 3, nan, 2, 3, float32(math.Inf(1)), -1}
	got := topkRows(scores, 6)
	want := []int{3, 6, 1, 2, 5, 4} // NaN first (as torch.topk), ties by row
	if !slices.Equal(got, want) {
		t.Errorf("topkRows = %v, want %v", got, want)
	}
	if got := topkRows(scores, 20); len(got) != len(scores) {
		t.Errorf("k beyond the rows: %d rows", len(got))
	}
	if got := topkRows(nil, 3); len(got) != 0 {
		t.Errorf("no rows: %v", got)
	}
}

func TestSelectQueriesSmallAndBad(t *testing.T) {
	tr := decTinyTransformer(t)
	ctx := context.Background()
	// 12 tokens < 30 queries: every token is selected.
	shapes := [][2]int{{1, 9}, {1, 1}, {1, 1}, {1, 1}}
	mem := make([]float32, 12*256)
	for i := range mem {
		mem[i] = float32(i%17) * 0.1
	}
	text := make([]float32, 2*256)
	for i := range text {
		text[i] = float32(i%5) - 2
	}
	sel, err := tr.selectQueries(ctx, mem, text, shapes, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.Indices) != 12 || len(sel.RefUnsig) != 48 {
		t.Errorf("%d indices, %d references for 12 tokens", len(sel.Indices), len(sel.RefUnsig))
	}
	if _, err := tr.selectQueries(ctx, mem[:100], text, shapes, nil); err == nil {
		t.Error("short memory: no error")
	}
	if _, err := tr.selectQueries(ctx, mem, nil, shapes, nil); err == nil {
		t.Error("no text: no error")
	}
	if _, err := tr.selectQueries(ctx, nil, text, nil, nil); err == nil {
		t.Error("no tokens: no error")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := tr.selectQueries(cctx, mem, text, shapes, nil); err == nil {
		t.Error("cancelled: no error")
	}
}

func TestTransformerUsesItsParameters(t *testing.T) {
	s, err := weights.Open(testutil.Golden("gdino_tiny", "weights", "gdino.pth"))
	if err != nil {
		t.Fatal(err)
	}
	p := nn.NewParams(s)
	newTransformer(p, Tiny())
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range p.Unused() {
		mine := strings.HasPrefix(name, "bbox_embed.") || strings.HasPrefix(name, "transformer.") && !strings.HasPrefix(name, "transformer.encoder.")
		if mine {
			t.Errorf("%s is not used", name)
		}
	}
}

// BenchmarkSelectQueriesSwinT times the query selection at full size (S =
// 17821, 900 queries, 6 text tokens), random weights.
func BenchmarkSelectQueriesSwinT(b *testing.B) {
	cfg := SwinTOGC()
	p := nn.RandomParams(1, nil)
	tr := newTransformer(p, cfg)
	shapes := [][2]int{{100, 134}, {50, 67}, {25, 34}, {13, 17}}
	rng := rand.New(rand.NewSource(3))
	mem, text := make([]float32, 17821*256), make([]float32, 6*256)
	for i := range mem {
		mem[i] = float32(rng.NormFloat64())
	}
	for i := range text {
		text[i] = float32(rng.NormFloat64())
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := decCPUTime()
	for i := 0; i < b.N; i++ {
		if _, err := tr.selectQueries(ctx, mem, text, shapes, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric((decCPUTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}
