package gdino

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// bertTol is the golden README's tolerance for float tensors: max abs
// difference 1e-4.
const bertTol = 1e-4

// bertCaptions are the golden captions' folders under cat_dog_240.
var bertCaptions = []string{"cat_dog", "a_sleepy_cat", "whiskered_kitty_caf_sofa"}

var bertTinyOnce struct {
	sync.Once
	s   *weights.Store
	err error
}

// bertTinyStore is the golden tiny checkpoint, loaded once.
func bertTinyStore(t testing.TB) *weights.Store {
	t.Helper()
	bertTinyOnce.Do(func() {
		bertTinyOnce.s, bertTinyOnce.err = LoadWeights(testutil.Golden("gdino_tiny", "weights", "gdino.pth"))
	})
	if bertTinyOnce.err != nil {
		t.Fatal(bertTinyOnce.err)
	}
	return bertTinyOnce.s
}

// bertText is a caption's golden text input.
type bertText struct {
	ids, positionIDs []int
	mask             []bool
}

func bertGoldenText(t testing.TB, caption string) bertText {
	t.Helper()
	dir := func(f string) string { return testutil.Golden("gdino_tiny", "cat_dog_240", caption, f) }
	ints := func(f string) []int {
		x := testutil.NPY(t, dir(f)) // int64: in I64
		if !x.IsInt() {
			t.Fatalf("%s: stored as %s, want int64", f, x.Stored)
		}
		v := make([]int, len(x.I64))
		for i, id := range x.I64 {
			v[i] = int(id)
		}
		return v
	}
	in := bertText{ids: ints("input_ids.npy"), positionIDs: ints("position_ids.npy")}
	m := testutil.NPY(t, dir("text_self_attention_masks.npy")) // bool: 0/1 in F32
	if n := len(in.ids); len(m.Float32s()) != n*n || len(in.positionIDs) != n {
		t.Fatalf("%s: %d ids, %d position ids, mask %v", caption, n, len(in.positionIDs), m.Shape)
	}
	for _, v := range m.Float32s() {
		in.mask = append(in.mask, v != 0)
	}
	return in
}

// bertRun builds, compiles and runs the text graph, returning the nodes.
func bertRun(t testing.TB, enc *textEncoder, in bertText, dump map[string]*nn.Node) *nn.Node {
	t.Helper()
	g := nn.NewGraph()
	out := enc.forward(g, in.ids, in.positionIDs, in.mask, dump)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Exec(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTextEncoderGolden compares every BERT stage and encoded_text with
// the official code's, for the three golden captions.
func TestTextEncoderGolden(t *testing.T) {
	p := nn.NewParams(bertTinyStore(t))
	enc := newTextEncoder(p, Tiny())
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	for _, caption := range bertCaptions {
		t.Run(caption, func(t *testing.T) {
			in := bertGoldenText(t, caption)
			dump := map[string]*nn.Node{}
			bertRun(t, enc, in, dump)
			n := len(in.ids)
			for _, name := range []string{"bert_embeddings", "bert_layer0", "bert_layer1", "bert_last_hidden_state", "encoded_text"} {
				node := dump[name]
				if node == nil {
					t.Errorf("%s: not dumped", name)
					continue
				}
				want := testutil.NPY(t, testutil.Golden("gdino_tiny", "cat_dog_240", caption, name+".npy"))
				shape := nn.Shape(node)
				if len(shape) != 2 || shape[0] != n {
					t.Errorf("%s: shape %v for %d tokens", name, shape, n)
					continue
				}
				testutil.Check(t, name, nn.Values(node), append([]int{1}, shape...), want, bertTol, false)
			}
		})
	}
}

// TestTextEncoderErrors checks that bad inputs are graph errors, not
// panics.
func TestTextEncoderErrors(t *testing.T) {
	cfg := Tiny()
	enc := newTextEncoder(nn.RandomParams(1, nil), cfg)
	eye := func(n int) []bool {
		m := make([]bool, n*n)
		for i := 0; i < n; i++ {
			m[i*n+i] = true
		}
		return m
	}
	bad := cfg
	bad.BertHeads = 3
	cases := []struct {
		name     string
		enc      *textEncoder
		ids, pos []int
		mask     []bool
		want     string
	}{
		{"no tokens", enc, nil, nil, nil, "no tokens"},
		{"id too large", enc, []int{101, cfg.BertVocab, 102}, []int{0, 0, 0}, eye(3), "vocabulary"},
		{"negative id", enc, []int{101, -1, 102}, []int{0, 0, 0}, eye(3), "vocabulary"},
		{"position too large", enc, []int{101, 7, 102}, []int{0, cfg.BertMaxPositions, 0}, eye(3), "position id"},
		{"negative position", enc, []int{101, 7, 102}, []int{0, -1, 0}, eye(3), "position id"},
		{"position ids count", enc, []int{101, 7, 102}, []int{0, 0}, eye(3), "position ids for"},
		{"mask size", enc, []int{101, 7, 102}, []int{0, 0, 0}, eye(2), "attention mask"},
		{"heads", newTextEncoder(nn.RandomParams(1, nil), bad), []int{101, 102}, []int{0, 0}, eye(2), "heads"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := nn.NewGraph()
			if out := c.enc.forward(g, c.ids, c.pos, c.mask, nil); out != nil {
				t.Errorf("got a node, want an error")
			}
			_, err := g.Compile()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestTextEncoderMask checks the sub-sentence mask's effect: a token's
// output depends only on the tokens it may attend to (its phrase).
func TestTextEncoderMask(t *testing.T) {
	enc := newTextEncoder(nn.RandomParams(2, nil), Tiny())
	// [CLS] cat . dog . [SEP] with "cat ." and "dog ." as phrases, then the
	// same with "dog" replaced: only the second phrase's outputs change.
	in := bertText{ids: []int{101, 4937, 1012, 3899, 1012, 102}, positionIDs: []int{0, 0, 1, 0, 1, 0}}
	n := len(in.ids)
	in.mask = make([]bool, n*n)
	for _, blk := range [][2]int{{0, 0}, {1, 2}, {3, 4}, {5, 5}} {
		for i := blk[0]; i <= blk[1]; i++ {
			for j := blk[0]; j <= blk[1]; j++ {
				in.mask[i*n+j] = true
			}
		}
	}
	a := append([]float32(nil), nn.Values(bertRun(t, enc, in, nil))...)
	in2 := in
	in2.ids = append([]int(nil), in.ids...)
	in2.ids[3] = 4419
	b := nn.Values(bertRun(t, enc, in2, nil))
	d := len(a) / n
	for tok := 0; tok < n; tok++ {
		same := true
		for j := tok * d; j < (tok+1)*d; j++ {
			if a[j] != b[j] {
				same = false
			}
		}
		if want := tok != 3 && tok != 4; same != want {
			t.Errorf("token %d: unchanged %v, want %v", tok, same, want)
		}
	}
}

// BenchmarkBertBase runs bert-base-uncased and feat_map (SwinTOGC sizes,
// random weights) on captions of 20 and 256 tokens: "run" reuses one
// compiled graph, "build" builds, compiles and runs one per caption as
// detection does.
func BenchmarkBertBase(b *testing.B) {
	cfg := SwinTOGC()
	p := nn.RandomParams(1, nil)
	enc := newTextEncoder(p, cfg)
	if err := p.Err(); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{20, 256} {
		in := bertText{ids: make([]int, n), positionIDs: make([]int, n), mask: make([]bool, n*n)}
		for i := range in.ids {
			in.ids[i] = 1000 + 37*i
			in.positionIDs[i] = i % 5
			for j := i / 5 * 5; j < min(n, i/5*5+5); j++ {
				in.mask[i*n+j] = true
			}
		}
		b.Run(fmt.Sprintf("n=%d/run", n), func(b *testing.B) {
			b.ReportAllocs()
			g := nn.NewGraph()
			enc.forward(g, in.ids, in.positionIDs, in.mask, nil)
			m, err := g.Compile()
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			for b.Loop() {
				if err := m.Exec(context.Background(), nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("n=%d/build", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bertRun(b, enc, in, nil)
			}
		})
	}
}
