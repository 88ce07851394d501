package gdino

import (
	"context"
	"fmt"
	"math/rand"
	"syscall"
	"testing"
	"time"

	"github.com/mam-go/mam-go/nn"
)

// decRunDecoder runs decode with keep on the golden encoder outputs and
// selected references of a caption and returns every dump.
func decRunDecoder(t *testing.T, tr *transformer, c string) decDumps {
	t.Helper()
	mem, text, ref := decGolden(t, c, "enc1_memory"), decGolden(t, c, "enc1_memory_text"), decGolden(t, c, "refpoint_unsigmoid")
	n := text.Shape[1]
	g := nn.NewGraph()
	memory := g.Input("memory", 310, 256)
	memText := g.Input("memory_text", n, 256)
	refs := g.Input("refpoint_unsigmoid", ref.Shape[1], 4)
	out := tr.decode(g, memory, memText, refs, decShapes, levelStarts(decShapes), true)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(context.Background(), map[string][]float32{
		"memory": mem.Float32s(), "memory_text": text.Float32s(), "refpoint_unsigmoid": ref.Float32s(),
	}); err != nil {
		t.Fatal(err)
	}
	dumps := decDumps{}
	out.dump(dumps.fn)
	return dumps
}

func TestDecoderGolden(t *testing.T) {
	tr := decTinyTransformer(t)
	for _, c := range decCaptions {
		t.Run(c, func(t *testing.T) {
			dumps := decRunDecoder(t, tr, c)
			var names []string
			for i := 0; i < 2; i++ {
				names = append(names, fmt.Sprintf("dec_ref%d", i))
				for _, s := range []string{"query_sine_embed", "query_pos", "after_sa", "after_ca_text", "after_ca_img", "out", "hs", "logits", "boxes"} {
					names = append(names, fmt.Sprintf("dec%d_%s", i, s))
				}
			}
			names = append(names, "dec_ref2", "pred_logits", "pred_boxes")
			for _, name := range names {
				d, ok := dumps[name]
				if !ok {
					t.Errorf("%s not dumped", name)
					continue
				}
				decCheck(t, name, d.data, d.shape, decGolden(t, c, name), 1e-4, true)
			}
		})
	}
}

func TestDecoderNoKeep(t *testing.T) {
	// Without keep the outputs are the same, and no unused refinement runs.
	tr := decTinyTransformer(t)
	c := "a_sleepy_cat"
	mem, text, ref := decGolden(t, c, "enc1_memory"), decGolden(t, c, "enc1_memory_text"), decGolden(t, c, "refpoint_unsigmoid")
	g := nn.NewGraph()
	out := tr.decode(g, g.Input("memory", 310, 256), g.Input("memory_text", 6, 256), g.Input("ref", 30, 4), decShapes, levelStarts(decShapes), false)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(context.Background(), map[string][]float32{"memory": mem.Float32s(), "memory_text": text.Float32s(), "ref": ref.Float32s()}); err != nil {
		t.Fatal(err)
	}
	if out.last != nil || out.layers[0].Logits != nil {
		t.Error("intermediate heads or last refinement built without keep")
	}
	decCheck(t, "pred_logits", nn.Values(out.Logits), append([]int{1}, nn.Shape(out.Logits)...), decGolden(t, c, "pred_logits"), 1e-4, true)
	decCheck(t, "pred_boxes", nn.Values(out.Boxes), append([]int{1}, nn.Shape(out.Boxes)...), decGolden(t, c, "pred_boxes"), 1e-4, true)
}

func TestDecodeBadShapes(t *testing.T) {
	tr := decTinyTransformer(t)
	g := nn.NewGraph()
	tr.decode(g, g.Input("m", 310, 256), g.Input("t", 6, 256), g.Input("r", 31, 4), decShapes, levelStarts(decShapes), false)
	if g.Err() == nil {
		t.Error("more references than queries: no error")
	}
	g = nn.NewGraph()
	tr.decode(g, g.Input("m", 310, 256), g.Input("t", 6, 256), g.Input("r", 30, 4), decShapes[:3], levelStarts(decShapes[:3]), false)
	if g.Err() == nil {
		t.Error("3 levels for 4: no error")
	}
}

func TestDecodeAfterGraphError(t *testing.T) {
	// A graph that already failed builds nothing more and does not panic,
	// whatever the nodes.
	tr := decTinyTransformer(t)
	g := nn.NewGraph()
	g.Errorf("earlier failure")
	out := tr.decode(g, nil, nil, nil, decShapes, levelStarts(decShapes), true)
	if out == nil || out.Logits != nil {
		t.Error("outputs from a failed graph")
	}
	g = nn.NewGraph()
	bad := g.Input("x", 3, 5)
	sineEmbed(g, bad)
	repeatLevels(g, nil, 4)
	if g.Err() == nil {
		t.Error("bad positions: no error")
	}
	g = nn.NewGraph()
	src, pos, starts := tr.flatten(g, []*nn.Node{nil}, []*nn.Node{nil})
	if g.Err() == nil || src != nil || pos != nil || starts != nil {
		t.Error("nil levels: no error")
	}
}

// BenchmarkDecoderSwinT times the Swin-T OGC decoder and heads (6 layers,
// 900 queries, FFN 2048) on the levels of an 800x1065 image (S = 17821)
// with a 6-token caption, random weights.
func BenchmarkDecoderSwinT(b *testing.B) {
	cfg := SwinTOGC()
	p := nn.RandomParams(1, nil)
	tr := newTransformer(p, cfg)
	if err := p.Err(); err != nil {
		b.Fatal(err)
	}
	shapes := [][2]int{{100, 134}, {50, 67}, {25, 34}, {13, 17}}
	s, n, nq := 17821, 6, cfg.NumQueries
	rng := rand.New(rand.NewSource(2))
	fill := func(k int, scale float32) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = scale * float32(rng.NormFloat64())
		}
		return v
	}
	mem, text, ref := fill(s*256, 1), fill(n*256, 1), fill(nq*4, 1)
	g := nn.NewGraph()
	out := tr.decode(g, g.Input("memory", s, 256), g.Input("memory_text", n, 256), g.Input("ref", nq, 4), shapes, levelStarts(shapes), false)
	m, err := g.Compile()
	if err != nil {
		b.Fatal(err)
	}
	in := map[string][]float32{"memory": mem, "memory_text": text, "ref": ref}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := decCPUTime()
	for i := 0; i < b.N; i++ {
		if err := m.Exec(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// On a shared host the CPU time is steadier than the wall time.
	b.ReportMetric((decCPUTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	if nn.Values(out.Boxes) == nil {
		b.Fatal("no boxes")
	}
}

// decCPUTime is the process's user + system CPU time so far.
func decCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
