package gdino

// This file mirrors backbone/position_encoding.py PositionEmbeddingSineHW
// (normalize=True, scale 2pi), for the unpadded batch of one image that
// inference runs: the mask is all False, so the cumulative sums are the
// row and column numbers 1..H and 1..W.

import (
	"fmt"
	"math"

	"github.com/mam-go/mam-go/nn"
)

// posEps is the normalisation's eps (1e-6) and posScale its 2pi, as the
// float32 values torch multiplies by.
const (
	posEps   = float32(1e-6)
	posScale = float32(2 * math.Pi)
)

// positionEmbeddingSineHW is the sine position embedding with separate
// temperatures for the y and x features: feats features per axis (y
// first), HiddenDim in all.
type positionEmbeddingSineHW struct {
	feats        int
	tempH, tempW float64
}

func newPositionEmbeddingSineHW(cfg Config) *positionEmbeddingSineHW {
	return &positionEmbeddingSineHW{feats: cfg.HiddenDim / 2, tempH: cfg.PETempH, tempW: cfg.PETempW}
}

// dims is dim_t: temperature^(2*floor(k/2)/feats) for k < feats, the
// exponent formed in float32 as torch.arange(float32) does.
func (p *positionEmbeddingSineHW) dims(temperature float64) []float32 {
	d := make([]float32, p.feats)
	for k := range d {
		e := 2 * float32(k/2) / float32(p.feats)
		d[k] = float32(math.Pow(temperature, float64(e)))
	}
	return d
}

// values returns the embedding of an h x w map, (2*feats, h, w): channel k
// < feats is sin (k even) or cos (k odd) of y/dim_y[k] with y = (i+1) / (h
// + eps) * 2pi for row i; channel feats+k likewise of x over the columns.
func (p *positionEmbeddingSineHW) values(h, w int) []float32 {
	f, hw := p.feats, h*w
	out := make([]float32, 2*f*hw)
	dy, dx := p.dims(p.tempH), p.dims(p.tempW)
	// y_embed / (y_embed[last] + eps) * scale, in float32
	norm := func(i, n int) float32 { return float32(i+1) / (float32(n) + posEps) * posScale }
	sinCos := func(v float32, k int) float32 {
		if k%2 == 0 {
			return float32(math.Sin(float64(v)))
		}
		return float32(math.Cos(float64(v)))
	}
	for k := 0; k < f; k++ {
		py := out[k*hw : (k+1)*hw]
		px := out[(f+k)*hw : (f+k+1)*hw]
		for i := 0; i < h; i++ {
			vy := sinCos(norm(i, h)/dy[k], k)
			for j := 0; j < w; j++ {
				py[i*w+j] = vy
			}
		}
		for j := 0; j < w; j++ {
			vx := sinCos(norm(j, w)/dx[k], k)
			for i := 0; i < h; i++ {
				px[i*w+j] = vx
			}
		}
	}
	return out
}

// forward adds the embedding of level l, an h x w map, as a constant of the
// graph: (1, 2*feats, h, w).
func (p *positionEmbeddingSineHW) forward(g *nn.Graph, l, h, w int) *nn.Node {
	if h <= 0 || w <= 0 || p.feats <= 0 {
		return g.Errorf("gdino: position embedding: level %d is %dx%d with %d features", l, h, w, 2*p.feats)
	}
	return g.Param(fmt.Sprintf("gdino.pos_l%d", l), p.values(h, w), 1, 2*p.feats, h, w)
}
