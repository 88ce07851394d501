package gdino

import (
	"fmt"
	"math"

	"github.com/mam-go/mam-go/nn"
)

// Helpers of models/GroundingDINO/utils.py and util/misc.py shared by the
// query selection, the decoder and the heads: what nn.Linear and
// nn.LayerNorm lack (plain-Go forms, the fused linear+ReLU, the split
// in_proj), the MLP, the query sine embedding, the two inverse sigmoids,
// and the contrastive class head. Each numeric helper is a plain-Go
// function over row-major float32 slices (tested against the formula) and,
// where the graph needs it, an op around it.

// linearDims returns l's input and output widths (its weight is (out, in)).
func linearDims(l nn.Linear) (in, out int) {
	return l.Weight.Shape[1], l.Weight.Shape[0]
}

// inProj splits torch nn.MultiheadAttention's in_proj_weight (3d, d) and
// in_proj_bias (3d) under p into the query, key and value projections
// (rows 0..d-1, d..2d-1, 2d..3d-1), views of the checkpoint's values named
// in_proj_weight[q] and so on.
func inProj(p *nn.Params, d int) (q, k, v nn.Linear) {
	w, b := p.Weight("in_proj_weight", 3*d, d), p.Weight("in_proj_bias", 3*d)
	block := func(i int, s string) nn.Linear {
		return nn.Linear{
			Weight: nn.Weight{Name: w.Name + s, Shape: []int{d, d}, Data: w.Data[i*d*d : (i+1)*d*d]},
			Bias:   nn.Weight{Name: b.Name + s, Shape: []int{d}, Data: b.Data[i*d : (i+1)*d]},
		}
	}
	return block(0, "[q]"), block(1, "[k]"), block(2, "[v]")
}

// addOp is Graph.Add of two tensors of the same size, over blocks in
// parallel when they are large (Graph.Add runs on one goroutine): the
// encoder's query, src + pos over the 17821 x 256 map.
func addOp(g *nn.Graph, a, b *nn.Node) *nn.Node {
	if a == nil || b == nil {
		return g.Add(a, b)
	}
	as := nn.Shape(a)
	n := prodInts(as)
	const block = 1 << 14
	if n != prodInts(nn.Shape(b)) || n < 4*block {
		return g.Add(a, b)
	}
	return g.OpFull("Add", as, func(o []float32, v [][]float32) error {
		nn.ParallelFor((n+block-1)/block, func(lo, hi int) {
			x, y, d := v[0][lo*block:min(hi*block, n)], v[1][lo*block:min(hi*block, n)], o[lo*block:min(hi*block, n)]
			y, d = y[:len(x)], d[:len(x)]
			for i, xv := range x {
				d[i] = xv + y[i]
			}
		})
		return nil
	}, a, b)
}

// linearReLU is relu(l.Forward(x)) as one op: x (rows, in) -> (rows, out),
// the bias and the ReLU applied by the product's kernel.
func linearReLU(g *nn.Graph, l nn.Linear, x *nn.Node) *nn.Node {
	if x == nil {
		return nil
	}
	in, out := linearDims(l)
	xs := nn.Shape(x)
	if len(xs) != 2 || xs[1] != in {
		return g.Errorf("gdino: %s: linear+relu: input %v for %d inputs", l.Weight.Name, xs, in)
	}
	rows := xs[0]
	return g.OpFull("LinearReLU", []int{rows, out}, func(o []float32, ins [][]float32) error {
		nn.GemmBias(false, true, rows, out, in, ins[0], in, ins[1], in, ins[2], true, o, out)
		return nil
	}, x, l.Weight.Node(g), l.Bias.Node(g))
}

// reluBlocks applies max(x, 0) to x in place, in parallel blocks. The
// builtin max compiles without a branch (nn.ReLUSlice's branch costs a
// misprediction per sign change: 7x slower on mixed signs); NaN stays NaN.
func reluBlocks(x []float32) {
	const block = 1 << 14
	nn.ParallelFor((len(x)+block-1)/block, func(lo, hi int) {
		b := x[lo*block : min(hi*block, len(x))]
		for i, v := range b {
			b[i] = max(v, 0)
		}
	})
}

// applyLinear computes dst (rows, out) = x (rows, in) W^T + b in plain Go.
func applyLinear(l nn.Linear, dst, x []float32, rows int) {
	in, out := linearDims(l)
	nn.LinearRows(dst, x, rows, in, l.Weight.Data, out, l.Bias.Data)
}

// lnEps is the eps of the transformer's LayerNorms (torch's default).
const lnEps = 1e-5

// applyLayerNorm computes dst (rows, d) = l(x) in plain Go.
func applyLayerNorm(l nn.LayerNorm, dst, x []float32, rows int) {
	nn.LayerNormRows(dst, x, rows, len(l.Weight.Data), l.Weight.Data, l.Bias.Data, l.Eps)
}

// mlp is utils.py MLP: layers Linear layers (in -> hidden -> ... -> out)
// with ReLU between them.
type mlp struct {
	layers []nn.Linear
}

func newMLP(p *nn.Params, in, hidden, out, layers int) *mlp {
	m := &mlp{}
	ls := p.Sub("layers")
	for i := 0; i < layers; i++ {
		a, b := hidden, hidden
		if i == 0 {
			a = in
		}
		if i == layers-1 {
			b = out
		}
		m.layers = append(m.layers, nn.NewLinear(ls.Index(i), a, b))
	}
	return m
}

// forward is x (..., in) -> (..., out).
func (m *mlp) forward(g *nn.Graph, x *nn.Node) *nn.Node {
	for i, l := range m.layers {
		if i < len(m.layers)-1 {
			x = linearReLU(g, l, x)
		} else {
			x = l.Forward(g, x)
		}
	}
	return x
}

// apply computes the MLP on rows rows of x in plain Go into dst (rows, out).
func (m *mlp) apply(dst, x []float32, rows int) {
	cur := x
	for i, l := range m.layers {
		o := dst
		if i < len(m.layers)-1 {
			_, out := linearDims(l)
			o = make([]float32, rows*out)
		}
		applyLinear(l, o, cur, rows)
		if i < len(m.layers)-1 {
			reluBlocks(o)
		}
		cur = o
	}
}

// sigmoid32 is torch.sigmoid in float32 (sigmoid(+inf) = 1, NaN stays NaN).
func sigmoid32(x float32) float32 {
	return float32(1 / (1 + math.Exp(-float64(x))))
}

// invSigmoidEps is util/misc.py inverse_sigmoid's default eps.
const invSigmoidEps = float32(1e-3)

// inverseSigmoid is util/misc.py inverse_sigmoid: x clamped to [0, 1], then
// log(max(x, 1e-3) / max(1 - x, 1e-3)), in float32. NaN stays NaN.
func inverseSigmoid(x float32) float32 {
	if x < 0 {
		x = 0
	} else if x > 1 {
		x = 1
	}
	x1, x2 := max(x, invSigmoidEps), max(1-x, invSigmoidEps) // NaN stays NaN
	return float32(math.Log(float64(x1 / x2)))
}

// logit32 is the proposals' plain log(p / (1 - p)) in float32, with no clamp
// (utils.py gen_encoder_output_proposals).
func logit32(p float32) float32 {
	return float32(math.Log(float64(p / (1 - p))))
}

// refineInto sets dst = sigmoid(delta + inverse_sigmoid(ref)) elementwise:
// a reference box moved by an unsigmoided delta (the decoder's box
// refinement and the heads' boxes).
func refineInto(dst, delta, ref []float32) {
	for i := range dst {
		dst[i] = sigmoid32(delta[i] + inverseSigmoid(ref[i]))
	}
}

// refine is refineInto as an op: delta and ref (nq, 4) -> (nq, 4).
func refine(g *nn.Graph, delta, ref *nn.Node) *nn.Node {
	return g.OpFull("refine", nn.Shape(ref), func(out []float32, in [][]float32) error {
		if len(in[0]) != len(out) {
			return fmt.Errorf("gdino: refine: %d deltas for %d coordinates", len(in[0]), len(out))
		}
		refineInto(out, in[0], in[1])
		return nil
	}, delta, ref)
}

// sigmoidNode is torch.sigmoid elementwise as an op.
func sigmoidNode(g *nn.Graph, x *nn.Node) *nn.Node {
	return g.OpFull("sigmoid", nn.Shape(x), func(out []float32, in [][]float32) error {
		for i, v := range in[0] {
			out[i] = sigmoid32(v)
		}
		return nil
	}, x)
}

// sineFeats is the number of features per coordinate of
// gen_sineembed_for_position (128: d/2, hard-wired in the reference).
const sineFeats = 128

// sineDims returns gen_sineembed_for_position's dim_t: 10000^(2*floor(k/2)
// / 128) in float32, k = 0..127.
func sineDims() []float32 {
	d := make([]float32, sineFeats)
	for k := range d {
		e := float32(2*(k/2)) / sineFeats
		d[k] = float32(math.Pow(10000, float64(e)))
	}
	return d
}

// twoPi32 is 2*pi as the float32 scalar the reference multiplies by.
const twoPi32 = float32(2 * math.Pi)

// sineEmbedInto is utils.py gen_sineembed_for_position for rows boxes
// (cx, cy, w, h) in pos (rows, 4): dst (rows, 512) holds 128 features of
// each coordinate in the order y, x, w, h; feature k of coordinate v is
// sin(v*2pi / dim_t[k]) for even k and cos(...) for odd k, the argument
// formed in float32 as the reference does.
func sineEmbedInto(dst, pos []float32, rows int, dims []float32) {
	order := [4]int{1, 0, 2, 3} // y, x, w, h
	nn.ParallelFor(rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			for c, src := range order {
				v := pos[r*4+src] * twoPi32
				out := dst[r*4*sineFeats+c*sineFeats : r*4*sineFeats+(c+1)*sineFeats]
				for k := 0; k < sineFeats; k += 2 { // dims[k] == dims[k+1]
					sin, cos := math.Sincos(float64(v / dims[k]))
					out[k], out[k+1] = float32(sin), float32(cos)
				}
			}
		}
	})
}

// sineEmbed is sineEmbedInto as an op: (nq, 4) -> (nq, 512).
func sineEmbed(g *nn.Graph, pos *nn.Node) *nn.Node {
	ps := nn.Shape(pos)
	if len(ps) != 2 || ps[1] != 4 {
		return g.Errorf("gdino: query sine embedding: positions of shape %v, want (k, 4)", ps)
	}
	rows := ps[0]
	dims := sineDims()
	return g.OpFull("query_sine_embed", []int{rows, 4 * sineFeats}, func(out []float32, in [][]float32) error {
		sineEmbedInto(out, in[0], rows, dims)
		return nil
	}, pos)
}

// contrastiveInto is utils.py ContrastiveEmbed for rows queries x (rows,
// d) and n text tokens text (n, d), every token real (text_token_mask all
// true at batch 1): dst (rows, maxLen) = x text^T in its first n columns and
// -inf in the others. n must not exceed maxLen.
func contrastiveInto(dst, x []float32, rows int, text []float32, n, d, maxLen int) {
	if rows > 0 && n > 0 && d > 0 {
		nn.Gemm(false, true, rows, n, d, 1, x, d, text, d, 0, dst, maxLen)
	}
	ninf := float32(math.Inf(-1))
	for r := 0; r < rows; r++ {
		row := dst[r*maxLen : (r+1)*maxLen]
		for j := n; j < maxLen; j++ {
			row[j] = ninf
		}
	}
}

// contrastive is contrastiveInto as an op: x (rows, d), text (n, d) ->
// (rows, maxLen).
func contrastive(g *nn.Graph, x, text *nn.Node, maxLen int) *nn.Node {
	xs, ts := nn.Shape(x), nn.Shape(text)
	if len(xs) != 2 || len(ts) != 2 || xs[1] != ts[1] {
		return g.Errorf("gdino: contrastive embed: queries %v, text %v", xs, ts)
	}
	rows, n, d := xs[0], ts[0], xs[1]
	if n > maxLen {
		return g.Errorf("gdino: contrastive embed: %d text tokens, at most %d", n, maxLen)
	}
	return g.OpFull("contrastive_embed", []int{rows, maxLen}, func(out []float32, in [][]float32) error {
		contrastiveInto(out, in[0], rows, in[1], n, d, maxLen)
		return nil
	}, x, text)
}
