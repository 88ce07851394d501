package gdino

import (
	"context"
	"math"
	"math/rand"
	"testing"

	"github.com/mam-go/mam-go/nn"
)

func TestInverseSigmoid(t *testing.T) {
	ln := float32(math.Log(1 / 1e-3))
	cases := []struct{ x, want float32 }{
		{0.5, 0},
		{0, -ln},
		{-3, -ln}, // clamped to 0
		{1, ln},
		{7, ln}, // clamped to 1
		{1e-4, float32(math.Log(1e-3 / (1 - 1e-4)))}, // eps on one side only
		{0.25, float32(math.Log(1.0 / 3))},
	}
	for _, c := range cases {
		if got := inverseSigmoid(c.x); math.Abs(float64(got-c.want)) > 1e-6 {
			t.Errorf("inverse_sigmoid(%g) = %g, want %g", c.x, got, c.want)
		}
	}
	if got := inverseSigmoid(float32(math.NaN())); got == got {
		t.Errorf("inverse_sigmoid(NaN) = %g", got)
	}
	if got := sigmoid32(float32(math.Inf(1))); got != 1 {
		t.Errorf("sigmoid(+inf) = %g", got)
	}
	if got := sigmoid32(float32(math.Inf(-1))); got != 0 {
		t.Errorf("sigmoid(-inf) = %g", got)
	}
	// the proposals' logit has no clamp: it reaches +-inf at 0 and 1
	if !math.IsInf(float64(logit32(1)), 1) || !math.IsInf(float64(logit32(0)), -1) {
		t.Errorf("logit(1) = %g, logit(0) = %g", logit32(1), logit32(0))
	}
}

func TestRefine(t *testing.T) {
	ref := []float32{0.2, 0.5, 0.9, 1, 0, 0.3, 0.7, 0.05}
	delta := []float32{0, 0, 0, 0, 0, 1, -1, 0.5}
	got := make([]float32, len(ref))
	refineInto(got, delta, ref)
	for i := range ref {
		x := math.Max(math.Min(float64(ref[i]), 1), 0)
		u := math.Log(math.Max(x, 1e-3)/math.Max(1-x, 1e-3)) + float64(delta[i])
		want := 1 / (1 + math.Exp(-u))
		if math.Abs(float64(got[i])-want) > 1e-6 {
			t.Errorf("refine(%g, %g) = %g, want %g", delta[i], ref[i], got[i], want)
		}
	}
}

func TestSineEmbedFormula(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	rows := 5
	pos := make([]float32, rows*4)
	for i := range pos {
		pos[i] = rng.Float32()
	}
	pos[0] = 1 // a sigmoid(+inf) reference
	got := make([]float32, rows*512)
	sineEmbedInto(got, pos, rows, sineDims())
	for r := 0; r < rows; r++ {
		for c, src := range []int{1, 0, 2, 3} { // y, x, w, h
			for k := 0; k < 128; k++ {
				v := float64(pos[r*4+src]) * 2 * math.Pi / math.Pow(10000, float64(2*(k/2))/128)
				want := math.Sin(v)
				if k%2 == 1 {
					want = math.Cos(v)
				}
				if g := got[r*512+c*128+k]; math.Abs(float64(g)-want) > 2e-6 {
					t.Fatalf("row %d coordinate %d feature %d: %g, want %g", r, c, k, g, want)
				}
			}
		}
	}
}

func TestContrastive(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	rows, n, d, maxLen := 3, 4, 8, 6
	x, text := make([]float32, rows*d), make([]float32, n*d)
	for i := range x {
		x[i] = rng.Float32() - 0.5
	}
	for i := range text {
		text[i] = rng.Float32() - 0.5
	}
	got := make([]float32, rows*maxLen)
	contrastiveInto(got, x, rows, text, n, d, maxLen)
	for r := 0; r < rows; r++ {
		for j := 0; j < maxLen; j++ {
			g := got[r*maxLen+j]
			if j >= n {
				if !math.IsInf(float64(g), -1) {
					t.Errorf("(%d, %d) = %g, want -inf", r, j, g)
				}
				continue
			}
			var want float64
			for c := 0; c < d; c++ {
				want += float64(x[r*d+c]) * float64(text[j*d+c])
			}
			if math.Abs(float64(g)-want) > 1e-6 {
				t.Errorf("(%d, %d) = %g, want %g", r, j, g, want)
			}
		}
	}
	// no text: every column -inf
	contrastiveInto(got, x, rows, nil, 0, d, maxLen)
	for i, g := range got {
		if !math.IsInf(float64(g), -1) {
			t.Fatalf("no text: %d = %g", i, g)
		}
	}
	g := nn.NewGraph()
	contrastive(g, g.Input("x", 2, 8), g.Input("t", 7, 8), 6)
	if g.Err() == nil {
		t.Error("more tokens than columns: no error")
	}
}

func TestMLPApplyMatchesGraph(t *testing.T) {
	p := nn.RandomParams(3, nil)
	m := newMLP(p.Sub("m"), 16, 12, 4, 3)
	rows := 5
	x := make([]float32, rows*16)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	got := make([]float32, rows*4)
	m.apply(got, x, rows)
	g := nn.NewGraph()
	out := m.forward(g, g.Input("x", rows, 16))
	mc, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.Exec(context.Background(), map[string][]float32{"x": x}); err != nil {
		t.Fatal(err)
	}
	for i, w := range nn.Values(out) {
		if math.Abs(float64(got[i]-w)) > 1e-6 {
			t.Fatalf("%d: apply %g, graph %g", i, got[i], w)
		}
	}
	// and the formula, from the drawn weights
	var ref []float32
	cur, in := x, 16
	for li, l := range m.layers {
		_, lout := linearDims(l)
		o := make([]float32, rows*lout)
		for r := 0; r < rows; r++ {
			for j := 0; j < lout; j++ {
				s := float64(l.Bias.Data[j])
				for c := 0; c < in; c++ {
					s += float64(cur[r*in+c]) * float64(l.Weight.Data[j*in+c])
				}
				if li < len(m.layers)-1 {
					s = math.Max(s, 0)
				}
				o[r*lout+j] = float32(s)
			}
		}
		cur, in, ref = o, lout, o
	}
	for i := range ref {
		if math.Abs(float64(got[i]-ref[i])) > 1e-5 {
			t.Fatalf("%d: apply %g, formula %g", i, got[i], ref[i])
		}
	}
}
