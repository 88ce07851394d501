package nn

// torch.nn.Linear, and its fusions with a GELU or a residual sum: kernels
// over rows (LinearRows, ...) and graph ops (Graph.Linear, ...).

import "slices"

// LinearRows computes dst[r, o] = sum_i x[r, i] * w[o, i] + b[o] for rows
// rows: a PyTorch nn.Linear with weight w (out x in) and optional bias b.
func LinearRows(dst, x []float32, rows, in int, w []float32, out int, b []float32) {
	linearRows(nil, dst, x, rows, in, w, out, b)
}

func linearRows(pc *PackCache, dst, x []float32, rows, in int, w []float32, out int, b []float32) {
	if b == nil {
		linearGemm(pc, dst, x, rows, in, w, out, 0)
		return
	}
	if pc != nil {
		if pb := pc.reusedB(true, in, out, w, in); pb != nil {
			GemmPackedBias(false, rows, x, in, pb, b[:out], false, dst, out)
			return
		}
	}
	// The bias is added by the product's kernel to each tile as it
	// leaves it, instead of filled into dst and read back.
	GemmBias(false, true, rows, out, in, x, in, w, in, b[:out], false, dst, out)
}

// linearGemm sets dst = x @ w^T + beta*dst, with w's packing from pc when
// pc is not nil.
func linearGemm(pc *PackCache, dst, x []float32, rows, in int, w []float32, out int, beta float32) {
	if pc != nil {
		if pb := pc.reusedB(true, in, out, w, in); pb != nil {
			GemmPacked(false, rows, 1, x, in, pb, beta, dst, out)
			return
		}
	}
	Gemm(false, true, rows, out, in, 1, x, in, w, in, beta, dst, out)
}

// linearPackRows is the most rows for which a graph's Linear keeps its
// weight packed between runs: with few rows, packing the weight costs as
// much as the product; with many it is a small part, not worth a second
// copy of the weight in memory.
const linearPackRows = 256

// linearCache returns a packing cache for the weight w of a Linear over
// rows rows, or nil when it is not worth one or w is computed by an op.
func (g *Graph) linearCache(w *Node, rows int) *PackCache {
	if rows > linearPackRows || g.weightCache(w) == nil {
		return nil
	}
	return new(PackCache)
}

// fillRows sets dst = res + b with b (a row) broadcast over the rows of
// dst; res may be nil (dst = b on every row). It runs in parallel over
// blocks of rows.
func fillRows(dst, res, b []float32) {
	n := len(b)
	if n == 0 {
		if res != nil {
			copy(dst, res)
		} else {
			clear(dst)
		}
		return
	}
	rows := len(dst) / n
	per := max(1, (1<<14)/n) // rows per task: about 64 KiB
	ParallelFor((rows+per-1)/per, func(lo, hi int) {
		r0, r1 := lo*per, min(hi*per, rows)
		d := dst[r0*n : r1*n]
		if res != nil {
			addRows(d, res[r0*n:r1*n], b)
			return
		}
		for r := 0; r < r1-r0; r++ {
			copy(d[r*n:(r+1)*n], b)
		}
	})
}

// LinearGELURows is LinearRows followed by the exact GELU, fused: dst =
// GELU(x @ w^T + b), with the bias added in the GELU pass.
func LinearGELURows(dst, x []float32, rows, in int, w []float32, out int, b []float32) {
	linearGELURows(nil, dst, x, rows, in, w, out, b)
}

func linearGELURows(pc *PackCache, dst, x []float32, rows, in int, w []float32, out int, b []float32) {
	linearGemm(pc, dst, x, rows, in, w, out, 0)
	per := max(1, (1<<14)/max(out, 1))
	ParallelFor((rows+per-1)/per, func(lo, hi int) {
		for r := lo * per; r < min(hi*per, rows); r++ {
			geluBias(dst[r*out:(r+1)*out], b)
		}
	})
}

// LinearResidualRows is a residual connection around a Linear, fused:
// dst = res + (x @ w^T + b), with res (rows x out) and b (out, or nil)
// summed first and the product accumulated onto them.
func LinearResidualRows(dst, x []float32, rows, in int, w []float32, out int, b, res []float32) {
	linearResidualRows(nil, dst, x, rows, in, w, out, b, res)
}

func linearResidualRows(pc *PackCache, dst, x []float32, rows, in int, w []float32, out int, b, res []float32) {
	if b == nil {
		b = []float32{}
	}
	fillRows(dst[:rows*out], res[:rows*out], b)
	linearGemm(pc, dst, x, rows, in, w, out, 1)
}

// Linear is torch.nn.Linear over the last axis of x: x (..., in), w (out,
// in), b (out) or nil -> (..., out).
func (g *Graph) Linear(x, w, b *Node) *Node {
	return g.linear("Linear", x, w, b, nil, func(pc *PackCache, dst, x []float32, rows, in int, w []float32, out int, b, _ []float32) {
		linearRows(pc, dst, x, rows, in, w, out, b)
	})
}

// LinearGELU is GELU(Linear(x, w, b)) as one op (LinearGELURows): x (...,
// in), w (out, in), b (out) or nil -> (..., out).
func (g *Graph) LinearGELU(x, w, b *Node) *Node {
	return g.linear("LinearGELU", x, w, b, nil, func(pc *PackCache, dst, x []float32, rows, in int, w []float32, out int, b, _ []float32) {
		linearGELURows(pc, dst, x, rows, in, w, out, b)
	})
}

// LinearResidual is res + Linear(x, w, b) as one op (LinearResidualRows):
// x (..., in), w (out, in), b (out) or nil, res of the output's size ->
// (..., out).
func (g *Graph) LinearResidual(x, w, b, res *Node) *Node {
	if !g.ok(res) {
		return nil
	}
	return g.linear("LinearResidual", x, w, b, res, linearResidualRows)
}

// linear adds a Linear op computed by kernel, after checking the operands:
// x (..., in), w (out, in), b (out) or nil, res (of the output's size) or
// nil -> (..., out).
func (g *Graph) linear(name string, x, w, b, res *Node,
	kernel func(pc *PackCache, dst, x []float32, rows, in int, w []float32, out int, b, res []float32)) *Node {
	if !g.ok(x, w) {
		return nil
	}
	xs, ws := shapeOf(x), shapeOf(w)
	in := xs[len(xs)-1]
	if len(ws) != 2 || ws[1] != in {
		return g.fail("%s: input %v, weight %v", name, xs, ws)
	}
	out := ws[0]
	rows := prod(xs) / in
	os := slices.Clone(xs)
	os[len(os)-1] = out
	ins := []*Node{x, w}
	bi, ri := -1, -1
	if b != nil {
		if bs := shapeOf(b); prod(bs) != out {
			return g.fail("%s: bias %v for %d outputs", name, bs, out)
		}
		bi, ins = len(ins), append(ins, b)
	}
	if res != nil {
		if prod(shapeOf(res)) != rows*out {
			return g.fail("%s: residual %v for output %v", name, shapeOf(res), os)
		}
		ri, ins = len(ins), append(ins, res)
	}
	pc := g.linearCache(w, rows)
	return g.OpFull(name, os, func(o []float32, v [][]float32) error {
		var bias, r []float32
		if bi >= 0 {
			bias = v[bi]
		}
		if ri >= 0 {
			r = v[ri]
		}
		kernel(pc, o, v[0], rows, in, v[1], out, bias, r)
		return nil
	}, ins...)
}
