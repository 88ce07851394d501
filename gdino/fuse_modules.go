package gdino

import "github.com/mam-go/mam-go/nn"

// The feature enhancer's image-text fusion (fuse_modules.py): a
// bi-directional multi-head attention between the image tokens and the
// text tokens, each side added to its own LayerNorm-ed input through a
// learned per-channel layer scale.

// biMultiHeadAttention is BiMultiHeadAttention: image queries and values,
// text keys and values, projected to the fusion width; the image side
// attends over the text and the text side over the image, with one
// attention map. The whole module is one op (nn.BiAttention), which
// reassociates the products so that nothing of the image's size times the
// fusion width is formed.
type biMultiHeadAttention struct {
	w            nn.BiAttentionWeights
	embed, heads int
}

// newBiMultiHeadAttention fetches v_proj, l_proj, values_v_proj,
// values_l_proj (dim -> embed), out_v_proj and out_l_proj (embed -> dim)
// from p.
func newBiMultiHeadAttention(p *nn.Params, dim, embed, heads int) *biMultiHeadAttention {
	in := func(name string) ([]float32, []float32) {
		return p.Floats(name+".weight", embed, dim), p.Floats(name+".bias", embed)
	}
	out := func(name string) ([]float32, []float32) {
		return p.Floats(name+".weight", dim, embed), p.Floats(name+".bias", dim)
	}
	a := &biMultiHeadAttention{embed: embed, heads: heads}
	a.w.V, a.w.VB = in("v_proj")
	a.w.L, a.w.LB = in("l_proj")
	a.w.ValuesV, a.w.ValuesVB = in("values_v_proj")
	a.w.ValuesL, a.w.ValuesLB = in("values_l_proj")
	a.w.OutV, a.w.OutVB = out("out_v_proj")
	a.w.OutL, a.w.OutLB = out("out_l_proj")
	return a
}

// forward attends between v (S, dim) and l (n, dim) and returns both
// updates as one (S+n, dim) node: the image update delta_v in rows 0..S-1,
// the text update delta_l in rows S..S+n-1. No token is padding at batch
// 1: no mask.
func (a *biMultiHeadAttention) forward(g *nn.Graph, v, l *nn.Node) *nn.Node {
	return g.BiAttention(v, l, &a.w, a.embed, a.heads)
}

// biAttentionBlock is BiAttentionBlock: pre-LayerNorms, the attention, and
// the layer-scaled residuals v = LN_v(v) + gamma_v * delta_v, l = LN_l(l) +
// gamma_l * delta_l (added to the normalised values, not the inputs).
type biAttentionBlock struct {
	layerNormV, layerNormL nn.LayerNorm
	attn                   *biMultiHeadAttention
	gammaV, gammaL         nn.Weight
}

// newBiAttentionBlock fetches a fusion layer from p
// ("transformer.encoder.fusion_layers.<i>"): width cfg.HiddenDim for both
// sides, attention width cfg.FusionDim() with cfg.FusionHeads() heads.
func newBiAttentionBlock(p *nn.Params, cfg Config) *biAttentionBlock {
	d := cfg.HiddenDim
	return &biAttentionBlock{
		layerNormV: nn.NewLayerNorm(p.Sub("layer_norm_v"), d, lnEps),
		layerNormL: nn.NewLayerNorm(p.Sub("layer_norm_l"), d, lnEps),
		attn:       newBiMultiHeadAttention(p.Sub("attn"), d, cfg.FusionDim(), cfg.FusionHeads()),
		gammaV:     p.Weight("gamma_v", d),
		gammaL:     p.Weight("gamma_l", d),
	}
}

// forward fuses the image tokens v (S, dim) and the text tokens l (n, dim):
// (S, dim), (n, dim).
func (b *biAttentionBlock) forward(g *nn.Graph, v, l *nn.Node) (*nn.Node, *nn.Node) {
	v = b.layerNormV.Forward(g, v)   // (S, dim)
	l = b.layerNormL.Forward(g, l)   // (n, dim)
	delta := b.attn.forward(g, v, l) // (S+n, dim): delta_v, then delta_l
	if v == nil || l == nil {
		return nil, nil
	}
	s := nn.Shape(v)[0]
	return layerScale(g, v, b.gammaV.Node(g), delta, 0), layerScale(g, l, b.gammaL.Node(g), delta, s)
}

// layerScale is x + gamma * delta with gamma (dim) per channel, x (rows,
// dim) and delta the rows of d from row r0 on.
func layerScale(g *nn.Graph, x, gamma, d *nn.Node, r0 int) *nn.Node {
	if x == nil || d == nil || gamma == nil {
		return nil
	}
	xs, ds := nn.Shape(x), nn.Shape(d)
	if len(xs) != 2 || len(ds) != 2 || ds[1] != xs[1] || r0 < 0 || r0+xs[0] > ds[0] {
		return g.Errorf("gdino: layer scale: %v and rows %d.. of %v", xs, r0, ds)
	}
	rows, dim := xs[0], xs[1]
	return g.OpFull("LayerScale", xs, func(out []float32, in [][]float32) error {
		x, gm, dl := in[0], in[1], in[2][r0*dim:]
		per := max(1, (1<<14)/dim) // rows per task
		nn.ParallelFor((rows+per-1)/per, func(lo, hi int) {
			for r := lo * per; r < min(hi*per, rows); r++ {
				o, xr, dr := out[r*dim:(r+1)*dim], x[r*dim:(r+1)*dim], dl[r*dim:(r+1)*dim]
				for c := range o {
					o[c] = xr[c] + gm[c]*dr[c]
				}
			}
		})
		return nil
	}, x, gamma, d)
}
