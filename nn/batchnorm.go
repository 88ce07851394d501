package nn

import (
	"math"
	"slices"
)

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

// ScaleShiftChannels computes dst = x*scale[c] + shift[c] over an NCHW
// tensor of n images, c channels of hw pixels; with leaky, negative results
// are then multiplied by slope (LeakyReLU). dst may alias x.
func ScaleShiftChannels(dst, x []float32, n, c, hw int, scale, shift []float32, leaky bool, slope float32) {
	ParallelFor(n*c, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			a, b := scale[p%c], shift[p%c]
			src, out := x[p*hw:(p+1)*hw], dst[p*hw:(p+1)*hw]
			for i, v := range src {
				y := float32(v*a) + b
				if leaky && y < 0 {
					y *= slope
				}
				out[i] = y
			}
		}
	})
}

// LeakyReLUSlice applies LeakyReLU with the given negative slope from src to
// dst (which may alias).
func LeakyReLUSlice(dst, src []float32, slope float32) {
	for i, v := range src {
		if v < 0 {
			v *= slope
		}
		dst[i] = v
	}
}

// batchNorm adds an eval BatchNorm2d node, optionally followed by LeakyReLU.
func (g *Graph) batchNorm(name string, x, w, b, mean, variance *Node, eps float32, leaky bool, slope float32) *Node {
	if !g.ok(x, w, b, mean, variance) {
		return nil
	}
	xs := shapeOf(x)
	if len(xs) != 4 {
		return g.fail("%s: input %v is not NCHW", name, xs)
	}
	for _, p := range []*Node{w, b, mean, variance} {
		if prod(shapeOf(p)) != xs[1] {
			return g.fail("%s: input %v, parameter %v", name, xs, shapeOf(p))
		}
	}
	n, c, hw := xs[0], xs[1], xs[2]*xs[3]
	return g.Op(name, xs, func(o []float32, v [][]float32) error {
		scale, shift := BatchNormFold(v[1], v[2], v[3], v[4], eps)
		ScaleShiftChannels(o, v[0], n, c, hw, scale, shift, leaky, slope)
		return nil
	}, x, w, b, mean, variance)
}

// BatchNorm2d is torch.nn.BatchNorm2d in eval mode on NCHW x:
// (x - mean) / sqrt(var + eps) * w + b, per channel.
func (g *Graph) BatchNorm2d(x, w, b, mean, variance *Node, eps float32) *Node {
	return g.batchNorm("BatchNorm2d", x, w, b, mean, variance, eps, false, 0)
}

// BatchNorm2dLeakyReLU is BatchNorm2d (eval) followed by LeakyReLU with the
// given negative slope, fused into one pass.
func (g *Graph) BatchNorm2dLeakyReLU(x, w, b, mean, variance *Node, eps, slope float32) *Node {
	return g.batchNorm("BatchNorm2dLeakyReLU", x, w, b, mean, variance, eps, true, slope)
}

// unary adds an elementwise node.
func (g *Graph) unary(name string, x *Node, f func(dst, src []float32)) *Node {
	if !g.ok(x) {
		return nil
	}
	return g.Op(name, shapeOf(x), func(o []float32, v [][]float32) error {
		src, dst := v[0], o
		ParallelFor((len(src)+4095)/4096, func(lo, hi int) {
			f(dst[lo*4096:min(hi*4096, len(dst))], src[lo*4096:min(hi*4096, len(src))])
		})
		return nil
	}, x)
}

// LeakyReLU is torch.nn.LeakyReLU(slope) elementwise.
func (g *Graph) LeakyReLU(x *Node, slope float32) *Node {
	return g.unary("LeakyReLU", x, func(dst, src []float32) { LeakyReLUSlice(dst, src, slope) })
}

// Tanh is torch.tanh elementwise.
func (g *Graph) Tanh(x *Node) *Node {
	return g.unary("Tanh", x, func(dst, src []float32) {
		for i, v := range src {
			dst[i] = float32(math.Tanh(float64(v)))
		}
	})
}

// TanhUnit maps x to (tanh(x) + 1) / 2 elementwise, in [0, 1]: M2M's alpha
// activation.
func (g *Graph) TanhUnit(x *Node) *Node {
	return g.TanhUnitRegion(x, Region{})
}

// TanhUnitRegion is TanhUnit on the region r of each plane of an NCHW x,
// zero elsewhere.
func (g *Graph) TanhUnitRegion(x *Node, r Region) *Node {
	if !g.ok(x) {
		return nil
	}
	xs := shapeOf(x)
	if len(xs) != 4 {
		return g.fail("tanh unit: input %v is not NCHW", xs)
	}
	planes, h, w := xs[0]*xs[1], xs[2], xs[3]
	rows, cols := r.limits(h, w)
	return g.Op("TanhUnit", xs, func(o []float32, v [][]float32) error {
		src, dst := v[0], o
		ParallelFor(planes*rows, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				off := (i/rows*h + i%rows) * w
				tanhUnitRow(dst[off:off+cols], src[off:off+cols])
			}
		})
		return nil
	}, x)
}

// AddLeakyReLU is LeakyReLU(a + b) for tensors of the same shape: the
// residual join of a ResNet BasicBlock.
func (g *Graph) AddLeakyReLU(a, b *Node, slope float32) *Node {
	if !g.ok(a, b) {
		return nil
	}
	as, bs := shapeOf(a), shapeOf(b)
	if !slices.Equal(as, bs) {
		return g.fail("add leakyrelu: shapes %v and %v", as, bs)
	}
	return g.Op("AddLeakyReLU", as, func(o []float32, v [][]float32) error {
		x, y, d := v[0], v[1], o
		ParallelFor((len(d)+4095)/4096, func(lo, hi int) {
			for i := lo * 4096; i < min(hi*4096, len(d)); i++ {
				s := x[i] + y[i]
				if s < 0 {
					s *= slope
				}
				d[i] = s
			}
		})
		return nil
	}, a, b)
}

// Concat is torch.cat(xs, dim=axis) for tensors of the same rank whose
// shapes agree except along axis.
func (g *Graph) Concat(axis int, xs ...*Node) *Node {
	if len(xs) == 0 {
		return g.fail("concat: no inputs")
	}
	if !g.ok(xs...) {
		return nil
	}
	first := shapeOf(xs[0])
	if axis < 0 || axis >= len(first) {
		return g.fail("concat: axis %d of %v", axis, first)
	}
	out := slices.Clone(first)
	out[axis] = 0
	sizes := make([]int, len(xs)) // each input's contiguous block per outer index
	for i, x := range xs {
		s := shapeOf(x)
		if len(s) != len(first) {
			return g.fail("concat: shapes %v and %v", first, s)
		}
		for d := range s {
			if d != axis && s[d] != first[d] {
				return g.fail("concat: shapes %v and %v along axis %d", first, s, axis)
			}
		}
		out[axis] += s[axis]
		sizes[i] = prod(s[axis:])
	}
	outer := prod(first[:axis])
	row := prod(out[axis:])
	return g.Op("Concat", out, func(o []float32, v [][]float32) error {
		d := o
		for r := 0; r < outer; r++ {
			off := r * row
			for i, t := range v {
				copy(d[off:off+sizes[i]], t[r*sizes[i]:(r+1)*sizes[i]])
				off += sizes[i]
			}
		}
		return nil
	}, xs...)
}
