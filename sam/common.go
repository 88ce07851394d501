package sam

// This file mirrors segment_anything/modeling/common.py: MLPBlock and
// LayerNorm2d.

import "github.com/mam-go/mam-go/nn"

// mlpBlock is MLPBlock: lin2(act(lin1(x))), with GELU in the image
// encoder's blocks and ReLU in the decoder's TwoWayTransformer.
type mlpBlock struct {
	lin1, lin2 nn.Linear
	gelu       bool
}

func newMLPBlock(p *nn.Params, dim, hidden int, gelu bool) mlpBlock {
	return mlpBlock{lin1: nn.NewLinear(p.Sub("lin1"), dim, hidden), lin2: nn.NewLinear(p.Sub("lin2"), hidden, dim), gelu: gelu}
}

// forward: x (N, dim) -> lin1 (N, hidden) -> act -> lin2 (N, dim).
func (m mlpBlock) forward(g *nn.Graph, x *nn.Node) *nn.Node {
	return m.lin2.Forward(g, m.hidden(g, x))
}

// forwardResidual is res + forward(x), the sum fused into lin2.
func (m mlpBlock) forwardResidual(g *nn.Graph, x, res *nn.Node) *nn.Node {
	return m.lin2.ForwardResidual(g, m.hidden(g, x), res)
}

// hidden is act(lin1(x)): (N, dim) -> (N, hidden).
func (m mlpBlock) hidden(g *nn.Graph, x *nn.Node) *nn.Node {
	if m.gelu {
		return m.lin1.ForwardGELU(g, x)
	}
	return g.ReLU(m.lin1.Forward(g, x))
}

// layerNorm2dEps is LayerNorm2d's default eps.
const layerNorm2dEps = 1e-6

// layerNorm2d is LayerNorm2d: each pixel of an NCHW tensor normalised over
// its channels, then scaled and shifted per channel.
type layerNorm2d struct {
	w, b nn.Weight
}

func newLayerNorm2d(p *nn.Params, chans int) layerNorm2d {
	return layerNorm2d{w: p.Weight("weight", chans), b: p.Weight("bias", chans)}
}

// forward: x (N, C, H, W) -> (N, C, H, W).
func (l layerNorm2d) forward(g *nn.Graph, x *nn.Node) *nn.Node {
	return g.LayerNorm2d(x, l.w.Node(g), l.b.Node(g), layerNorm2dEps)
}

// forwardChannelsLast is the same normalisation on a channels-last tensor
// (..., C): a LayerNorm over its last axis.
func (l layerNorm2d) forwardChannelsLast(g *nn.Graph, x *nn.Node) *nn.Node {
	return g.LayerNorm(x, l.w.Node(g), l.b.Node(g), layerNorm2dEps)
}

// forwardChannelsLastGELU is GELU(forwardChannelsLast(x)), fused.
func (l layerNorm2d) forwardChannelsLastGELU(g *nn.Graph, x *nn.Node) *nn.Node {
	return g.LayerNormGELU(x, l.w.Node(g), l.b.Node(g), layerNorm2dEps)
}
