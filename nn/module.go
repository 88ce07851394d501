package nn

// The torch.nn modules every model uses, as parameter structs built from
// Params with a Forward method adding their op to a graph.

// Linear is torch.nn.Linear: y = x W^T + b over the last axis of x, W
// (out, in), b (out) or none.
type Linear struct {
	Weight, Bias Weight
}

// NewLinear fetches a Linear with a bias: p's "weight" (out, in) and
// "bias" (out).
func NewLinear(p *Params, in, out int) Linear {
	return Linear{Weight: p.Weight("weight", out, in), Bias: p.Weight("bias", out)}
}

// NewLinearNoBias fetches a Linear without a bias (bias=False).
func NewLinearNoBias(p *Params, in, out int) Linear {
	return Linear{Weight: p.Weight("weight", out, in)}
}

// Forward is x (..., in) -> (..., out).
func (l Linear) Forward(g *Graph, x *Node) *Node {
	return g.Linear(x, l.Weight.Node(g), l.Bias.Node(g))
}

// ForwardGELU is GELU(Forward(x)), fused (Graph.LinearGELU).
func (l Linear) ForwardGELU(g *Graph, x *Node) *Node {
	return g.LinearGELU(x, l.Weight.Node(g), l.Bias.Node(g))
}

// ForwardResidual is res + Forward(x), fused (Graph.LinearResidual).
func (l Linear) ForwardResidual(g *Graph, x, res *Node) *Node {
	return g.LinearResidual(x, l.Weight.Node(g), l.Bias.Node(g), res)
}

// LayerNorm is torch.nn.LayerNorm over the last axis: "weight" and "bias"
// of dim values.
type LayerNorm struct {
	Weight, Bias Weight
	Eps          float32
}

// NewLayerNorm fetches a LayerNorm of dim values with the given eps.
func NewLayerNorm(p *Params, dim int, eps float32) LayerNorm {
	return LayerNorm{Weight: p.Weight("weight", dim), Bias: p.Weight("bias", dim), Eps: eps}
}

// Forward normalises x (..., dim) over its last axis.
func (l LayerNorm) Forward(g *Graph, x *Node) *Node {
	return g.LayerNorm(x, l.Weight.Node(g), l.Bias.Node(g), l.Eps)
}

// ForwardAdd is l(x + y), fused (Graph.AddLayerNorm).
func (l LayerNorm) ForwardAdd(g *Graph, x, y *Node) *Node {
	return g.AddLayerNorm(x, y, l.Weight.Node(g), l.Bias.Node(g), l.Eps)
}

// Conv2d is torch.nn.Conv2d (groups 1, dilation 1, zero padding) on NCHW
// inputs: "weight" (out, in, k, k) and "bias" (out) or none.
type Conv2d struct {
	Weight, Bias Weight
	Stride, Pad  int
}

// NewConv2d fetches a square-kernel Conv2d with a bias.
func NewConv2d(p *Params, in, out, k, stride, pad int) Conv2d {
	return Conv2d{Weight: p.Weight("weight", out, in, k, k), Bias: p.Weight("bias", out), Stride: stride, Pad: pad}
}

// NewConv2dNoBias fetches a square-kernel Conv2d without a bias.
func NewConv2dNoBias(p *Params, in, out, k, stride, pad int) Conv2d {
	return Conv2d{Weight: p.Weight("weight", out, in, k, k), Stride: stride, Pad: pad}
}

// Forward is x (N, in, H, W) -> (N, out, H', W').
func (c Conv2d) Forward(g *Graph, x *Node) *Node {
	return g.Conv2d(x, c.Weight.Node(g), c.Bias.Node(g), c.Stride, c.Pad)
}
