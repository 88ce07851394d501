package gdino

import (
	"math"
	"testing"
)

// The embedding against PositionEmbeddingSineHW's formula in float64, with
// different temperatures for y and x (a swap would show).
func TestPositionEmbeddingFormula(t *testing.T) {
	cfg := Tiny()
	cfg.PETempH, cfg.PETempW = 20, 10000
	p := newPositionEmbeddingSineHW(cfg)
	for _, sz := range [][2]int{{1, 1}, {3, 5}, {13, 17}} {
		h, w := sz[0], sz[1]
		got := p.values(h, w)
		f := cfg.HiddenDim / 2
		if len(got) != 2*f*h*w {
			t.Fatalf("%dx%d: %d values", h, w, len(got))
		}
		emb := func(v float64, k int, temp float64) float64 {
			a := v / math.Pow(temp, 2*float64(k/2)/float64(f))
			if k%2 == 0 {
				return math.Sin(a)
			}
			return math.Cos(a)
		}
		for k := 0; k < f; k++ {
			for i := 0; i < h; i++ {
				for j := 0; j < w; j++ {
					y := float64(i+1) / (float64(h) + 1e-6) * 2 * math.Pi
					x := float64(j+1) / (float64(w) + 1e-6) * 2 * math.Pi
					if d := math.Abs(float64(got[(k*h+i)*w+j]) - emb(y, k, cfg.PETempH)); d > 2e-6 {
						t.Fatalf("%dx%d: y feature %d at (%d,%d): off by %g", h, w, k, i, j, d)
					}
					if d := math.Abs(float64(got[((f+k)*h+i)*w+j]) - emb(x, k, cfg.PETempW)); d > 2e-6 {
						t.Fatalf("%dx%d: x feature %d at (%d,%d): off by %g", h, w, k, i, j, d)
					}
				}
			}
		}
	}
}
