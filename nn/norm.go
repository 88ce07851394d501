package nn

// Normalisations: torch.nn.LayerNorm (over the last axis, or over the
// channels of NCHW as SAM's LayerNorm2d), and the folding of an eval
// BatchNorm into a per-channel affine map.

import (
	"math"
	"slices"
)

// LayerNormRows normalises each row of x (rows x d) over its d values:
// (x - mean) / sqrt(var + eps) * w + b, with the biased variance.
func LayerNormRows(dst, x []float32, rows, d int, w, b []float32, eps float32) {
	per := max(1, (1<<14)/max(d, 1)) // rows per task: about 64 KiB
	ParallelFor((rows+per-1)/per, func(lo, hi int) {
		for r := lo * per; r < min(hi*per, rows); r++ {
			layerNormRow(dst[r*d:(r+1)*d], x[r*d:(r+1)*d], w, b, eps)
		}
	})
}

// LayerNormChannels is SAM's LayerNorm2d on an NCHW tensor: each pixel is
// normalised over the C channels, then scaled by w[c] and shifted by b[c].
func LayerNormChannels(dst, x []float32, n, c, hw int, w, b []float32, eps float32) {
	for bi := 0; bi < n; bi++ {
		xb := x[bi*c*hw : (bi+1)*c*hw]
		ob := dst[bi*c*hw : (bi+1)*c*hw]
		ParallelFor(hw, func(lo, hi int) {
			for p := lo; p < hi; p++ {
				var mean float64
				for ch := 0; ch < c; ch++ {
					mean += float64(xb[ch*hw+p])
				}
				mean /= float64(c)
				var vs float64
				for ch := 0; ch < c; ch++ {
					dv := float64(xb[ch*hw+p]) - mean
					vs += dv * dv
				}
				inv := 1 / math.Sqrt(vs/float64(c)+float64(eps))
				for ch := 0; ch < c; ch++ {
					ob[ch*hw+p] = float32((float64(xb[ch*hw+p])-mean)*inv)*w[ch] + b[ch]
				}
			}
		})
	}
}

// LayerNorm normalises over the last axis of x with scale w and shift b.
func (g *Graph) LayerNorm(x, w, b *Node, eps float32) *Node {
	return g.layerNorm("LayerNorm", x, w, b, eps, false)
}

// LayerNormGELU is GELU(LayerNorm(x, w, b)) as one op: the normalisation
// and the exact GELU in one pass over each row.
func (g *Graph) LayerNormGELU(x, w, b *Node, eps float32) *Node {
	return g.layerNorm("LayerNormGELU", x, w, b, eps, true)
}

func (g *Graph) layerNorm(name string, x, w, b *Node, eps float32, gelu bool) *Node {
	if !g.ok(x, w, b) {
		return nil
	}
	xs := shapeOf(x)
	d := xs[len(xs)-1]
	if prod(shapeOf(w)) != d || prod(shapeOf(b)) != d {
		return g.fail("layernorm: input %v, weight %v, bias %v", xs, shapeOf(w), shapeOf(b))
	}
	rows := prod(xs) / d
	return g.OpFull(name, xs, func(o []float32, v [][]float32) error {
		LayerNormRows(o, v[0], rows, d, v[1], v[2], eps)
		if gelu {
			GELUSlice(o, o)
		}
		return nil
	}, x, w, b)
}

// LayerNorm2d is SAM's channel LayerNorm on NCHW x.
func (g *Graph) LayerNorm2d(x, w, b *Node, eps float32) *Node {
	if !g.ok(x, w, b) {
		return nil
	}
	xs := shapeOf(x)
	if len(xs) != 4 || prod(shapeOf(w)) != xs[1] || prod(shapeOf(b)) != xs[1] {
		return g.fail("layernorm2d: input %v, weight %v, bias %v", xs, shapeOf(w), shapeOf(b))
	}
	return g.OpFull("LayerNorm2d", xs, func(o []float32, v [][]float32) error {
		LayerNormChannels(o, v[0], xs[0], xs[1], xs[2]*xs[3], v[1], v[2], eps)
		return nil
	}, x, w, b)
}

// AddLayerNorm is LayerNorm(a + b) over the last axis, as one pass over
// rows (a transformer's "norm(x + attn_out)"): a and b of the same shape
// (..., d), w and bias (d).
func (g *Graph) AddLayerNorm(a, b, w, bias *Node, eps float32) *Node {
	if !g.ok(a, b, w, bias) {
		return nil
	}
	as := shapeOf(a)
	d := as[len(as)-1]
	if !slices.Equal(as, shapeOf(b)) || prod(shapeOf(w)) != d || prod(shapeOf(bias)) != d {
		return g.fail("add+layernorm: inputs %v and %v, weight %v, bias %v", as, shapeOf(b), shapeOf(w), shapeOf(bias))
	}
	rows := prod(as) / d
	return g.OpFull("AddLayerNorm", as, func(o []float32, v [][]float32) error {
		x, y := v[0], v[1]
		ParallelFor(rows, func(lo, hi int) {
			for i := lo * d; i < hi*d; i++ {
				o[i] = x[i] + y[i]
			}
		})
		LayerNormRows(o, o, rows, d, v[2], v[3], eps)
		return nil
	}, a, b, w, bias)
}

// BatchNormEps is torch.nn.BatchNorm2d's default epsilon.
const BatchNormEps = 1e-5

// BatchNormFold turns eval-mode BatchNorm parameters into a per-channel
// scale and shift, as PyTorch's CPU inference kernel does:
// scale = weight / sqrt(var + eps), shift = bias - mean * scale.
func BatchNormFold(weight, bias, mean, variance []float32, eps float32) (scale, shift []float32) {
	scale = make([]float32, len(weight))
	shift = make([]float32, len(weight))
	for c := range weight {
		inv := float32(1 / math.Sqrt(float64(variance[c])+float64(eps)))
		scale[c] = weight[c] * inv
		shift[c] = bias[c] - mean[c]*scale[c]
	}
	return scale, shift
}
