package sam

// The mask decoder's TwoWayTransformer
// (segment_anything/modeling/transformer.py), built on an nn.Graph.
// Batch is 1 throughout: token tensors are (T, D), image tensors (HW, D).

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/mam-go/mam-go/nn"
)

// decoderLNEps is the eps of the decoder's torch.nn.LayerNorm layers.
const decoderLNEps = 1e-5

// attention is transformer.py's Attention: q/k/v projections from dim to
// dim/downsample, heads, softmax(q k^T / sqrt(d_head)) v, out projection.
type attention struct {
	q, k, v, out linearLayer
	heads        int
}

func newAttention(prefix string, dim, heads, downsample int) attention {
	internal := dim / downsample
	return attention{
		q:     linearLayer{prefix + ".q_proj", dim, internal},
		k:     linearLayer{prefix + ".k_proj", dim, internal},
		v:     linearLayer{prefix + ".v_proj", dim, internal},
		out:   linearLayer{prefix + ".out_proj", internal, dim},
		heads: heads,
	}
}

func (a attention) load(p *params) {
	a.q.load(p)
	a.k.load(p)
	a.v.load(p)
	a.out.load(p)
}

// forward: q (Nq, D), k (Nk, D), v (Nk, D) -> (Nq, D).
func (a attention) forward(g *nn.Graph, p *params, q, k, v *G.Node) *G.Node {
	q = a.q.forward(g, p, q)      // (Nq, Di)
	k = a.k.forward(g, p, k)      // (Nk, Di)
	v = a.v.forward(g, p, v)      // (Nk, Di)
	o := g.MHA(q, k, v, a.heads)  // (Nq, Di): per head softmax(q k^T / sqrt(Di/heads)) v
	return a.out.forward(g, p, o) // (Nq, D)
}

// twoWayBlock is transformer.py's TwoWayAttentionBlock.
type twoWayBlock struct {
	selfAttn                   attention
	norm1, norm2, norm3, norm4 layerNorm
	crossTokenToImage          attention
	crossImageToToken          attention
	mlp                        mlpBlock
	skipFirstLayerPE           bool
}

func newTwoWayBlock(prefix string, dim, heads, mlpDim, downsample int, skipPE bool) twoWayBlock {
	ln := func(n string) layerNorm { return layerNorm{prefix + "." + n, dim, decoderLNEps} }
	return twoWayBlock{
		selfAttn:          newAttention(prefix+".self_attn", dim, heads, 1),
		norm1:             ln("norm1"),
		crossTokenToImage: newAttention(prefix+".cross_attn_token_to_image", dim, heads, downsample),
		norm2:             ln("norm2"),
		mlp:               newMLPBlock(prefix+".mlp", dim, mlpDim),
		norm3:             ln("norm3"),
		norm4:             ln("norm4"),
		crossImageToToken: newAttention(prefix+".cross_attn_image_to_token", dim, heads, downsample),
		skipFirstLayerPE:  skipPE,
	}
}

func (b twoWayBlock) load(p *params) {
	b.selfAttn.load(p)
	b.norm1.load(p)
	b.crossTokenToImage.load(p)
	b.norm2.load(p)
	b.mlp.load(p)
	b.norm3.load(p)
	b.norm4.load(p)
	b.crossImageToToken.load(p)
}

// forward: queries (T, D), keys (HW, D), queryPE (T, D), keyPE (HW, D)
// -> queries (T, D), keys (HW, D). kpe, when not nil, is keys + keyPE
// already packed (packKeysPE), for the first block, whose keys are the
// image's.
func (b twoWayBlock) forward(g *nn.Graph, p *params, queries, keys, queryPE, keyPE, kpe *G.Node) (*G.Node, *G.Node) {
	// Self attention of the tokens; block 0 has no PE and no residual.
	if b.skipFirstLayerPE {
		queries = b.selfAttn.forward(g, p, queries, queries, queries) // (T, D)
	} else {
		q := g.Add(queries, queryPE)                       // (T, D)
		attnOut := b.selfAttn.forward(g, p, q, q, queries) // (T, D)
		queries = g.Add(queries, attnOut)                  // (T, D)
	}
	queries = b.norm1.forward(g, p, queries) // (T, D)

	// Cross attention, tokens attending to the image. keys + key_pe is the
	// same for both cross attentions of the block: computed and packed for
	// the products once.
	q := g.Add(queries, queryPE) // (T, D)
	if kpe == nil {
		kpe = packKeysPE(g, keys, keyPE) // (keys + key_pe)^T, packed
	}
	attnOut := b.crossTokenToImage.tokenToImage(g, p, q, kpe, keys) // (T, D)
	queries = b.norm2.addForward(g, p, queries, attnOut)            // (T, D): norm2(queries + attn_out)

	// MLP on the tokens.
	mlpOut := b.mlp.forward(g, p, queries)              // (T, D)
	queries = b.norm3.addForward(g, p, queries, mlpOut) // (T, D): norm3(queries + mlp_out)

	// Cross attention, the image attending to the tokens.
	q = g.Add(queries, queryPE)                                                        // (T, D)
	attnOut = b.crossImageToToken.imageToToken(g, p, kpe, q, queries, keys.Shape()[0]) // (HW, D)
	keys = b.norm4.addForward(g, p, keys, attnOut)                                     // (HW, D): norm4(keys + attn_out)
	return queries, keys
}

// twoWayTransformer is transformer.py's TwoWayTransformer.
type twoWayTransformer struct {
	layers                []twoWayBlock
	finalAttnTokenToImage attention
	normFinalAttn         layerNorm
}

func newTwoWayTransformer(prefix string, depth, dim, heads, mlpDim int) twoWayTransformer {
	const downsample = 2
	t := twoWayTransformer{
		finalAttnTokenToImage: newAttention(prefix+".final_attn_token_to_image", dim, heads, downsample),
		normFinalAttn:         layerNorm{prefix + ".norm_final_attn", dim, decoderLNEps},
	}
	for i := 0; i < depth; i++ {
		t.layers = append(t.layers, newTwoWayBlock(fmt.Sprintf("%s.layers.%d", prefix, i), dim, heads, mlpDim, downsample, i == 0))
	}
	return t
}

func (t twoWayTransformer) load(p *params) {
	for _, l := range t.layers {
		l.load(p)
	}
	t.finalAttnTokenToImage.load(p)
	t.normFinalAttn.load(p)
}

// forward: image (hw, D) and its positional encoding pe (hw, D), the
// flattened (1, D, h, w) tensors of the reference, and pointEmbedding
// (T, D) -> queries (T, D), keys (hw, D). imagePE is image + pe packed
// (packKeysPE), or nil.
func (t twoWayTransformer) forward(g *nn.Graph, p *params, image, pe, imagePE, pointEmbedding *G.Node) (*G.Node, *G.Node) {
	queries, keys := pointEmbedding, image
	for i, l := range t.layers {
		var kpe *G.Node
		if i == 0 {
			kpe = imagePE
		}
		queries, keys = l.forward(g, p, queries, keys, pointEmbedding, pe, kpe) // (T, D), (hw, D)
	}

	// Final attention, tokens to image.
	q := g.Add(queries, pointEmbedding)                                 // (T, D)
	kpe := packKeysPE(g, keys, pe)                                      // (keys + pe)^T, packed
	attnOut := t.finalAttnTokenToImage.tokenToImage(g, p, q, kpe, keys) // (T, D)
	queries = t.normFinalAttn.addForward(g, p, queries, attnOut)        // (T, D): norm(queries + attn_out)
	return queries, keys
}

// The decoder's cross attentions pair E*E image tokens with a handful of
// prompt tokens (T = 5 + prompts). Both are computed with the projections
// of the image side folded into the small side, which gives the same
// attention with far fewer multiply-adds (the big products go from
// HW x D x D/2 to HW x D x heads*T):
//
//   - tokens to image: the scores q_h (kpe W_k,h^T + b_k,h)^T equal
//     (q_h W_k,h) kpe^T plus a per-query constant (q_h . b_k,h) that the
//     softmax cancels; and since each row of the softmax sums to 1,
//     P_h (keys W_v,h^T + b_v,h) = (P_h keys) W_v,h^T + b_v,h.
//   - image to tokens: the scores (kpe W_q,h^T + b_q,h) k_h^T are kpe
//     (W_q,h^T k_h^T) plus the per-key row b_q,h k_h^T; and the output
//     projection of the heads' P_h v_h is sum_h P_h (v_h W_o,h^T) + b_o.
//
// Only the rounding differs from the reference's order of operations.

// packKeysPE adds a node computing keys + pe (HW, D) and packing its
// transpose as Gemm's B operand (nn.PackBInto): the image side of both
// cross attentions of a block, packed once.
func packKeysPE(g *nn.Graph, keys, pe *G.Node) *G.Node {
	if g.Err() != nil || keys == nil || pe == nil {
		return nil
	}
	ks := keys.Shape()
	if len(ks) != 2 || !pe.Shape().Eq(ks) {
		return failNode(g, "keys + pe of %v and %v", ks, pe.Shape())
	}
	hw, d := ks[0], ks[1]
	return g.ApplyFull("PackKeysPE", tensor.Shape{nn.PackedBLen(d, hw)}, func(o *tensor.Dense, in []*tensor.Dense) error {
		packKeysPEInto(nn.F32(o), nn.F32(in[0]), nn.F32(in[1]), hw, d)
		return nil
	}, keys, pe)
}

// packKeysPEInto packs (keys + pe)^T, keys and pe (hw, d), into dst.
func packKeysPEInto(dst, keys, pe []float32, hw, d int) {
	kpe := nn.Buffer(hw * d)
	defer nn.Recycle(kpe)
	const block = 1 << 14
	nn.ParallelFor((hw*d+block-1)/block, func(lo, hi int) {
		for i := lo * block; i < min(hi*block, hw*d); i++ {
			kpe[i] = keys[i] + pe[i]
		}
	})
	nn.PackBInto(dst, true, d, hw, kpe, d)
}

// tokenToImage is the attention of T tokens q (T, D) to the image: keys
// kpe, (image + PE)^T packed by packKeysPE, and values keys (HW, D) -> (T,
// D), out projection included.
func (a attention) tokenToImage(g *nn.Graph, p *params, q, kpe, keys *G.Node) *G.Node {
	ins := []*G.Node{q, kpe, keys,
		p.node(g, a.q.prefix+".weight"), p.node(g, a.q.prefix+".bias"),
		p.node(g, a.k.prefix+".weight"), p.node(g, a.v.prefix+".weight"), p.node(g, a.v.prefix+".bias"),
		p.node(g, a.out.prefix+".weight"), p.node(g, a.out.prefix+".bias")}
	if g.Err() != nil || q == nil || kpe == nil || keys == nil {
		return nil
	}
	qs, ks := q.Shape(), keys.Shape()
	if len(qs) != 2 || len(ks) != 2 || qs[1] != a.q.in || ks[1] != a.q.in || !kpe.Shape().Eq(tensor.Shape{nn.PackedBLen(ks[1], ks[0])}) {
		return failNode(g, "%s: token to image attention of %v and %v", a.q.prefix, qs, ks)
	}
	t, hw, d, di, heads := qs[0], ks[0], a.q.in, a.q.out, a.heads
	dh := di / heads
	var qPack, oPack nn.PackCache // the weights of the token-side projections
	return g.ApplyFull("TokenToImageAttention", tensor.Shape{t, d}, func(o *tensor.Dense, v []*tensor.Dense) error {
		qv, kpeV, keysV := nn.F32(v[0]), nn.F32(v[1]), nn.F32(v[2])
		wq, bq, wk, wv, bv, wo, bo := nn.F32(v[3]), nn.F32(v[4]), nn.F32(v[5]), nn.F32(v[6]), nn.F32(v[7]), nn.F32(v[8]), nn.F32(v[9])
		// qp: q_proj(q): (T, Di)
		qp := nn.Buffer(t * di)
		defer nn.Recycle(qp)
		qPack.Linear(qp, qv, t, d, wq, di, bq)
		ht := heads * t
		// gm: row h*T+i: q_h[i] @ W_k,h (dh x D)
		gm := nn.Buffer(ht * d)
		defer nn.Recycle(gm)
		for h := 0; h < heads; h++ {
			nn.Gemm(false, false, t, d, dh, 1, qp[h*dh:], di, wk[h*dh*d:], d, 0, gm[h*t*d:], d)
		}
		// s: scores (heads*T, HW) = gm @ kpe^T
		s := nn.Buffer(ht * hw)
		defer nn.Recycle(s)
		nn.GemmPacked(false, ht, 1, gm, d, nn.PackedBView(kpeV, true, d, hw), 0, s, hw)
		nn.SoftmaxRows(s, hw, float32(math.Sqrt(float64(dh))))
		// r: P @ keys: (heads*T, D)
		r := nn.Buffer(ht * d)
		defer nn.Recycle(r)
		nn.Gemm(false, false, ht, d, hw, 1, s, hw, keysV, d, 0, r, d)
		// att: heads' outputs (T, Di): r_h @ W_v,h^T + b_v,h
		att := nn.Buffer(t * di)
		defer nn.Recycle(att)
		for i := 0; i < t; i++ {
			copy(att[i*di:(i+1)*di], bv)
		}
		for h := 0; h < heads; h++ {
			nn.Gemm(false, true, t, dh, d, 1, r[h*t*d:], d, wv[h*dh*d:], d, 1, att[h*dh:], di)
		}
		oPack.Linear(nn.F32(o), att, t, di, wo, d, bo) // out_proj: (T, D)
		return nil
	}, ins...)
}

// imageToToken is the attention of the image, queries kpe (image + PE of
// hw tokens, transposed and packed by packKeysPE), to T tokens: keys k (T,
// D) (tokens + PE) and values v (T, D) -> (HW, D), out projection
// included.
func (a attention) imageToToken(g *nn.Graph, p *params, kpe, k, v *G.Node, hw int) *G.Node {
	ins := []*G.Node{kpe, k, v,
		p.node(g, a.q.prefix+".weight"), p.node(g, a.q.prefix+".bias"),
		p.node(g, a.k.prefix+".weight"), p.node(g, a.k.prefix+".bias"),
		p.node(g, a.v.prefix+".weight"), p.node(g, a.v.prefix+".bias"),
		p.node(g, a.out.prefix+".weight"), p.node(g, a.out.prefix+".bias")}
	if g.Err() != nil || kpe == nil || k == nil || v == nil {
		return nil
	}
	ks := k.Shape()
	if len(ks) != 2 || ks[1] != a.k.in || !v.Shape().Eq(ks) || !kpe.Shape().Eq(tensor.Shape{nn.PackedBLen(a.q.in, hw)}) {
		return failNode(g, "%s: image to token attention of %d pixels and %v", a.q.prefix, hw, ks)
	}
	t, d, di, heads := ks[0], a.q.in, a.q.out, a.heads
	dh := di / heads
	var kPack, vPack nn.PackCache // the weights of the token-side projections
	return g.ApplyFull("ImageToTokenAttention", tensor.Shape{hw, d}, func(o *tensor.Dense, in []*tensor.Dense) error {
		kpeV, kv, vv := nn.F32(in[0]), nn.F32(in[1]), nn.F32(in[2])
		wq, bq, wk, bk, wv, bv, wo, bo := nn.F32(in[3]), nn.F32(in[4]), nn.F32(in[5]), nn.F32(in[6]), nn.F32(in[7]), nn.F32(in[8]), nn.F32(in[9]), nn.F32(in[10])
		kp, vp := nn.Buffer(t*di), nn.Buffer(t*di) // k_proj(k), v_proj(v): (T, Di)
		defer nn.Recycle(kp)
		defer nn.Recycle(vp)
		kPack.Linear(kp, kv, t, d, wk, di, bk)
		vPack.Linear(vp, vv, t, d, wv, di, bv)
		ht := heads * t
		// mq: row h*T+j: k_h[j] @ W_q,h (dh x D)
		mq := nn.Buffer(ht * d)
		defer nn.Recycle(mq)
		cb := make([]float32, ht) // b_q,h . k_h[j]
		for h := 0; h < heads; h++ {
			nn.Gemm(false, false, t, d, dh, 1, kp[h*dh:], di, wq[h*dh*d:], d, 0, mq[h*t*d:], d)
			for j := 0; j < t; j++ {
				var c float32
				for e := 0; e < dh; e++ {
					c += bq[h*dh+e] * kp[j*di+h*dh+e]
				}
				cb[h*t+j] = c
			}
		}
		// sT: scores transposed (heads*T, HW) = mq @ kpe^T, with kpe^T
		// packed once for both attentions of the block
		sT := nn.Buffer(ht * hw)
		defer nn.Recycle(sT)
		nn.GemmPacked(false, ht, 1, mq, d, nn.PackedBView(kpeV, true, d, hw), 0, sT, hw)
		// s: scores (HW, heads*T) = sT^T + the per-key constants
		s := nn.Buffer(hw * ht)
		defer nn.Recycle(s)
		const pix = 256
		nn.ParallelFor((hw+pix-1)/pix, func(lo, hi int) {
			for i0 := lo * pix; i0 < min(hi*pix, hw); i0 += pix {
				i1 := min(i0+pix, hw)
				for j, c := range cb {
					col := sT[j*hw+i0 : j*hw+i1]
					for i, x := range col {
						s[(i0+i)*ht+j] = x + c
					}
				}
			}
		})
		div := float32(math.Sqrt(float64(dh)))
		nn.SoftmaxRows(s, t, div) // per query and head
		// z: row h*T+j: v_h[j] @ W_o,h^T (dh -> D)
		z := nn.Buffer(ht * d)
		defer nn.Recycle(z)
		for h := 0; h < heads; h++ {
			nn.Gemm(false, true, t, d, dh, 1, vp[h*dh:], di, wo[h*dh:], di, 0, z[h*t*d:], d)
		}
		out := nn.F32(o)
		nn.ParallelFor(hw, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				copy(out[i*d:(i+1)*d], bo)
			}
		})
		nn.Gemm(false, false, hw, d, ht, 1, s, ht, z, d, 1, out, d) // sum_h P_h z_h + b_o
		return nil
	}, ins...)
}
