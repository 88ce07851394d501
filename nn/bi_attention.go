package nn

import (
	"fmt"
	"math"
)

// biClamp bounds the fusion's attention logits after each max subtraction
// (BiMultiHeadAttention's clamp_min_for_underflow / clamp_max_for_overflow).
const biClamp = 50000

// BiAttentionInto computes the attention core of GroundingDINO's
// bi-directional image-text fusion (fuse_modules.py BiMultiHeadAttention,
// between its projections), for s image tokens and n text tokens:
//
//	A = scale * q_h k_h^T            (heads, s, n)
//	A = clamp(A - max(A))            one max over every head and position
//	outV_h = softmax_text(A) vl_h    (s, d): each image token over the text
//	Al = clamp(A^T - max_image(A^T)) per head and text token
//	outL_h = softmax_image(Al) vv_h  (n, d): each text token over the image
//
// where clamp bounds to [-50000, 50000]. q and vv are (s, heads*d), k and
// vl (n, heads*d), outV (s, heads*d), outL (n, heads*d), row-major, head h
// being the column block [h*d, (h+1)*d). No position is padding (batch 1),
// so no mask is applied. With no image or no text token the outputs are
// zero.
func BiAttentionInto(outV, outL, q, k, vv, vl []float32, s, n, heads, d int, scale float32) error {
	dim := heads * d
	switch {
	case s < 0 || n < 0 || heads < 0 || d < 0:
		return fmt.Errorf("nn: bi-attention: %d image and %d text tokens, %d heads of %d", s, n, heads, d)
	case len(q) < s*dim || len(vv) < s*dim || len(outV) < s*dim:
		return fmt.Errorf("nn: bi-attention: image operands shorter than %d x %d", s, dim)
	case len(k) < n*dim || len(vl) < n*dim || len(outL) < n*dim:
		return fmt.Errorf("nn: bi-attention: text operands shorter than %d x %d", n, dim)
	}
	if s == 0 || n == 0 || dim == 0 {
		clear(outV[:s*dim])
		clear(outL[:n*dim])
		return nil
	}
	a := pool.take(heads * s * n) // every value is written
	if a == nil {
		a = make([]float32, heads*s*n)
	}
	defer pool.put(a)
	// A_h (s, n) = scale * q_h (s, d) @ k_h^T (d, n)
	for h := 0; h < heads; h++ {
		Gemm(false, true, s, n, d, scale, q[h*d:], dim, k[h*d:], dim, 0, a[h*s*n:], n)
	}
	mx := parallelMax(a[:heads*s*n])
	t := pool.take(n * s)
	if t == nil {
		t = make([]float32, n*s)
	}
	defer pool.put(t)
	for h := 0; h < heads; h++ {
		ah := a[h*s*n : (h+1)*s*n]
		// Text side, from A before the image side overwrites it:
		// (n, s) = A_h^T, softmax over the image per text token.
		transposeInto(t, ah, 1, s, n)
		ParallelFor(n, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				row := t[j*s : (j+1)*s]
				softmaxClamped(row, clampedShiftMax(row, mx))
			}
		})
		// outL_h (n, d) = P_l (n, s) @ vv_h (s, d)
		Gemm(false, false, n, d, s, 1, t, s, vv[h*d:], dim, 0, outL[h*d:], dim)
		// Image side: softmax over the text per image token, in place.
		per := max(1, 4096/n)
		ParallelFor((s+per-1)/per, func(lo, hi int) {
			for i := lo * per; i < min(hi*per, s); i++ {
				softmaxClamped(ah[i*n:(i+1)*n], mx)
			}
		})
		// outV_h (s, d) = P_v (s, n) @ vl_h (n, d)
		Gemm(false, false, s, d, n, 1, ah, n, vl[h*d:], dim, 0, outV[h*d:], dim)
	}
	return nil
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

// softmaxClamped replaces row with softmax(clampLogit(row - shift)).
func softmaxClamped(row []float32, shift float32) {
	m := clampedShiftMax(row, shift)
	inv := 1 / expShiftSum(row, m)
	for i, v := range row {
		row[i] = v * inv
	}
}

// BiAttention adds the fusion's bi-directional attention core
// (BiAttentionInto) over projected image queries q and values vv (S, D)
// and text keys k and values vl (N, D), D a multiple of heads, with the
// queries scaled by scale. The result is (S+N, D): rows 0..S-1 are the
// image side's output (each image token attending over the text), rows
// S..S+N-1 the text side's (each text token attending over the image).
func (g *Graph) BiAttention(q, k, vv, vl *Node, heads int, scale float32) *Node {
	if !g.ok(q, k, vv, vl) {
		return nil
	}
	qs, ks, vvs, vls := shapeOf(q), shapeOf(k), shapeOf(vv), shapeOf(vl)
	if len(qs) != 2 || len(ks) != 2 || len(vvs) != 2 || len(vls) != 2 ||
		ks[1] != qs[1] || vvs[1] != qs[1] || vls[1] != qs[1] || vvs[0] != qs[0] || vls[0] != ks[0] {
		return g.fail("bi-attention: q %v, k %v, image values %v, text values %v: want (S, D), (N, D), (S, D), (N, D)", qs, ks, vvs, vls)
	}
	s, n, dim := qs[0], ks[0], qs[1]
	if heads <= 0 || dim%heads != 0 {
		return g.fail("bi-attention: %d heads do not divide width %d", heads, dim)
	}
	return g.OpFull("BiAttention", []int{s + n, dim}, func(out []float32, in [][]float32) error {
		return BiAttentionInto(out[:s*dim], out[s*dim:], in[0], in[1], in[2], in[3], s, n, heads, dim/heads, scale)
	}, q, k, vv, vl)
}
