package nn

// Multi-head scaled dot-product attention on projected queries, keys and
// values (torch.nn.MultiheadAttention's core), with an optional mask.

import (
	"math"
)

// mhaRowBlock is how many query rows one task of MHAInto handles.
const mhaRowBlock = 64

// MHAInto computes multi-head scaled dot-product attention on already
// projected queries, keys and values, as SAM's decoder Attention does
// between its projections:
//
//	out[:, h] = softmax(q[:, h] @ k[:, h]^T / sqrt(d)) @ v[:, h]
//
// for each of the heads, where head h is the column block [h*d, (h+1)*d).
// q and out are (nq, heads*d), k and v are (nk, heads*d), row-major. The
// softmax runs over the nk keys of each query row.
func MHAInto(out, q, k, v []float32, nq, nk, heads, d int) {
	MaskedMHAInto(out, q, k, v, nq, nk, heads, d, nil)
}

// softmaxScaled replaces row with softmax(row / scale), dividing first as
// the reference does (attn / sqrt(d), then softmax). The exponentials are
// the package's float32 exp (expShiftSum, relative error below 2e-7).
func softmaxScaled(row []float32, scale float32) {
	mx := divMax(row, scale)
	inv := 1 / expShiftSum(row, mx)
	scaleInto(row, row, inv)
}

// SoftmaxRows replaces each of the len(x)/n rows of n values in x with
// softmax(row / div), dividing first as attention does (scores /
// sqrt(d_head), then softmax). Rows are done in parallel.
func SoftmaxRows(x []float32, n int, div float32) {
	if n <= 0 {
		return
	}
	rows := len(x) / n
	per := max(1, 4096/n) // rows per task
	ParallelFor((rows+per-1)/per, func(lo, hi int) {
		for r := lo * per; r < min(hi*per, rows); r++ {
			softmaxScaled(x[r*n:(r+1)*n], div)
		}
	})
}

// MHA adds multi-head attention (MHAInto) over projected q (Nq, D), k and v
// (Nk, D), with an optional leading batch axis (B, N, D); D must be a
// multiple of heads. The result has q's shape.
func (g *Graph) MHA(q, k, v *Node, heads int) *Node {
	if !g.ok(q, k, v) {
		return nil
	}
	qs, ks, vs := shapeOf(q), shapeOf(k), shapeOf(v)
	if len(qs) != len(ks) || len(qs) != len(vs) || (len(qs) != 2 && len(qs) != 3) {
		return g.fail("mha: q %v, k %v, v %v: want (N, D) or (B, N, D)", qs, ks, vs)
	}
	nd := len(qs)
	dim := qs[nd-1]
	batch := 1
	if nd == 3 {
		batch = qs[0]
		if ks[0] != batch || vs[0] != batch {
			return g.fail("mha: batch of q %v, k %v, v %v differ", qs, ks, vs)
		}
	}
	nq, nk := qs[nd-2], ks[nd-2]
	if ks[nd-1] != dim || vs[nd-1] != dim || vs[nd-2] != nk {
		return g.fail("mha: q %v, k %v, v %v do not match", qs, ks, vs)
	}
	if heads <= 0 || dim%heads != 0 {
		return g.fail("mha: %d heads do not divide width %d", heads, dim)
	}
	d := dim / heads
	return g.Op("MHA", qs, func(o []float32, in [][]float32) error {
		out, qv, kv, vv := o, in[0], in[1], in[2]
		for b := 0; b < batch; b++ {
			MHAInto(out[b*nq*dim:(b+1)*nq*dim], qv[b*nq*dim:(b+1)*nq*dim],
				kv[b*nk*dim:(b+1)*nk*dim], vv[b*nk*dim:(b+1)*nk*dim], nq, nk, heads, d)
		}
		return nil
	}, q, k, v)
}

// MaskedMHAInto is MHAInto where query row i attends only to the keys j
// with mask[i*nk+j] true (nq x nk, row-major; nil attends everywhere), as
// torch.nn.MultiheadAttention with a boolean attn_mask (there true means
// "masked", the negation of this mask) and BERT's additive attention mask
// compute it. A row with no allowed key attends uniformly to every key, as
// BERT's large negative additive mask makes it.
func MaskedMHAInto(out, q, k, v []float32, nq, nk, heads, d int, mask []bool) {
	dim := heads * d
	if nq == 0 || dim == 0 {
		return
	}
	if nk == 0 {
		clear(out[:nq*dim])
		return
	}
	scale := float32(math.Sqrt(float64(d)))
	blocks := (nq + mhaRowBlock - 1) / mhaRowBlock
	ParallelFor(heads*blocks, func(lo, hi int) {
		scores := pool.take(min(mhaRowBlock, nq) * nk) // every value is written
		if scores == nil {
			scores = make([]float32, min(mhaRowBlock, nq)*nk)
		}
		defer pool.put(scores)
		for task := lo; task < hi; task++ {
			h, blk := task/blocks, task%blocks
			r0 := blk * mhaRowBlock
			rows := min(mhaRowBlock, nq-r0)
			s := scores[:rows*nk]
			// s (rows, nk) = q_h (rows, d) @ k_h^T (d, nk)
			Gemm(false, true, rows, nk, d, 1, q[r0*dim+h*d:], dim, k[h*d:], dim, 0, s, nk)
			for r := 0; r < rows; r++ {
				row := s[r*nk : (r+1)*nk]
				if mask != nil {
					maskRow(row, mask[(r0+r)*nk:(r0+r+1)*nk])
				}
				softmaxScaled(row, scale)
			}
			// out_h (rows, d) = s (rows, nk) @ v_h (nk, d)
			Gemm(false, false, rows, d, nk, 1, s, nk, v[h*d:], dim, 0, out[r0*dim+h*d:], dim)
		}
	})
}

// maskRow sets the scores of the keys m disallows to -Inf, or every score
// to 0 when m allows none (the row then attends uniformly).
func maskRow(row []float32, m []bool) {
	ninf := float32(math.Inf(-1))
	any := false
	for j, ok := range m {
		if ok {
			any = true
		} else {
			row[j] = ninf
		}
	}
	if !any {
		clear(row)
	}
}

// MaskedMHA adds multi-head attention over projected q (Nq, D), k and v
// (Nk, D) where query i attends only to keys j with mask[i*Nk+j] true
// (MaskedMHAInto); mask is read when the graph runs and must not change
// meanwhile; nil is MHA.
func (g *Graph) MaskedMHA(q, k, v *Node, heads int, mask []bool) *Node {
	if !g.ok(q, k, v) {
		return nil
	}
	qs, ks, vs := shapeOf(q), shapeOf(k), shapeOf(v)
	if len(qs) != 2 || len(ks) != 2 || len(vs) != 2 || ks[1] != qs[1] || vs[1] != qs[1] || vs[0] != ks[0] {
		return g.fail("masked mha: q %v, k %v, v %v: want (Nq, D), (Nk, D), (Nk, D)", qs, ks, vs)
	}
	nq, nk, dim := qs[0], ks[0], qs[1]
	if heads <= 0 || dim%heads != 0 {
		return g.fail("masked mha: %d heads do not divide width %d", heads, dim)
	}
	if mask != nil && len(mask) != nq*nk {
		return g.fail("masked mha: mask of %d values for %d x %d", len(mask), nq, nk)
	}
	return g.OpFull("MaskedMHA", qs, func(out []float32, in [][]float32) error {
		MaskedMHAInto(out, in[0], in[1], in[2], nq, nk, heads, dim/heads, mask)
		return nil
	}, q, k, v)
}
