package sam

// Fused kernels of the mask decoder. Each sits behind a call shaped like
// the PyTorch module or expression it replaces, so that transformer.go and
// mask_decoder.go read like the reference:
//
//   - attention.tokenToImage and attention.imageToToken are the cross
//     attentions of TwoWayAttentionBlock (Attention.forward on q, k, v);
//   - packKeysPE is keys + key_pe, shared by both cross attentions;
//   - flattenAdd is src.flatten(2).permute(0, 2, 1) of (a + b);
//   - convTranspose2x2 and maskProduct are output_upscaling and
//     (hyper_in @ upscaled_embedding.view(b, c, h * w)).view(b, -1, h, w).
//
// Only the rounding differs from the reference's order of operations.

import (
	"math"
	"slices"

	"github.com/mam-go/mam-go/nn"
)

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

// packKeysPE adds a node computing keys + pe (HW, D) and packing its
// transpose as Gemm's B operand (nn.PackBInto): the image side of both
// cross attentions of a block, packed once.
func packKeysPE(g *nn.Graph, keys, pe *nn.Node) *nn.Node {
	if g.Err() != nil || keys == nil || pe == nil {
		return nil
	}
	ks := keys.Shape()
	if len(ks) != 2 || !slices.Equal(pe.Shape(), ks) {
		return g.Errorf("sam: keys + pe of %v and %v", ks, pe.Shape())
	}
	hw, d := ks[0], ks[1]
	return g.OpFull("PackKeysPE", []int{nn.PackedBLen(d, hw)}, func(o []float32, in [][]float32) error {
		packKeysPEInto(o, in[0], in[1], hw, d)
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

// tokenToImage is a.forward(q, k=kpe, v=keys) for T tokens q (T, D)
// attending to the image: kpe is (image + PE), packed by packKeysPE, and
// keys (HW, D) the values -> (T, D), out projection included.
func (a attention) tokenToImage(g *nn.Graph, q, kpe, keys *nn.Node) *nn.Node {
	ins := []*nn.Node{q, kpe, keys,
		a.q.Weight.Node(g), a.q.Bias.Node(g), a.k.Weight.Node(g), a.v.Weight.Node(g), a.v.Bias.Node(g),
		a.out.Weight.Node(g), a.out.Bias.Node(g)}
	if g.Err() != nil || q == nil || kpe == nil || keys == nil {
		return nil
	}
	qs, ks := q.Shape(), keys.Shape()
	if len(qs) != 2 || len(ks) != 2 || qs[1] != a.dim || ks[1] != a.dim || !slices.Equal(kpe.Shape(), []int{nn.PackedBLen(ks[1], ks[0])}) {
		return g.Errorf("sam: %s: token to image attention of %v and %v", a.q.Weight.Name, qs, ks)
	}
	t, hw, d, di, heads := qs[0], ks[0], a.dim, a.internal, a.heads
	dh := di / heads
	var qPack, oPack nn.PackCache // the weights of the token-side projections
	return g.OpFull("TokenToImageAttention", []int{t, d}, func(o []float32, v [][]float32) error {
		qv, kpeV, keysV := v[0], v[1], v[2]
		wq, bq, wk, wv, bv, wo, bo := v[3], v[4], v[5], v[6], v[7], v[8], v[9]
		// qp = q_proj(q): (T, Di)
		qp := nn.Buffer(t * di)
		defer nn.Recycle(qp)
		qPack.Linear(qp, qv, t, d, wq, di, bq)
		ht := heads * t
		// gm, row h*T+i: q_h[i] @ W_k,h (dh x D)
		gm := nn.Buffer(ht * d)
		defer nn.Recycle(gm)
		for h := 0; h < heads; h++ {
			nn.Gemm(false, false, t, d, dh, 1, qp[h*dh:], di, wk[h*dh*d:], d, 0, gm[h*t*d:], d)
		}
		// s = softmax(gm @ kpe^T / sqrt(dh)): (heads*T, HW)
		s := nn.Buffer(ht * hw)
		defer nn.Recycle(s)
		nn.GemmPacked(false, ht, 1, gm, d, nn.PackedBView(kpeV, true, d, hw), 0, s, hw)
		nn.SoftmaxRows(s, hw, float32(math.Sqrt(float64(dh))))
		// r = P @ keys: (heads*T, D)
		r := nn.Buffer(ht * d)
		defer nn.Recycle(r)
		nn.Gemm(false, false, ht, d, hw, 1, s, hw, keysV, d, 0, r, d)
		// att, the heads' outputs (T, Di): r_h @ W_v,h^T + b_v,h
		att := nn.Buffer(t * di)
		defer nn.Recycle(att)
		for i := 0; i < t; i++ {
			copy(att[i*di:(i+1)*di], bv)
		}
		for h := 0; h < heads; h++ {
			nn.Gemm(false, true, t, dh, d, 1, r[h*t*d:], d, wv[h*dh*d:], d, 1, att[h*dh:], di)
		}
		oPack.Linear(o, att, t, di, wo, d, bo) // out_proj: (T, D)
		return nil
	}, ins...)
}

// imageToToken is a.forward(q=kpe, k, v) for the image attending to T
// tokens: kpe is (image + PE) of hw pixels, packed by packKeysPE; k (T, D)
// the tokens + PE and v (T, D) the tokens -> (HW, D), out projection
// included.
func (a attention) imageToToken(g *nn.Graph, kpe, k, v *nn.Node, hw int) *nn.Node {
	ins := []*nn.Node{kpe, k, v,
		a.q.Weight.Node(g), a.q.Bias.Node(g), a.k.Weight.Node(g), a.k.Bias.Node(g),
		a.v.Weight.Node(g), a.v.Bias.Node(g), a.out.Weight.Node(g), a.out.Bias.Node(g)}
	if g.Err() != nil || kpe == nil || k == nil || v == nil {
		return nil
	}
	ks := k.Shape()
	if len(ks) != 2 || ks[1] != a.dim || !slices.Equal(v.Shape(), ks) || !slices.Equal(kpe.Shape(), []int{nn.PackedBLen(a.dim, hw)}) {
		return g.Errorf("sam: %s: image to token attention of %d pixels and %v", a.q.Weight.Name, hw, ks)
	}
	t, d, di, heads := ks[0], a.dim, a.internal, a.heads
	dh := di / heads
	var kPack, vPack nn.PackCache // the weights of the token-side projections
	return g.OpFull("ImageToTokenAttention", []int{hw, d}, func(out []float32, in [][]float32) error {
		kpeV, kv, vv := in[0], in[1], in[2]
		wq, bq, wk, bk, wv, bv, wo, bo := in[3], in[4], in[5], in[6], in[7], in[8], in[9], in[10]
		kp, vp := nn.Buffer(t*di), nn.Buffer(t*di) // k_proj(k), v_proj(v): (T, Di)
		defer nn.Recycle(kp)
		defer nn.Recycle(vp)
		kPack.Linear(kp, kv, t, d, wk, di, bk)
		vPack.Linear(vp, vv, t, d, wv, di, bv)
		ht := heads * t
		// mq, row h*T+j: k_h[j] @ W_q,h (dh x D); cb: b_q,h . k_h[j]
		mq := nn.Buffer(ht * d)
		defer nn.Recycle(mq)
		cb := make([]float32, ht)
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
		// sT, the scores transposed (heads*T, HW) = mq @ kpe^T
		sT := nn.Buffer(ht * hw)
		defer nn.Recycle(sT)
		nn.GemmPacked(false, ht, 1, mq, d, nn.PackedBView(kpeV, true, d, hw), 0, sT, hw)
		// s = softmax(sT^T + cb) per query and head: (HW, heads*T)
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
		nn.SoftmaxRows(s, t, float32(math.Sqrt(float64(dh))))
		// z, row h*T+j: v_h[j] @ W_o,h^T (dh -> D)
		z := nn.Buffer(ht * d)
		defer nn.Recycle(z)
		for h := 0; h < heads; h++ {
			nn.Gemm(false, true, t, d, dh, 1, vp[h*dh:], di, wo[h*dh:], di, 0, z[h*t*d:], d)
		}
		// out = sum_h P_h z_h + b_o: (HW, D)
		nn.ParallelFor(hw, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				copy(out[i*d:(i+1)*d], bo)
			}
		})
		nn.Gemm(false, false, hw, d, ht, 1, s, ht, z, d, 1, out, d)
		return nil
	}, ins...)
}

// flattenAdd sets dst (cols, rows) = (x + add)^T for x (rows, cols), add
// nil or of x's shape: (a + b).flatten(2).permute(0, 2, 1) of (1, D, E, E)
// tensors. Each task takes a band of 16 rows of x and walks along it
// (sequential reads that the prefetcher follows), transposing 16 x 32
// tiles through a local buffer into runs of 16 values of dst's rows.
func flattenAdd(dst, x, add []float32, rows, cols int) {
	const rb, cb = 16, 32
	nn.ParallelFor((rows+rb-1)/rb, func(lo, hi int) {
		var tile [rb * cb]float32
		for r0 := lo * rb; r0 < min(hi*rb, rows); r0 += rb {
			nr := min(rb, rows-r0)
			for c0 := 0; c0 < cols; c0 += cb {
				nc := min(cb, cols-c0)
				for i := 0; i < nr; i++ {
					t := tile[i*cb : i*cb+nc]
					xr := x[(r0+i)*cols+c0 : (r0+i)*cols+c0+nc]
					if add == nil {
						copy(t, xr)
						continue
					}
					ar := add[(r0+i)*cols+c0 : (r0+i)*cols+c0+nc]
					for j, v := range xr {
						t[j] = v + ar[j]
					}
				}
				for j := 0; j < nc; j++ {
					d := dst[(c0+j)*rows+r0 : (c0+j)*rows+r0+nr]
					for i := range d {
						d[i] = tile[i*cb+j]
					}
				}
			}
		}
	})
}

// convTranspose2x2 is a ConvTranspose2d(Cin, Cout, kernel 2, stride 2) run
// as a per-pixel matrix product: each input pixel times w (Cin, 4*Cout)
// gives its 2x2 output pixels, phase r = ry*2+rx by phase, each a row of
// Cout channels. Its output stays in that (pixel, phase) order.
type convTranspose2x2 struct {
	w, b      nn.Weight // (Cin, 4*Cout), (4*Cout)
	cin, cout int
}

// newConvTranspose2x2 fetches weight (Cin, Cout, 2, 2) and bias (Cout) and
// rearranges them: column r*Cout+co of w is weight[:, co, r/2, r%2], and
// the bias is repeated for each of the 4 phases.
func newConvTranspose2x2(p *nn.Params, cin, cout int) convTranspose2x2 {
	weight, bias := p.Weight("weight", cin, cout, 2, 2), p.Weight("bias", cout)
	w := make([]float32, cin*4*cout)
	for c := 0; c < cin; c++ {
		for co := 0; co < cout; co++ {
			for r := 0; r < 4; r++ {
				w[c*4*cout+r*cout+co] = weight.Data[(c*cout+co)*4+r]
			}
		}
	}
	b := make([]float32, 4*cout)
	for r := 0; r < 4; r++ {
		copy(b[r*cout:], bias.Data)
	}
	return convTranspose2x2{
		w:   nn.Weight{Name: weight.Name + ":pixels", Shape: []int{cin, 4 * cout}, Data: w},
		b:   nn.Weight{Name: bias.Name + ":pixels", Shape: []int{4 * cout}, Data: b},
		cin: cin, cout: cout,
	}
}

// forward: x (rows, Cin) -> (rows*4, Cout), every input pixel becoming 4
// rows, one per output phase.
func (c convTranspose2x2) forward(g *nn.Graph, x *nn.Node) *nn.Node {
	w, b := c.w.Node(g), c.b.Node(g)
	if g.Err() != nil || x == nil {
		return nil
	}
	xs := x.Shape()
	if len(xs) != 2 || xs[1] != c.cin {
		return g.Errorf("sam: %s: input %v", c.w.Name, xs)
	}
	rows, in, out := xs[0], c.cin, 4*c.cout
	return g.OpFull("ConvTranspose2x2", []int{rows * 4, c.cout}, func(dst []float32, v [][]float32) error {
		bias := v[2]
		nn.ParallelFor(rows, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				copy(dst[r*out:(r+1)*out], bias)
			}
		})
		// (rows, 4*Cout) = x (rows, Cin) @ w (Cin, 4*Cout) + bias
		nn.Gemm(false, false, rows, out, in, 1, v[0], in, v[1], out, 1, dst, out)
		return nil
	}, x, w, b)
}

// maskProduct is the end of output_upscaling and the mask product:
//
//	upscaled = GELU(ConvTranspose2d(x))            (1, C, 4E, 4E)
//	masks = (hyper @ upscaled.view(1, C, 16E*E))   (M, 4E*4E)
//
// with x (E*E*4, Cin) the first upscaling's output in (pixel, phase)
// order, conv the second ConvTranspose2d(Cin, C, 2, 2) and hyper (M, C). It
// runs by blocks of pixels, so the upscaled embedding (E*E*16, C) is never
// stored whole. Its rows are in upscale order: pixel (y, x) of the E x E
// grid, phase (ry1, rx1) of the first convolution, phase (ry2, rx2) of the
// second, written out at row 4y+2ry1+ry2, column 4x+2rx1+rx2 of each mask.
func maskProduct(g *nn.Graph, x *nn.Node, conv convTranspose2x2, hyper *nn.Node, e int) *nn.Node {
	w, b := conv.w.Node(g), conv.b.Node(g)
	if g.Err() != nil || x == nil || hyper == nil {
		return nil
	}
	xs, hs := x.Shape(), hyper.Shape()
	if len(xs) != 2 || len(hs) != 2 || xs[1] != conv.cin || hs[1] != conv.cout || xs[0] != 4*e*e {
		return g.Errorf("sam: mask product: input %v, hyper_in %v", xs, hs)
	}
	rows, cin, c, m := xs[0], xs[1], hs[1], hs[0]
	side := 4 * e
	const block = 64 // rows of x per task: 256 upscaled pixels
	var wPack nn.PackCache
	return g.OpFull("MaskProduct", []int{m, side * side}, func(out []float32, v [][]float32) error {
		xv, hv, bv := v[0], v[1], v[3]
		pw := wPack.B(false, cin, 4*c, v[2], 4*c)
		nn.ParallelFor((rows+block-1)/block, func(lo, hi int) {
			up := nn.Buffer(block * 4 * c)
			defer nn.Recycle(up)
			prod := nn.Buffer(m * block * 4)
			defer nn.Recycle(prod)
			for t := lo; t < hi; t++ {
				r0 := t * block
				nr := min(block, rows-r0)
				// up (nr, 4C) = GELU(x[r0:r0+nr] @ w + b), viewed as (4 nr, C)
				for r := 0; r < nr; r++ {
					copy(up[r*4*c:(r+1)*4*c], bv)
				}
				nn.GemmPacked(false, nr, 1, xv[r0*cin:], cin, pw, 1, up, 4*c)
				nn.GELUBias(up[:nr*4*c], nil)
				// prod (M, 4 nr) = hyper (M, C) @ up^T
				n := 4 * nr
				nn.Gemm(false, true, m, n, c, 1, hv, c, up, c, 0, prod, n)
				for j := 0; j < n; j++ {
					gi := 4*r0 + j // upscaled row: pixel gi/16, phases gi%16
					px, q := gi/16, gi%16
					y, xx := px/e, px%e
					ry1, rx1, ry2, rx2 := q>>3, (q>>2)&1, (q>>1)&1, q&1
					at := (4*y+2*ry1+ry2)*side + 4*xx + 2*rx1 + rx2
					for k := 0; k < m; k++ {
						out[k*side*side+at] = prod[k*n+j]
					}
				}
			}
		})
		return nil
	}, x, hyper, w, b)
}
