package gdino

import "github.com/mam-go/mam-go/nn"

// transformerEncoderLayer is transformer_vanilla.py TransformerEncoderLayer
// (post-norm, ReLU), the feature enhancer's text self-attention layer: a
// torch.nn.MultiheadAttention whose queries and keys carry the text
// position embedding, restricted to each phrase by the sub-sentence mask.
type transformerEncoderLayer struct {
	q, k, v, outProj encLinear // in_proj_weight's three row blocks, out_proj
	linear1, linear2 encLinear
	norm1, norm2     encLayerNorm
	heads            int
}

// newTransformerEncoderLayer fetches a text layer from p
// ("transformer.encoder.text_layers.<i>"): width d, heads heads, FFN ffn.
func newTransformerEncoderLayer(p *nn.Params, d, heads, ffn int) *transformerEncoderLayer {
	att := p.Sub("self_attn")
	w := att.Floats("in_proj_weight", 3*d, d) // rows: query, key, value
	b := att.Floats("in_proj_bias", 3*d)
	block := func(i int, name string) encLinear {
		return encLinear{
			w:  encParam{name: att.Prefix() + "in_proj_weight." + name, data: w[i*d*d : (i+1)*d*d], shape: []int{d, d}},
			b:  encParam{name: att.Prefix() + "in_proj_bias." + name, data: b[i*d : (i+1)*d], shape: []int{d}},
			in: d, out: d,
		}
	}
	return &transformerEncoderLayer{
		q: block(0, "q"), k: block(1, "k"), v: block(2, "v"),
		outProj: newEncLinear(att.Sub("out_proj"), d, d),
		linear1: newEncLinear(p.Sub("linear1"), d, ffn),
		linear2: newEncLinear(p.Sub("linear2"), ffn, d),
		norm1:   newEncLayerNorm(p.Sub("norm1"), d),
		norm2:   newEncLayerNorm(p.Sub("norm2"), d),
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
	attn := g.MaskedMHA(l.q.forward(g, qk), l.k.forward(g, qk), l.v.forward(g, src), l.heads, mask) // (n, d)
	sa = l.norm1.forward(g, l.outProj.residual(g, attn, src))                                       // (n, d)
	y := l.linear1.forwardReLU(g, sa)                                                               // (n, ffn)
	out = l.norm2.forward(g, l.linear2.residual(g, y, sa))                                          // (n, d)
	return sa, out
}
