package nn

import (
	"fmt"
	"math"
)

// biClamp bounds the fusion's attention logits after each max subtraction
// (BiMultiHeadAttention's clamp_min_for_underflow / clamp_max_for_overflow).
const biClamp = 50000

// BiAttentionWeights are the six linears of GroundingDINO's
// BiMultiHeadAttention (torch layout: weight (out, in), bias (out)), for
// model width D and attention width E.
type BiAttentionWeights struct {
	V, VB             []float32 // v_proj: image queries (E, D), (E)
	L, LB             []float32 // l_proj: text keys (E, D), (E)
	ValuesV, ValuesVB []float32 // values_v_proj: image values (E, D), (E)
	ValuesL, ValuesLB []float32 // values_l_proj: text values (E, D), (E)
	OutV, OutVB       []float32 // out_v_proj (D, E), (D)
	OutL, OutLB       []float32 // out_l_proj (D, E), (D)
}

func (w *BiAttentionWeights) check(dim, embed int) error {
	for _, t := range []struct {
		name string
		x    []float32
		n    int
	}{
		{"v_proj.weight", w.V, embed * dim}, {"v_proj.bias", w.VB, embed},
		{"l_proj.weight", w.L, embed * dim}, {"l_proj.bias", w.LB, embed},
		{"values_v_proj.weight", w.ValuesV, embed * dim}, {"values_v_proj.bias", w.ValuesVB, embed},
		{"values_l_proj.weight", w.ValuesL, embed * dim}, {"values_l_proj.bias", w.ValuesLB, embed},
		{"out_v_proj.weight", w.OutV, dim * embed}, {"out_v_proj.bias", w.OutVB, dim},
		{"out_l_proj.weight", w.OutL, dim * embed}, {"out_l_proj.bias", w.OutLB, dim},
	} {
		if len(t.x) != t.n {
			return fmt.Errorf("nn: bi-attention: %s has %d values, want %d", t.name, len(t.x), t.n)
		}
	}
	return nil
}

// BiAttentionInto computes GroundingDINO's bi-directional image-text
// attention (fuse_modules.py BiMultiHeadAttention) for s image tokens v
// (s, D) and n text tokens l (n, D), with heads heads of width E/heads:
//
//	q = v_proj(v) * (E/heads)^-0.5, k = l_proj(l), vv = values_v_proj(v), vl = values_l_proj(l)
//	A_h = q_h k_h^T                            (s, n) per head
//	A = clamp(A - max(A))                      one max over every head and position
//	deltaV = out_v_proj(concat_h softmax_text(A_h) vl_h)           (s, D)
//	Al_h = clamp(A_h^T - max over the image)   per text token
//	deltaL = out_l_proj(concat_h softmax_image(Al_h) vv_h)         (n, D)
//
// with clamp bounding to [-50000, 50000]. No position is padding (batch
// 1), so no mask is applied.
//
// The image-side products are reassociated so that nothing of size s x E
// is formed: A = v (scale W_q^T k^T) + scale b_q k^T; deltaV = P_v (vl_h
// W_out,h^T stacked over heads) + b; the text side's vv_h = v W_vv,h^T + b
// is applied after the softmax-weighted sum (P_l v) W_vv,h^T + b, the
// weights of each softmax summing to 1. That costs s*D*heads*n
// multiply-adds per product instead of s*D*E: with n up to 256 tokens and
// the released sizes (E = 1024, 4 heads), never more. The results differ
// from the reference's order of operations by float32 rounding only.
func BiAttentionInto(deltaV, deltaL, v, l []float32, s, n, dim, embed, heads int, w *BiAttentionWeights) error {
	switch {
	case s < 0 || n < 0 || dim < 0 || heads <= 0 || embed < 0 || embed%heads != 0:
		return fmt.Errorf("nn: bi-attention: %d image and %d text tokens of width %d, %d heads for attention width %d", s, n, dim, heads, embed)
	case len(v) < s*dim || len(deltaV) < s*dim:
		return fmt.Errorf("nn: bi-attention: image operands shorter than %d x %d", s, dim)
	case len(l) < n*dim || len(deltaL) < n*dim:
		return fmt.Errorf("nn: bi-attention: text operands shorter than %d x %d", n, dim)
	}
	if err := w.check(dim, embed); err != nil {
		return err
	}
	if s == 0 || n == 0 || embed == 0 {
		// Softmax over nothing: each side's attention output is zero,
		// leaving its output projection's bias.
		fillRows(deltaV[:s*dim], nil, w.OutVB)
		fillRows(deltaL[:n*dim], nil, w.OutLB)
		return nil
	}
	hd := embed / heads
	hn := heads * n // attention columns: head-major, then text token
	scale := float32(math.Pow(float64(hd), -0.5))
	buf := newScratch()
	defer buf.free()

	// Text projections: k, vl (n, E).
	k, vl := buf.get(n*embed), buf.get(n*embed)
	LinearRows(k, l, n, dim, w.L, embed, w.LB)
	LinearRows(vl, l, n, dim, w.ValuesL, embed, w.ValuesLB)

	// A (s, hn) = v (s, D) @ m (D, hn) + c, with m[:, h*n+j] = scale *
	// W_q,h^T k_h[j] and c[h*n+j] = scale * b_q,h . k_h[j].
	m, c := buf.get(dim*hn), buf.get(hn)
	for h := 0; h < heads; h++ {
		Gemm(true, true, dim, n, hd, scale, w.V[h*hd*dim:], dim, k[h*hd:], embed, 0, m[h*n:], hn)
		for j := 0; j < n; j++ {
			var dot float32
			for i, b := range w.VB[h*hd : (h+1)*hd] {
				dot += b * k[j*embed+h*hd+i]
			}
			c[h*n+j] = scale * dot
		}
	}
	a := buf.get(s * hn)
	fillRows(a, nil, c)
	Gemm(false, false, s, hn, dim, 1, v, dim, m, hn, 1, a, hn)
	mx := parallelMax(a)

	// Text side, from A before the image side overwrites it: (hn, s) =
	// A^T, softmax over the image for each head and text token.
	at := buf.get(hn * s)
	transposeInto(at, a, 1, s, hn)
	ParallelFor(hn, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := at[r*s : (r+1)*s]
			softmaxClamped(row, clampedShiftMax(row, mx))
		}
	})
	// y (hn, D) = P_l v; out_l[j, head h] = y[h*n+j] W_vv,h^T + b_vv,h.
	y := buf.get(hn * dim)
	Gemm(false, false, hn, dim, s, 1, at, s, v, dim, 0, y, dim)
	outL := buf.get(n * embed)
	fillRows(outL, nil, w.ValuesVB)
	for h := 0; h < heads; h++ {
		Gemm(false, true, n, hd, dim, 1, y[h*n*dim:], dim, w.ValuesV[h*hd*dim:], dim, 1, outL[h*hd:], embed)
	}
	LinearRows(deltaL[:n*dim], outL, n, embed, w.OutL, dim, w.OutLB)

	// Image side: softmax over the text of each head, in place.
	per := max(1, 4096/hn)
	ParallelFor((s+per-1)/per, func(lo, hi int) {
		for i := lo * per; i < min(hi*per, s); i++ {
			for h := 0; h < heads; h++ {
				softmaxClamped(a[i*hn+h*n:i*hn+(h+1)*n], mx)
			}
		}
	})
	// deltaV (s, D) = P_v (s, hn) @ o (hn, D) + b with o[h*n+j] = vl_h[j]
	// W_out,h^T.
	o := buf.get(hn * dim)
	for h := 0; h < heads; h++ {
		Gemm(false, true, n, dim, hd, 1, vl[h*hd:], embed, w.OutV[h*hd:], embed, 0, o[h*n*dim:], dim)
	}
	fillRows(deltaV[:s*dim], nil, w.OutVB)
	Gemm(false, false, s, dim, hn, 1, a, hn, o, dim, 1, deltaV, dim)
	return nil
}

// scratch hands out pool buffers (every value to be written by the
// caller) and gives them all back with free.
type scratch struct{ bufs [][]float32 }

func newScratch() *scratch { return &scratch{} }

func (b *scratch) get(n int) []float32 {
	x := pool.take(n)
	if x == nil {
		x = make([]float32, n)
	}
	b.bufs = append(b.bufs, x)
	return x
}

func (b *scratch) free() {
	for _, x := range b.bufs {
		pool.put(x)
	}
	b.bufs = nil
}

// parallelMax returns the largest value of x (-Inf when empty; NaNs are
// skipped).
func parallelMax(x []float32) float32 {
	const block = 1 << 14
	blocks := (len(x) + block - 1) / block
	part := make([]float32, blocks)
	ParallelFor(blocks, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			m := float32(math.Inf(-1))
			for _, v := range x[b*block : min((b+1)*block, len(x))] {
				if v > m {
					m = v
				}
			}
			part[b] = m
		}
	})
	m := float32(math.Inf(-1))
	for _, v := range part {
		if v > m {
			m = v
		}
	}
	return m
}

// clampLogit bounds x to [-biClamp, biClamp].
func clampLogit(x float32) float32 {
	return min(max(x, -biClamp), biClamp)
}

// clampedShiftMax sets row[i] = clamp(row[i] - shift) and returns the
// row's new maximum.
func clampedShiftMax(row []float32, shift float32) float32 {
	m := float32(math.Inf(-1))
	for i, v := range row {
		v = clampLogit(v - shift)
		row[i] = v
		m = max(m, v)
	}
	return m
}

// softmaxClamped replaces row with softmax(clamp(row - shift)).
func softmaxClamped(row []float32, shift float32) {
	m := clampedShiftMax(row, shift)
	inv := 1 / expShiftSum(row, m)
	for i, v := range row {
		row[i] = v * inv
	}
}

// BiAttention adds GroundingDINO's bi-directional image-text attention
// (BiAttentionInto) over the LayerNorm-ed image tokens v (S, D) and text
// tokens l (N, D), with the module's weights w (attention width embed,
// heads heads; read when the graph runs, they must not change meanwhile).
// The result is (S+N, D): rows 0..S-1 are the image update delta_v, rows
// S..S+N-1 the text update delta_l.
func (g *Graph) BiAttention(v, l *Node, w *BiAttentionWeights, embed, heads int) *Node {
	if !g.ok(v, l) {
		return nil
	}
	vs, ls := shapeOf(v), shapeOf(l)
	if len(vs) != 2 || len(ls) != 2 || vs[1] != ls[1] {
		return g.fail("bi-attention: image %v and text %v: want (S, D) and (N, D)", vs, ls)
	}
	s, n, dim := vs[0], ls[0], vs[1]
	if heads <= 0 || embed%heads != 0 {
		return g.fail("bi-attention: %d heads do not divide width %d", heads, embed)
	}
	if w == nil {
		return g.fail("bi-attention: no weights")
	}
	if err := w.check(dim, embed); err != nil {
		g.Fail(err)
		return nil
	}
	return g.OpFull("BiAttention", []int{s + n, dim}, func(out []float32, in [][]float32) error {
		return BiAttentionInto(out[:s*dim], out[s*dim:], in[0], in[1], s, n, dim, embed, heads, w)
	}, v, l)
}
