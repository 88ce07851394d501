package nn

import "math"

// GroupNormInto is torch.nn.GroupNorm on x (n, c, hw) written to dst: the
// c channels of each sample are split into groups of c/groups consecutive
// channels, each group normalised over its (c/groups)*hw values with the
// biased variance, (x - mean) / sqrt(var + eps), then channel ch is scaled
// by w[ch] and shifted by b[ch]. Sums are taken in float64. c must be a
// multiple of groups; dst may alias x.
func GroupNormInto(dst, x []float32, n, c, hw, groups int, w, b []float32, eps float32) {
	if n*c*hw == 0 || groups <= 0 {
		return
	}
	cg := c / groups
	size := cg * hw
	ParallelFor(n*groups, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			base := t * size // samples and groups are consecutive blocks
			src := x[base : base+size]
			var mean float64
			for _, v := range src {
				mean += float64(v)
			}
			mean /= float64(size)
			var vs float64
			for _, v := range src {
				d := float64(v) - mean
				vs += d * d
			}
			inv := 1 / math.Sqrt(vs/float64(size)+float64(eps))
			ch0 := (t % groups) * cg
			for k := 0; k < cg; k++ {
				ch := ch0 + k
				// (x - mean) * inv * w + b = x * a + s
				a := inv * float64(w[ch])
				s := float64(b[ch]) - mean*a
				in := src[k*hw : (k+1)*hw]
				out := dst[base+k*hw : base+(k+1)*hw]
				for i, v := range in {
					out[i] = float32(float64(v)*a + s)
				}
			}
		}
	})
}

// GroupNorm adds torch.nn.GroupNorm(groups, C, eps) on x (N, C, ...): w
// and b are the (C) affine scale and shift. The result has x's shape.
func (g *Graph) GroupNorm(x, w, b *Node, groups int, eps float32) *Node {
	if !g.ok(x, w, b) {
		return nil
	}
	xs := shapeOf(x)
	if len(xs) < 2 {
		return g.fail("groupnorm: input %v: want (N, C, ...)", xs)
	}
	n, c := xs[0], xs[1]
	if groups <= 0 || c%groups != 0 {
		return g.fail("groupnorm: %d groups do not divide %d channels", groups, c)
	}
	if prod(shapeOf(w)) != c || prod(shapeOf(b)) != c {
		return g.fail("groupnorm: input %v, weight %v, bias %v", xs, shapeOf(w), shapeOf(b))
	}
	hw := prod(xs[2:])
	return g.OpFull("GroupNorm", xs, func(out []float32, in [][]float32) error {
		GroupNormInto(out, in[0], n, c, hw, groups, in[1], in[2], eps)
		return nil
	}, x, w, b)
}
