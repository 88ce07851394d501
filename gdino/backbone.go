package gdino

// This file mirrors backbone/backbone.py's Joiner (the Swin backbone and
// the position embedding of each returned level) and the image half of
// groundingdino.py GroundingDINO.forward: input_proj, the neck that turns
// the backbone levels (and one more, a stride-2 convolution of the last)
// into the encoder's HiddenDim-channel levels, each with its position
// embedding.

import (
	"fmt"

	"github.com/mam-go/mam-go/nn"
)

// Input projections: GroupNorm(32, HiddenDim), eps 1e-5.
const (
	inputProjGroups = 32
	inputProjEps    = 1e-5
)

// inputProj is input_proj[l]: Conv2d (kernel k, stride stride, padding
// k/2) + GroupNorm(32).
type inputProj struct {
	conv     nn.Conv2d
	gnW, gnB nn.Weight
}

func newInputProj(p *nn.Params, in, out, k, stride int) *inputProj {
	conv, gn := p.Index(0), p.Index(1)
	return &inputProj{
		conv: nn.NewConv2d(conv, in, out, k, stride, k/2),
		gnW:  gn.Weight("weight", out),
		gnB:  gn.Weight("bias", out),
	}
}

// forward: x (1, in, H, W) -> (1, out, H', W').
func (m *inputProj) forward(g *nn.Graph, x *nn.Node) *nn.Node {
	y := m.conv.Forward(g, x)
	return g.GroupNorm(y, m.gnW.Node(g), m.gnB.Node(g), inputProjGroups, inputProjEps)
}

// imageBackbone is the image side of GroundingDINO up to the encoder: the
// Swin backbone, input_proj[0..NumLevels-1] and the sine position embedding
// of every level.
type imageBackbone struct {
	cfg  Config
	swin *swinTransformer
	proj []*inputProj
	pos  *positionEmbeddingSineHW
}

// newImageBackbone fetches the backbone's parameters from p, the root
// params (names "backbone.0.*", "input_proj.*").
func newImageBackbone(p *nn.Params, cfg Config) *imageBackbone {
	b := &imageBackbone{cfg: cfg, swin: newSwinTransformer(p.Sub("backbone").Index(0), cfg), pos: newPositionEmbeddingSineHW(cfg)}
	d, ip := cfg.HiddenDim, p.Sub("input_proj")
	// One 1x1 projection per returned stage, then stride-2 3x3 ones: the
	// first of the last stage's raw map, the next ones of the previous level.
	in := 0
	for l, i := range cfg.ReturnIndices {
		in = cfg.SwinDim(i)
		b.proj = append(b.proj, newInputProj(ip.Index(l), in, d, 1, 1))
	}
	for l := len(cfg.ReturnIndices); l < cfg.NumLevels; l++ {
		b.proj = append(b.proj, newInputProj(ip.Index(l), in, d, 3, 2))
		in = d
	}
	return b
}

// forward builds the graph from the (1,3,h,w) input node: the four encoder
// levels (1,256,H_l,W_l), their position embeddings (1,256,H_l,W_l), and
// the level sizes; stage nodes kept for dumping under golden names.
//
// With dump not nil, every golden stage node is added to it under its
// golden name (swin_patch_embed, swin_s<i>_block0, swin_s<i>_out,
// swin_s<i>_down, backbone_l<k>, input_proj_l<l>, pos_l<l>) and kept
// (Graph.Keep). Errors are recorded in g (then the results are nil).
func (b *imageBackbone) forward(g *nn.Graph, input *nn.Node, dump map[string]*nn.Node) (srcs, pos []*nn.Node, shapes [][2]int) {
	if err := b.check(); err != nil {
		g.Fail(err)
		return nil, nil, nil
	}
	// (1, 3, h, w) -> (1, C_i, H_i, W_i) for the returned stages
	levels, sizes := b.swin.forward(g, input, dump)
	if g.Err() != nil {
		return nil, nil, nil
	}
	for l, m := range b.proj {
		var src *nn.Node
		var size [2]int
		switch {
		case l < len(levels): // 1x1 conv of level l
			src, size = m.forward(g, levels[l]), sizes[l]
		case l == len(levels): // 3x3/2 conv of the last raw backbone level
			last := sizes[len(sizes)-1]
			src, size = m.forward(g, levels[len(levels)-1]), [2]int{(last[0]-1)/2 + 1, (last[1]-1)/2 + 1}
		default: // 3x3/2 conv of the previous level
			prev := shapes[l-1]
			src, size = m.forward(g, srcs[l-1]), [2]int{(prev[0]-1)/2 + 1, (prev[1]-1)/2 + 1}
		}
		// (1, HiddenDim, H_l, W_l) and its position embedding
		pe := b.pos.forward(g, l, size[0], size[1])
		imgDump(g, dump, fmt.Sprintf("input_proj_l%d", l), src)
		imgDump(g, dump, fmt.Sprintf("pos_l%d", l), pe)
		srcs, pos, shapes = append(srcs, src), append(pos, pe), append(shapes, size)
	}
	if g.Err() != nil {
		return nil, nil, nil
	}
	return srcs, pos, shapes
}

// check reports a configuration the neck cannot be built for.
func (b *imageBackbone) check() error {
	c := b.cfg
	switch {
	case c.HiddenDim <= 0 || c.HiddenDim%2 != 0 || c.HiddenDim%inputProjGroups != 0:
		return fmt.Errorf("gdino: backbone: config %q: hidden dim %d", c.Name, c.HiddenDim)
	case len(c.ReturnIndices) == 0 || c.NumLevels < len(c.ReturnIndices):
		return fmt.Errorf("gdino: backbone: config %q: %d levels from %d returned stages", c.Name, c.NumLevels, len(c.ReturnIndices))
	}
	return nil
}
