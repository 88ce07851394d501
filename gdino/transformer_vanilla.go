package gdino

import "github.com/mam-go/mam-go/nn"

// transformerEncoderLayer is transformer_vanilla.py TransformerEncoderLayer
// (post-norm, ReLU), the feature enhancer's text self-attention layer: a
// torch.nn.MultiheadAttention whose queries and keys carry the text
// position embedding, restricted to each phrase by the sub-sentence mask.
type transformerEncoderLayer struct {
	q, k, v, outProj nn.Linear // in_proj_weight's three row blocks, out_proj
	linear1, linear2 nn.Linear
	norm1, norm2     nn.LayerNorm
	heads            int
}

// newTransformerEncoderLayer fetches a text layer from p
// ("transformer.encoder.text_layers.<i>"): width d, heads heads, FFN ffn.
func newTransformerEncoderLayer(p *nn.Params, d, heads, ffn int) *transformerEncoderLayer {
	att := p.Sub("self_attn")
	q, k, v := inProj(att, d) // in_proj_weight's rows: query, key, value
	return &transformerEncoderLayer{
		q: q, k: k, v: v,
		outProj: nn.NewLinear(att.Sub("out_proj"), d, d),
		linear1: nn.NewLinear(p.Sub("linear1"), d, ffn),
		linear2: nn.NewLinear(p.Sub("linear2"), ffn, d),
		norm1:   nn.NewLayerNorm(p.Sub("norm1"), d, lnEps),
		norm2:   nn.NewLayerNorm(p.Sub("norm2"), d, lnEps),
		heads:   heads,
	}
}

// forward runs the layer on src (n, d) with position embedding pos (n, d);
// token i attends to token j only where mask[i*n+j] (the reference's
// attn_mask is its negation). It returns the output after the attention
// and norm1 (sa) and the layer's output (out), both (n, d). The key
// padding mask is not passed, as in the reference.
func (l *transformerEncoderLayer) forward(g *nn.Graph, src, pos *nn.Node, mask []bool) (sa, out *nn.Node) {
	qk := g.Add(src, pos)                                                                           // (n, d)
	attn := g.MaskedMHA(l.q.Forward(g, qk), l.k.Forward(g, qk), l.v.Forward(g, src), l.heads, mask) // (n, d)
	sa = l.norm1.Forward(g, l.outProj.ForwardResidual(g, attn, src))                                // (n, d)
	y := linearReLU(g, l.linear1, sa)                                                               // (n, ffn)
	out = l.norm2.Forward(g, l.linear2.ForwardResidual(g, y, sa))                                   // (n, d)
	return sa, out
}
