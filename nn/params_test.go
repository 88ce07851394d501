package nn

import (
	"context"
	"errors"
	"testing"

	"github.com/mam-go/mam-go/weights"
)

func TestParamsCheckpoint(t *testing.T) {
	s := weights.New("test", map[string]*weights.Tensor{
		"blocks.0.w":  {Shape: []int{2, 3}, Stored: weights.Float32, F32: []float32{1, 2, 3, 4, 5, 6}},
		"blocks.1.w":  {Shape: []int{2, 3}, Stored: weights.Float32, F32: make([]float32, 6)},
		"extra":       {Shape: []int{1}, Stored: weights.Float32, F32: []float32{1}},
		"label_enc.w": {Shape: []int{1}, Stored: weights.Float32, F32: []float32{1}},
	})
	p := NewParams(s)
	b := p.Sub("blocks")
	if got := b.Index(0).Floats("w", 2, 3); got[5] != 6 {
		t.Fatalf("blocks.0.w = %v", got)
	}
	if p.Err() != nil {
		t.Fatal(p.Err())
	}
	b.Index(1).Floats("w", 2, 3)
	if err := p.CheckUnused(); err == nil || !errors.Is(err, ErrParams) {
		t.Fatalf("CheckUnused = %v, want the unused names", err)
	}
	p.Ignore("extra", "label_enc.w", "absent")
	if err := p.CheckUnused(); err != nil {
		t.Fatal(err)
	}
	if got := b.Index(1).Floats("w", 3, 2); len(got) != 6 {
		t.Fatalf("mis-shaped fetch returned %d values, want zeros of the asked shape", len(got))
	}
	if err := p.Err(); !errors.Is(err, weights.ErrShape) || !errors.Is(err, ErrParams) {
		t.Fatalf("Err = %v, want ErrShape and ErrParams", err)
	}
	p2 := NewParams(s)
	p2.Floats("nope", 4)
	if err := p2.Err(); !errors.Is(err, weights.ErrMissing) {
		t.Fatalf("Err = %v, want ErrMissing", err)
	}
}

func TestParamsRandom(t *testing.T) {
	build := func(p *Params) []float32 {
		a := p.Sub("lin").Floats("weight", 4, 8)
		p.Sub("norm").Floats("weight", 8)
		p.Sub("lin").Floats("bias", 4)
		return a
	}
	p := RandomParams(3, nil)
	a := build(p)
	if again := p.Sub("lin").Floats("weight", 4, 8); &again[0] != &a[0] {
		t.Fatal("a second fetch drew new values")
	}
	st := p.Store()
	if st.Len() != 3 {
		t.Fatalf("store has %v", st.Names())
	}
	q := NewParams(st)
	b := build(q)
	if q.Err() != nil || q.CheckUnused() != nil || b[7] != a[7] {
		t.Fatalf("rebuilding from the drawn store: %v %v", q.Err(), q.CheckUnused())
	}
	for _, v := range p.Sub("norm").Floats("weight", 8) {
		if v < 0.89 || v > 1.11 {
			t.Fatalf("norm scale %v outside 1 +- 0.1", v)
		}
	}
	p.Sub("lin").Floats("weight", 8, 4)
	if !errors.Is(p.Err(), weights.ErrShape) {
		t.Fatalf("Err = %v", p.Err())
	}
}

func TestGraphParamOpExec(t *testing.T) {
	g := NewGraph()
	x := g.Input("x", 2, 2)
	w := RandomParams(1, nil).Node(g, "w", 3, 2)
	y := g.OpFull("double", []int{2, 3}, func(out []float32, in [][]float32) error {
		for i, v := range in[0] {
			out[i] = 2 * v
		}
		return nil
	}, g.Linear(x, w, nil))
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	for r := 0; r < 2; r++ {
		if err := m.Exec(context.Background(), map[string][]float32{"x": {1, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		wv := Values(w)
		if got := Values(y); got[0] != 2*wv[0] || got[5] != 2*wv[5] {
			t.Fatalf("run %d: y = %v, w = %v", r, got, wv)
		}
	}
	if err := m.Exec(context.Background(), map[string][]float32{"x": {1}}); err == nil {
		t.Fatal("wrong input size accepted")
	}
}
