package gdino

import "github.com/mam-go/mam-go/nn"

// transformerDecoder is transformer.py TransformerDecoder with its
// DeformableTransformerDecoderLayers: DecLayers layers refining the query
// boxes, conditioned on a sine embedding of the current reference box.
type transformerDecoder struct {
	layers       []*decoderLayer
	norm         nn.LayerNorm // decoder.norm: what the heads read
	refPointHead *mlp         // 2 layers, 2d -> d -> d
	bboxEmbed    []*mlp       // decoder.bbox_embed.<l> (the heads' bbox_embed, shared in the checkpoint)
	levels       int
}

func newTransformerDecoder(p *nn.Params, cfg Config) *transformerDecoder {
	d := cfg.HiddenDim
	dec := &transformerDecoder{
		norm:         nn.NewLayerNorm(p.Sub("norm"), d, lnEps),
		refPointHead: newMLP(p.Sub("ref_point_head"), 2*d, d, d, 2),
		levels:       cfg.NumLevels,
	}
	for l := 0; l < cfg.DecLayers; l++ {
		dec.layers = append(dec.layers, newDecoderLayer(p.Sub("layers").Index(l), cfg))
		dec.bboxEmbed = append(dec.bboxEmbed, newMLP(p.Sub("bbox_embed").Index(l), d, d, 4, 3))
	}
	return dec
}

// decoderLayerNodes are one decoder layer's values, under their golden
// names' meaning.
type decoderLayerNodes struct {
	Ref         *nn.Node // dec_ref<l> (k, 4): sigmoid reference entering the layer
	SineEmbed   *nn.Node // dec<l>_query_sine_embed (k, 2d)
	QueryPos    *nn.Node // dec<l>_query_pos (k, d)
	AfterSA     *nn.Node // dec<l>_after_sa: after self-attention + norm2
	AfterCAText *nn.Node // dec<l>_after_ca_text: after text cross-attention + catext_norm
	AfterCAImg  *nn.Node // dec<l>_after_ca_img: after deformable cross-attention + norm1
	Out         *nn.Node // dec<l>_out: after the FFN + norm3
	HS          *nn.Node // dec<l>_hs = decoder.norm(out)
	Logits      *nn.Node // dec<l>_logits (k, MaxTextLen), set by the heads
	Boxes       *nn.Node // dec<l>_boxes (k, 4), set by the heads
}

// forward runs the layers on the content queries tgt (k, d) from the
// unsigmoided references refUnsig (k, 4), over memory (S, d) (levels of
// shapes, starting at starts) and memoryText (n, d). It returns each
// layer's values and the reference after the last layer (computed, and
// returned, only with keep: the outputs never read it). With keep, every
// value is kept for reading after the run.
//
// Per layer, as TransformerDecoder.forward: the reference at each level is
// the reference (every valid ratio is 1 without padding); query_pos =
// ref_point_head(sine embedding of the reference); the layer; the next
// reference = sigmoid(bbox_embed[l](raw output) + inverse_sigmoid(ref));
// hs = norm(raw output).
func (dec *transformerDecoder) forward(g *nn.Graph, tgt, memory, memoryText, refUnsig *nn.Node, shapes [][2]int, starts []int, keep bool) ([]decoderLayerNodes, *nn.Node) {
	if len(shapes) != dec.levels || len(starts) != dec.levels {
		g.Errorf("gdino: decoder: %d level shapes and %d starts for %d levels", len(shapes), len(starts), dec.levels)
		return nil, nil
	}
	kp := func(n *nn.Node) *nn.Node {
		if keep {
			g.Keep(n)
		}
		return n
	}
	out := make([]decoderLayerNodes, len(dec.layers))
	ref := kp(sigmoidNode(g, refUnsig)) // (k, 4)
	for l, layer := range dec.layers {
		nodes := &out[l]
		nodes.Ref = ref
		refIn := repeatLevels(g, ref, dec.levels)                         // (k, levels, 4)
		nodes.SineEmbed = kp(sineEmbed(g, ref))                           // (k, 2d)
		nodes.QueryPos = kp(dec.refPointHead.forward(g, nodes.SineEmbed)) // (k, d)
		layer.forward(g, nodes, tgt, memory, memoryText, refIn, shapes, starts, kp)
		tgt = nodes.Out
		nodes.HS = kp(dec.norm.Forward(g, tgt)) // (k, d)
		if l < len(dec.layers)-1 || keep {
			ref = kp(refine(g, dec.bboxEmbed[l].forward(g, tgt), ref)) // (k, 4)
		}
	}
	if !keep {
		return out, nil
	}
	return out, ref
}

// repeatLevels is reference_points[:, :, None] * valid_ratios with every
// ratio 1: ref (k, 4) repeated over the levels -> (k, levels, 4).
func repeatLevels(g *nn.Graph, ref *nn.Node, levels int) *nn.Node {
	rs := nn.Shape(ref)
	if len(rs) != 2 || rs[1] != 4 {
		return g.Errorf("gdino: decoder: reference of shape %v, want (k, 4)", rs)
	}
	k := rs[0]
	return g.OpFull("reference_points_input", []int{k, levels, 4}, func(out []float32, in [][]float32) error {
		for q := 0; q < k; q++ {
			for l := 0; l < levels; l++ {
				copy(out[(q*levels+l)*4:(q*levels+l+1)*4], in[0][q*4:(q+1)*4])
			}
		}
		return nil
	}, ref)
}

// decoderLayer is transformer.py DeformableTransformerDecoderLayer
// (post-norm, ReLU FFN, text cross-attention on).
type decoderLayer struct {
	selfAttn   *multiheadAttention
	norm2      nn.LayerNorm
	caText     *multiheadAttention
	catextNorm nn.LayerNorm
	crossAttn  *msDeformAttn
	norm1      nn.LayerNorm
	linear1    nn.Linear
	linear2    nn.Linear
	norm3      nn.LayerNorm
}

func newDecoderLayer(p *nn.Params, cfg Config) *decoderLayer {
	d := cfg.HiddenDim
	return &decoderLayer{
		selfAttn:   newMultiheadAttention(p.Sub("self_attn"), d, cfg.Heads),
		norm2:      nn.NewLayerNorm(p.Sub("norm2"), d, lnEps),
		caText:     newMultiheadAttention(p.Sub("ca_text"), d, cfg.Heads),
		catextNorm: nn.NewLayerNorm(p.Sub("catext_norm"), d, lnEps),
		crossAttn:  newMSDeformAttn(p.Sub("cross_attn"), d, cfg.Heads, cfg.NumLevels, cfg.DecPoints),
		norm1:      nn.NewLayerNorm(p.Sub("norm1"), d, lnEps),
		linear1:    nn.NewLinear(p.Sub("linear1"), d, cfg.FFN),
		linear2:    nn.NewLinear(p.Sub("linear2"), cfg.FFN, d),
		norm3:      nn.NewLayerNorm(p.Sub("norm3"), d, lnEps),
	}
}

// forward runs the layer on tgt (k, d) with the query position
// nodes.QueryPos, filling nodes' AfterSA, AfterCAText, AfterCAImg and Out
// (each passed through kp).
func (l *decoderLayer) forward(g *nn.Graph, nodes *decoderLayerNodes, tgt, memory, memoryText, refIn *nn.Node, shapes [][2]int, starts []int, kp func(*nn.Node) *nn.Node) {
	pos := nodes.QueryPos
	// self-attention: q = k = tgt + pos, v = tgt; tgt = norm2(tgt + sa)
	q := g.Add(tgt, pos)                                                // (k, d)
	tgt = kp(l.norm2.Forward(g, l.selfAttn.forward(g, q, q, tgt, tgt))) // (k, d)
	nodes.AfterSA = tgt
	// text cross-attention: q = tgt + pos, k = v = memoryText; tgt = catext_norm(tgt + ca)
	q = g.Add(tgt, pos)
	tgt = kp(l.catextNorm.Forward(g, l.caText.forward(g, q, memoryText, memoryText, tgt))) // (k, d)
	nodes.AfterCAText = tgt
	// deformable cross-attention: q = tgt + pos, value = memory; tgt = norm1(tgt + ca)
	q = g.Add(tgt, pos)
	sum := l.crossAttn.forwardDump(g, q, memory, refIn, shapes, starts, nil, "", tgt) // tgt + ca (k, d)
	tgt = kp(l.norm1.Forward(g, sum))
	nodes.AfterCAImg = tgt
	// FFN: tgt = norm3(tgt + linear2(relu(linear1(tgt))))
	h := linearReLU(g, l.linear1, tgt)                                       // (k, ffn)
	nodes.Out = kp(l.norm3.Forward(g, l.linear2.ForwardResidual(g, h, tgt))) // (k, d)
}

// multiheadAttention is torch nn.MultiheadAttention (batch 1, no mask):
// in_proj_weight rows 0..d-1 project the query, d..2d-1 the key, 2d..3d-1
// the value; heads are blocks of d/heads channels; out_proj merges them.
type multiheadAttention struct {
	q, k, v, out nn.Linear
	heads        int
}

func newMultiheadAttention(p *nn.Params, d, heads int) *multiheadAttention {
	q, k, v := inProj(p, d)
	return &multiheadAttention{q: q, k: k, v: v, out: nn.NewLinear(p.Sub("out_proj"), d, d), heads: heads}
}

// forward is res + MultiheadAttention(query, key, value): query (nq, d),
// key and value (nk, d), res (nq, d) -> (nq, d).
func (a *multiheadAttention) forward(g *nn.Graph, query, key, value, res *nn.Node) *nn.Node {
	q := a.q.Forward(g, query) // (nq, d)
	k := a.k.Forward(g, key)   // (nk, d)
	v := a.v.Forward(g, value) // (nk, d)
	if len(nn.Shape(k)) == 2 && nn.Shape(k)[0] == 0 {
		return g.Errorf("gdino: attention over no keys")
	}
	ctx := g.MHA(q, k, v, a.heads)            // (nq, d)
	return a.out.ForwardResidual(g, ctx, res) // (nq, d)
}
