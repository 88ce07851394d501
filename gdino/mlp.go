package gdino

import "github.com/mam-go/mam-go/nn"

// mlpAct is the activation between the two linears of mlpResidual.
type mlpAct int

const (
	actReLU mlpAct = iota // applied by the first product's kernel
	actGELU               // the exact GELU, over each block after its product
)

// mlpBlockRows is how many rows one task of mlpResidual handles for a
// hidden width: their hidden values (about 2 MiB, at most 512 rows) stay
// in the core's cache between the two products.
func mlpBlockRows(hidden int) int { return max(48, min(512, (1<<19)/max(hidden, 1))) }

// mlpResidual is res + linear2(act(linear1(y))) as one op over blocks of
// rows, so that the (rows, hidden) values are never formed whole: y and
// res (rows, d), linear1 d -> hidden, linear2 hidden -> d, both with
// biases -> (rows, d). Per element it computes what Linear(+GELU) then
// LinearResidual compute: act(y W1^T + b1) with the bias added by the
// product's kernel, then (res + b2) + h W2^T. The weights are packed
// once per run into pooled scratch.
func mlpResidual(g *nn.Graph, name string, y, res *nn.Node, linear1, linear2 nn.Linear, act mlpAct) *nn.Node {
	w1, b1 := linear1.Weight.Node(g), linear1.Bias.Node(g)
	w2, b2 := linear2.Weight.Node(g), linear2.Bias.Node(g)
	if y == nil || res == nil || w1 == nil || b1 == nil || w2 == nil || b2 == nil {
		return nil
	}
	ys, rs, w1s, w2s := nn.Shape(y), nn.Shape(res), nn.Shape(w1), nn.Shape(w2)
	if len(ys) < 2 || len(w1s) != 2 || len(w2s) != 2 || w1s[1] != ys[len(ys)-1] || w2s[1] != w1s[0] || w2s[0] != w1s[1] ||
		prodInts(rs) != prodInts(ys) || prodInts(nn.Shape(b1)) != w1s[0] || prodInts(nn.Shape(b2)) != w2s[0] {
		return g.Errorf("gdino: %s: input %v, residual %v, weights %v and %v", name, ys, rs, w1s, w2s)
	}
	d, hidden := w1s[1], w1s[0]
	rows := prodInts(ys) / d
	block := mlpBlockRows(hidden)
	return g.OpFull(name, rs, func(out []float32, in [][]float32) error {
		x, r, w1, b1, w2, b2 := in[0], in[1], in[2], in[3], in[4], in[5]
		buf1, buf2 := nn.Scratch(nn.PackedBLen(d, hidden)), nn.Scratch(nn.PackedBLen(hidden, d))
		defer nn.Recycle(buf1)
		defer nn.Recycle(buf2)
		p1 := nn.PackBInto(buf1, true, d, hidden, w1, d)      // W1^T (d, hidden)
		p2 := nn.PackBInto(buf2, true, hidden, d, w2, hidden) // W2^T (hidden, d)
		nn.ParallelFor((rows+block-1)/block, func(lo, hi int) {
			hid := nn.Scratch(block * hidden) // overwritten by the first product
			defer nn.Recycle(hid)
			for b := lo; b < hi; b++ {
				r0, n := b*block, min(block, rows-b*block)
				h, xb, rb, ob := hid[:n*hidden], x[r0*d:(r0+n)*d], r[r0*d:(r0+n)*d], out[r0*d:(r0+n)*d]
				// h (n, hidden) = act(x W1^T + b1)
				nn.GemmPackedBias(false, n, xb, d, p1, b1, act == actReLU, h, hidden)
				if act == actGELU {
					nn.GELUBias(h, nil)
				}
				// out (n, d) = (res + b2) + h W2^T
				for i := 0; i < n; i++ {
					o, ri := ob[i*d:(i+1)*d], rb[i*d:(i+1)*d]
					for c := range o {
						o[c] = ri[c] + b2[c]
					}
				}
				nn.GemmPacked(false, n, 1, h, hidden, p2, 1, ob, d)
			}
		})
		return nil
	}, y, res, w1, b1, w2, b2)
}

// prodInts is the product of a shape's sizes.
func prodInts(s []int) int {
	p := 1
	for _, v := range s {
		p *= v
	}
	return p
}
