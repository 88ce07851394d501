package sam

// This file mirrors segment_anything/modeling/transformer.py: the mask
// decoder's TwoWayTransformer, TwoWayAttentionBlock and Attention. Batch
// is 1 throughout: token tensors are (T, D), image tensors (HW, D). The two
// cross attentions run as fused kernels (fused.go) behind calls shaped
// like the modules they replace.

import "github.com/mam-go/mam-go/nn"

// decoderLNEps is the eps of the decoder's torch.nn.LayerNorm layers.
const decoderLNEps = 1e-5

// attention is Attention: q/k/v projections from D to D/downsample, heads,
// softmax(q k^T / sqrt(d_head)) v, out projection.
type attention struct {
	q, k, v, out nn.Linear
	dim          int // embedding_dim
	internal     int // internal_dim = D / downsample
	heads        int
}

func newAttention(p *nn.Params, dim, heads, downsample int) attention {
	internal := dim / downsample
	return attention{
		q:        nn.NewLinear(p.Sub("q_proj"), dim, internal),
		k:        nn.NewLinear(p.Sub("k_proj"), dim, internal),
		v:        nn.NewLinear(p.Sub("v_proj"), dim, internal),
		out:      nn.NewLinear(p.Sub("out_proj"), internal, dim),
		dim:      dim,
		internal: internal,
		heads:    heads,
	}
}

// forward: q (Nq, D), k (Nk, D), v (Nk, D) -> (Nq, D).
func (a attention) forward(g *nn.Graph, q, k, v *nn.Node) *nn.Node {
	q = a.q.Forward(g, q)        // (Nq, Di)
	k = a.k.Forward(g, k)        // (Nk, Di)
	v = a.v.Forward(g, v)        // (Nk, Di)
	o := g.MHA(q, k, v, a.heads) // (Nq, Di): per head softmax(q k^T / sqrt(Di/heads)) v
	return a.out.Forward(g, o)   // (Nq, D)
}

// twoWayBlock is TwoWayAttentionBlock: self attention of the tokens,
// cross attention tokens to image, MLP on the tokens, cross attention
// image to tokens, each followed by a residual sum and a LayerNorm.
type twoWayBlock struct {
	selfAttn                   attention
	norm1, norm2, norm3, norm4 nn.LayerNorm
	crossAttnTokenToImage      attention
	crossAttnImageToToken      attention
	mlp                        mlpBlock
	skipFirstLayerPE           bool
}

func newTwoWayBlock(p *nn.Params, dim, heads, mlpDim, downsample int, skipPE bool) twoWayBlock {
	ln := func(n string) nn.LayerNorm { return nn.NewLayerNorm(p.Sub(n), dim, decoderLNEps) }
	return twoWayBlock{
		selfAttn:              newAttention(p.Sub("self_attn"), dim, heads, 1),
		norm1:                 ln("norm1"),
		crossAttnTokenToImage: newAttention(p.Sub("cross_attn_token_to_image"), dim, heads, downsample),
		norm2:                 ln("norm2"),
		mlp:                   newMLPBlock(p.Sub("mlp"), dim, mlpDim, false),
		norm3:                 ln("norm3"),
		norm4:                 ln("norm4"),
		crossAttnImageToToken: newAttention(p.Sub("cross_attn_image_to_token"), dim, heads, downsample),
		skipFirstLayerPE:      skipPE,
	}
}

// forward: queries (T, D), keys (HW, D), queryPE (T, D), keyPE (HW, D) ->
// queries (T, D), keys (HW, D). kpe, when not nil, is keys + keyPE already
// packed (packKeysPE), for the first block, whose keys are the image's.
func (b twoWayBlock) forward(g *nn.Graph, queries, keys, queryPE, keyPE, kpe *nn.Node) (*nn.Node, *nn.Node) {
	// Self attention of the tokens; block 0 has no PE and no residual.
	if b.skipFirstLayerPE {
		queries = b.selfAttn.forward(g, queries, queries, queries) // (T, D)
	} else {
		q := g.Add(queries, queryPE)                    // (T, D)
		attnOut := b.selfAttn.forward(g, q, q, queries) // (T, D)
		queries = g.Add(queries, attnOut)               // (T, D)
	}
	queries = b.norm1.Forward(g, queries) // (T, D)

	// Cross attention, tokens attending to the image: k = keys + key_pe,
	// the same for both cross attentions of the block, packed once.
	q := g.Add(queries, queryPE) // (T, D)
	if kpe == nil {
		kpe = packKeysPE(g, keys, keyPE) // (keys + key_pe), packed
	}
	attnOut := b.crossAttnTokenToImage.tokenToImage(g, q, kpe, keys) // (T, D)
	queries = b.norm2.ForwardAdd(g, queries, attnOut)                // (T, D)

	// MLP on the tokens.
	mlpOut := b.mlp.forward(g, queries)              // (T, D)
	queries = b.norm3.ForwardAdd(g, queries, mlpOut) // (T, D)

	// Cross attention, the image attending to the tokens: q = keys +
	// key_pe (packed above), k = queries + query_pe, v = queries.
	k := g.Add(queries, queryPE)                                                        // (T, D)
	attnOut = b.crossAttnImageToToken.imageToToken(g, kpe, k, queries, keys.Shape()[0]) // (HW, D)
	keys = b.norm4.ForwardAdd(g, keys, attnOut)                                         // (HW, D)
	return queries, keys
}

// twoWayTransformer is TwoWayTransformer.
type twoWayTransformer struct {
	layers                []twoWayBlock
	finalAttnTokenToImage attention
	normFinalAttn         nn.LayerNorm
}

func newTwoWayTransformer(p *nn.Params, depth, dim, heads, mlpDim int) twoWayTransformer {
	const downsample = 2 // attention_downsample_rate
	t := twoWayTransformer{
		finalAttnTokenToImage: newAttention(p.Sub("final_attn_token_to_image"), dim, heads, downsample),
		normFinalAttn:         nn.NewLayerNorm(p.Sub("norm_final_attn"), dim, decoderLNEps),
	}
	for i := 0; i < depth; i++ {
		t.layers = append(t.layers, newTwoWayBlock(p.Sub("layers").Index(i), dim, heads, mlpDim, downsample, i == 0))
	}
	return t
}

// forward: image (HW, D) and its positional encoding pe (HW, D), the
// flattened (1, D, h, w) tensors of the reference, and pointEmbedding
// (T, D) -> queries (T, D), keys (HW, D). imagePE is image + pe packed
// (packKeysPE), or nil.
func (t twoWayTransformer) forward(g *nn.Graph, image, pe, imagePE, pointEmbedding *nn.Node) (*nn.Node, *nn.Node) {
	queries, keys := pointEmbedding, image
	for i, l := range t.layers {
		var kpe *nn.Node
		if i == 0 {
			kpe = imagePE
		}
		queries, keys = l.forward(g, queries, keys, pointEmbedding, pe, kpe) // (T, D), (HW, D)
	}

	// Final attention, tokens to image.
	q := g.Add(queries, pointEmbedding)                              // (T, D)
	kpe := packKeysPE(g, keys, pe)                                   // (keys + pe), packed
	attnOut := t.finalAttnTokenToImage.tokenToImage(g, q, kpe, keys) // (T, D)
	queries = t.normFinalAttn.ForwardAdd(g, queries, attnOut)        // (T, D)
	return queries, keys
}
