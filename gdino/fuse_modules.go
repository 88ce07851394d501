package gdino

import (
	"math"

	"github.com/mam-go/mam-go/nn"
)

// The feature enhancer's image-text fusion (fuse_modules.py): a
// bi-directional multi-head attention between the image tokens and the
// text tokens, each side added to its own LayerNorm-ed input through a
// learned per-channel layer scale.

// biMultiHeadAttention is BiMultiHeadAttention: image queries and values,
// text keys and values, projected to the fusion width; the image side
// attends over the text and the text side over the image, with one
// attention map (nn.BiAttention).
type biMultiHeadAttention struct {
	vProj, lProj, valuesVProj, valuesLProj encLinear // (dim -> embed)
	outVProj, outLProj                     encLinear // (embed -> dim)
	heads                                  int
	scale                                  float32 // head_dim^-0.5
}

func newBiMultiHeadAttention(p *nn.Params, dim, embed, heads int) *biMultiHeadAttention {
	a := &biMultiHeadAttention{
		vProj:       newEncLinear(p.Sub("v_proj"), dim, embed),
		lProj:       newEncLinear(p.Sub("l_proj"), dim, embed),
		valuesVProj: newEncLinear(p.Sub("values_v_proj"), dim, embed),
		valuesLProj: newEncLinear(p.Sub("values_l_proj"), dim, embed),
		outVProj:    newEncLinear(p.Sub("out_v_proj"), embed, dim),
		outLProj:    newEncLinear(p.Sub("out_l_proj"), embed, dim),
		heads:       heads,
	}
	if heads > 0 {
		a.scale = float32(math.Pow(float64(embed/heads), -0.5))
	}
	return a
}

// forward attends between v (S, dim) and l (n, dim) and returns the image
// update (S, dim) and the text update (n, dim). No token is padding at
// batch 1: no mask.
func (a *biMultiHeadAttention) forward(g *nn.Graph, v, l *nn.Node) (deltaV, deltaL *nn.Node) {
	if v == nil || l == nil {
		return nil, nil
	}
	s, n := nn.Shape(v)[0], nn.Shape(l)[0]
	q := a.vProj.forward(g, v)                            // (S, embed), scaled inside the core
	k := a.lProj.forward(g, l)                            // (n, embed)
	vv := a.valuesVProj.forward(g, v)                     // (S, embed)
	vl := a.valuesLProj.forward(g, l)                     // (n, embed)
	both := g.BiAttention(q, k, vv, vl, a.heads, a.scale) // (S+n, embed): image rows, then text rows
	deltaV = linearOfRows(g, a.outVProj, both, 0, s)      // (S, dim)
	deltaL = linearOfRows(g, a.outLProj, both, s, s+n)    // (n, dim)
	return deltaV, deltaL
}

// biAttentionBlock is BiAttentionBlock: pre-LayerNorms, the attention, and
// the layer-scaled residuals v = LN_v(v) + gamma_v * delta_v, l = LN_l(l) +
// gamma_l * delta_l (added to the normalised values, not the inputs).
type biAttentionBlock struct {
	layerNormV, layerNormL encLayerNorm
	attn                   *biMultiHeadAttention
	gammaV, gammaL         encParam
}

// newBiAttentionBlock fetches a fusion layer from p
// ("transformer.encoder.fusion_layers.<i>"): width cfg.HiddenDim for both
// sides, attention width cfg.FusionDim() with cfg.FusionHeads() heads.
func newBiAttentionBlock(p *nn.Params, cfg Config) *biAttentionBlock {
	d := cfg.HiddenDim
	return &biAttentionBlock{
		layerNormV: newEncLayerNorm(p.Sub("layer_norm_v"), d),
		layerNormL: newEncLayerNorm(p.Sub("layer_norm_l"), d),
		attn:       newBiMultiHeadAttention(p.Sub("attn"), d, cfg.FusionDim(), cfg.FusionHeads()),
		gammaV:     newEncParam(p, "gamma_v", d),
		gammaL:     newEncParam(p, "gamma_l", d),
	}
}

// forward fuses the image tokens v (S, dim) and the text tokens l (n, dim):
// (S, dim), (n, dim).
func (b *biAttentionBlock) forward(g *nn.Graph, v, l *nn.Node) (*nn.Node, *nn.Node) {
	v = b.layerNormV.forward(g, v) // (S, dim)
	l = b.layerNormL.forward(g, l) // (n, dim)
	deltaV, deltaL := b.attn.forward(g, v, l)
	return layerScale(g, v, b.gammaV.node(g), deltaV), layerScale(g, l, b.gammaL.node(g), deltaL)
}

// layerScale is x + gamma * delta with gamma (dim) per channel: x and
// delta (rows, dim).
func layerScale(g *nn.Graph, x, gamma, delta *nn.Node) *nn.Node {
	if x == nil || delta == nil || gamma == nil {
		return nil
	}
	xs := nn.Shape(x)
	dim := xs[len(xs)-1]
	return g.OpFull("LayerScale", xs, func(out []float32, in [][]float32) error {
		x, gm, dl := in[0], in[1], in[2]
		const block = 1 << 14 // values per task
		rows := len(out) / dim
		per := max(1, block/dim)
		nn.ParallelFor((rows+per-1)/per, func(lo, hi int) {
			for r := lo * per; r < min(hi*per, rows); r++ {
				o, xr, dr := out[r*dim:(r+1)*dim], x[r*dim:(r+1)*dim], dl[r*dim:(r+1)*dim]
				for c := range o {
					o[c] = xr[c] + gm[c]*dr[c]
				}
			}
		})
		return nil
	}, x, gamma, delta)
}

// linearOfRows is l applied to the rows [r0, r1) of x (rows, l.in):
// (r1-r0, l.out), read in place.
func linearOfRows(g *nn.Graph, l encLinear, x *nn.Node, r0, r1 int) *nn.Node {
	if x == nil {
		return nil
	}
	xs := nn.Shape(x)
	if len(xs) != 2 || xs[1] != l.in || r0 < 0 || r1 < r0 || r1 > xs[0] {
		return g.Errorf("gdino: linear of rows [%d, %d) of %v for %d inputs", r0, r1, xs, l.in)
	}
	return g.OpFull("Linear", []int{r1 - r0, l.out}, func(out []float32, in [][]float32) error {
		nn.LinearRows(out, in[0][r0*l.in:r1*l.in], r1-r0, l.in, in[1], l.out, in[2])
		return nil
	}, x, l.w.node(g), l.b.node(g))
}
