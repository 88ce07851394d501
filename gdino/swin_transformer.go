package gdino

// This file mirrors backbone/swin_transformer.py: PatchEmbed, the
// SwinTransformerBlock (window attention with a relative position bias,
// shifted on every other block, the map padded to whole windows),
// PatchMerging, BasicLayer and SwinTransformer.forward's returned levels
// through norm1..3. Tokens are (1, H*W, C), row-major over the map, as the
// reference's (B, L, C).

import (
	"fmt"

	"github.com/mam-go/mam-go/nn"
)

// swinEps is the eps of every LayerNorm of the backbone (nn.LayerNorm's
// default).
const swinEps = 1e-5

// patchEmbed is PatchEmbed with patch_norm: pad to whole patches, the
// patch convolution (kernel = stride = patch), LayerNorm.
type patchEmbed struct {
	patch int
	proj  nn.Linear // the patch convolution's weight seen as (C, 3*patch*patch)
	norm  nn.LayerNorm
}

func newPatchEmbed(p *nn.Params, cfg Config) *patchEmbed {
	ps, c := cfg.SwinPatch, cfg.SwinEmbedDim
	return &patchEmbed{
		patch: ps,
		proj: nn.Linear{
			Weight: p.Weight("proj.weight", c, 3, ps, ps).View(c, 3*ps*ps),
			Bias:   p.Weight("proj.bias", c),
		},
		norm: nn.NewLayerNorm(p.Sub("norm"), c, swinEps),
	}
}

// forward: x (1, 3, H, W) -> tokens (1, Hp*Wp, C) of the Hp x Wp patch map,
// Hp = ceil(H / patch).
func (e *patchEmbed) forward(g *nn.Graph, x *nn.Node) (tokens *nn.Node, hp, wp int) {
	xs := nn.Shape(x)
	if len(xs) != 4 || xs[0] != 1 || xs[1] != 3 || xs[2] <= 0 || xs[3] <= 0 {
		return g.Errorf("gdino: swin: patch embedding: input %v, want (1, 3, H, W)", xs), 0, 0
	}
	ps := e.patch
	// (1, 3, H, W) -> (1, Hp*Wp, 3*ps*ps), each row a zero-padded patch
	cols, hp, wp := patchify(g, x, ps)
	// the convolution as a Linear over patches: (1, Hp*Wp, C)
	t := e.proj.Forward(g, cols)
	return e.norm.Forward(g, t), hp, wp
}

// patchify is the im2col of PatchEmbed's padded convolution (kernel =
// stride = ps): x (1, cin, H, W) -> (1, Hp*Wp, cin*ps*ps) with Hp =
// ceil(H/ps), each row one patch in the conv weight's (cin, ky, kx) order,
// zero where the patch passes the right or bottom edge (F.pad).
func patchify(g *nn.Graph, x *nn.Node, ps int) (*nn.Node, int, int) {
	xs := nn.Shape(x)
	if ps <= 0 {
		return g.Errorf("gdino: swin: patch size %d", ps), 0, 0
	}
	cin, h, w := xs[1], xs[2], xs[3]
	hp, wp := (h+ps-1)/ps, (w+ps-1)/ps
	k := cin * ps * ps
	return g.OpFull("Patchify", []int{1, hp * wp, k}, func(out []float32, in [][]float32) error {
		nn.ParallelFor(hp, func(lo, hi int) { patchifyRows(out, in[0], cin, h, w, ps, lo, hi) })
		return nil
	}, x), hp, wp
}

// patchifyRows writes the patches of patch rows [lo, hi) (see patchify).
func patchifyRows(out, img []float32, cin, h, w, ps, lo, hi int) {
	wp, k := (w+ps-1)/ps, cin*ps*ps
	for py := lo; py < hi; py++ {
		for px := 0; px < wp; px++ {
			row := out[(py*wp+px)*k : (py*wp+px+1)*k]
			for ch := 0; ch < cin; ch++ {
				for ky := 0; ky < ps; ky++ {
					d := row[(ch*ps+ky)*ps : (ch*ps+ky+1)*ps]
					y, x0 := py*ps+ky, px*ps
					n := 0
					if y < h {
						n = copy(d, img[(ch*h+y)*w+x0:(ch*h+y)*w+min(x0+ps, w)])
					}
					clear(d[n:]) // F.pad's zeros
				}
			}
		}
	}
}

// swinBlock is SwinTransformerBlock: window attention (shifted by shift
// when not 0) and the MLP, each around a residual.
type swinBlock struct {
	dim, heads, window, shift, hidden int

	norm1, norm2 nn.LayerNorm
	qkv, proj    nn.Linear
	table        nn.Weight // relative_position_bias_table ((2ws-1)^2, heads)
	fc1, fc2     nn.Linear
}

func newSwinBlock(p *nn.Params, dim, heads, window, shift, hidden int) *swinBlock {
	attn := p.Sub("attn")
	// The index buffer is derived (nn.SwinRelativeIndex), never read.
	attn.Ignore("relative_position_index")
	side := 2*window - 1
	return &swinBlock{
		dim: dim, heads: heads, window: window, shift: shift, hidden: hidden,
		norm1: nn.NewLayerNorm(p.Sub("norm1"), dim, swinEps),
		norm2: nn.NewLayerNorm(p.Sub("norm2"), dim, swinEps),
		qkv:   nn.NewLinear(attn.Sub("qkv"), dim, 3*dim),
		proj:  nn.NewLinear(attn.Sub("proj"), dim, dim),
		table: attn.Weight("relative_position_bias_table", side*side, heads),
		fc1:   nn.NewLinear(p.Sub("mlp").Sub("fc1"), dim, hidden),
		fc2:   nn.NewLinear(p.Sub("mlp").Sub("fc2"), hidden, dim),
	}
}

// forward: tokens x (1, h*w, C) -> (1, h*w, C).
func (b *swinBlock) forward(g *nn.Graph, x *nn.Node, h, w int) *nn.Node {
	// x + attention over the padded, shifted windows of norm1(x): norm,
	// pad, roll, partition, W-MSA, merge, roll back and crop in one op.
	x = g.SwinWindowAttention(x, b.norm1.Weight.Node(g), b.norm1.Bias.Node(g), b.qkv.Weight.Node(g), b.qkv.Bias.Node(g),
		b.proj.Weight.Node(g), b.proj.Bias.Node(g), b.table.Node(g), b.norm1.Eps, h, w, b.heads, b.window, b.shift)
	// x + fc2(GELU(fc1(norm2(x)))) over blocks of rows, the (1, h*w,
	// hidden) values never formed whole
	return mlpResidual(g, "SwinMLP", b.norm2.Forward(g, x), x, b.fc1, b.fc2, actGELU)
}

// patchMerging is PatchMerging: 2x2 neighbourhoods concatenated (after
// padding to even sides), LayerNorm(4C), Linear(4C -> 2C, no bias).
type patchMerging struct {
	dim       int
	norm      nn.LayerNorm
	reduction nn.Linear // no bias
}

func newPatchMerging(p *nn.Params, dim int) *patchMerging {
	return &patchMerging{
		dim:       dim,
		norm:      nn.NewLayerNorm(p.Sub("norm"), 4*dim, swinEps),
		reduction: nn.NewLinearNoBias(p.Sub("reduction"), 4*dim, 2*dim),
	}
}

// forward: tokens (1, h*w, C) -> (1, ceil(h/2)*ceil(w/2), 2C).
func (m *patchMerging) forward(g *nn.Graph, x *nn.Node, h, w int) (*nn.Node, int, int) {
	c := m.dim
	h2, w2 := (h+1)/2, (w+1)/2
	// (1, h*w, C) -> (1, h2*w2, 4C): x[0::2, 0::2], x[1::2, 0::2],
	// x[0::2, 1::2], x[1::2, 1::2], zero past the bottom and right edges.
	cat := g.OpFull("PatchMerge", []int{1, h2 * w2, 4 * c}, func(out []float32, in [][]float32) error {
		nn.ParallelFor(h2, func(lo, hi int) { patchMergeRows(out, in[0], h, w, c, lo, hi) })
		return nil
	}, x)
	// LayerNorm(4C), then the reduction: (1, h2*w2, 2C)
	return m.reduction.Forward(g, m.norm.Forward(g, cat)), h2, w2
}

// patchMergeRows writes rows [lo, hi) of the merged map (see
// patchMerging.forward): each token the concatenation of its 2x2
// neighbourhood in the order (even, even), (odd row), (odd column), (odd,
// odd), zeros past the edges.
func patchMergeRows(out, src []float32, h, w, c, lo, hi int) {
	w2 := (w + 1) / 2
	for y := lo; y < hi; y++ {
		for x := 0; x < w2; x++ {
			row := out[(y*w2+x)*4*c : (y*w2+x+1)*4*c]
			for q, d := range [4][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
				sy, sx := 2*y+d[0], 2*x+d[1]
				part := row[q*c : (q+1)*c]
				if sy >= h || sx >= w {
					clear(part)
					continue
				}
				copy(part, src[(sy*w+sx)*c:(sy*w+sx+1)*c])
			}
		}
	}
}

// basicLayer is BasicLayer: the stage's blocks (shift 0, window/2, 0, ...)
// and its PatchMerging (nil for the last stage).
type basicLayer struct {
	blocks     []*swinBlock
	downsample *patchMerging
}

func newBasicLayer(p *nn.Params, cfg Config, i int) *basicLayer {
	dim, ws := cfg.SwinDim(i), cfg.SwinWindow
	hidden := int(float64(dim) * cfg.SwinMLPRatio)
	l := &basicLayer{}
	for j := 0; j < cfg.SwinDepths[i]; j++ {
		shift := 0
		if j%2 == 1 {
			shift = ws / 2
		}
		l.blocks = append(l.blocks, newSwinBlock(p.Sub("blocks").Index(j), dim, cfg.SwinHeads[i], ws, shift, hidden))
	}
	if i < len(cfg.SwinDepths)-1 {
		l.downsample = newPatchMerging(p.Sub("downsample"), dim)
	}
	return l
}

// forward runs stage i on tokens x (1, h*w, C): out (1, h*w, C) is the
// last block's output, next the PatchMerging output (1, h2*w2, 2C) that
// feeds stage i+1 (out itself, h2 = h, w2 = w, for the last stage).
func (l *basicLayer) forward(g *nn.Graph, x *nn.Node, h, w, i int, dump map[string]*nn.Node) (out, next *nn.Node, h2, w2 int) {
	for j, b := range l.blocks {
		x = b.forward(g, x, h, w)
		if j == 0 {
			imgDump(g, dump, fmt.Sprintf("swin_s%d_block0", i), x)
		}
	}
	imgDump(g, dump, fmt.Sprintf("swin_s%d_out", i), x)
	if l.downsample == nil {
		return x, x, h, w
	}
	next, h2, w2 = l.downsample.forward(g, x, h, w)
	imgDump(g, dump, fmt.Sprintf("swin_s%d_down", i), next)
	return x, next, h2, w2
}

// swinTransformer is SwinTransformer (ape False, patch_norm True): the
// patch embedding, the stages, and a LayerNorm norm<i> on each returned
// stage i.
type swinTransformer struct {
	cfg    Config
	err    error // a configuration the backbone cannot be built from
	embed  *patchEmbed
	layers []*basicLayer
	norms  []nn.LayerNorm // one per cfg.ReturnIndices
}

func newSwinTransformer(p *nn.Params, cfg Config) *swinTransformer {
	s := &swinTransformer{cfg: cfg}
	if s.err = s.check(); s.err != nil {
		return s
	}
	s.embed = newPatchEmbed(p.Sub("patch_embed"), cfg)
	for i := range cfg.SwinDepths {
		s.layers = append(s.layers, newBasicLayer(p.Sub("layers").Index(i), cfg, i))
	}
	for _, i := range cfg.ReturnIndices {
		s.norms = append(s.norms, nn.NewLayerNorm(p.Sub(fmt.Sprintf("norm%d", i)), cfg.SwinDim(i), swinEps))
	}
	return s
}

// forward: x (1, 3, H, W) -> the returned stages as (1, C_i, H_i, W_i)
// maps, and their sizes.
func (s *swinTransformer) forward(g *nn.Graph, x *nn.Node, dump map[string]*nn.Node) (outs []*nn.Node, sizes [][2]int) {
	if s.err != nil {
		g.Fail(s.err)
		return nil, nil
	}
	// (1, 3, H, W) -> (1, h*w, C0), h = ceil(H/4)
	t, h, w := s.embed.forward(g, x)
	if dump != nil && t != nil {
		imgDump(g, dump, "swin_patch_embed", tokensToNCHW(g, t, h, w))
	}
	ret := map[int]int{} // stage -> index in ReturnIndices
	for k, i := range s.cfg.ReturnIndices {
		ret[i] = k
	}
	for i, l := range s.layers {
		// (1, h*w, C_i) -> out (1, h*w, C_i), t (1, h2*w2, C_(i+1))
		out, next, h2, w2 := l.forward(g, t, h, w, i, dump)
		if k, ok := ret[i]; ok {
			// norm<i>, then (1, C_i, h, w)
			level := tokensToNCHW(g, s.norms[k].Forward(g, out), h, w)
			imgDump(g, dump, fmt.Sprintf("backbone_l%d", k), level)
			outs = append(outs, level)
			sizes = append(sizes, [2]int{h, w})
		}
		t, h, w = next, h2, w2
	}
	return outs, sizes
}

// check reports a configuration the backbone cannot be built from (before
// any size is divided by it).
func (s *swinTransformer) check() error {
	c := s.cfg
	switch {
	case c.SwinPatch <= 0 || c.SwinWindow <= 0 || c.SwinEmbedDim <= 0:
		return fmt.Errorf("gdino: swin: config %q: patch %d, window %d, width %d", c.Name, c.SwinPatch, c.SwinWindow, c.SwinEmbedDim)
	case len(c.SwinDepths) == 0 || len(c.SwinHeads) != len(c.SwinDepths):
		return fmt.Errorf("gdino: swin: config %q: %d depths, %d head counts", c.Name, len(c.SwinDepths), len(c.SwinHeads))
	case int(float64(c.SwinEmbedDim)*c.SwinMLPRatio) <= 0:
		return fmt.Errorf("gdino: swin: config %q: mlp ratio %g", c.Name, c.SwinMLPRatio)
	}
	for i := range c.SwinDepths {
		if c.SwinHeads[i] <= 0 || c.SwinDim(i)%c.SwinHeads[i] != 0 {
			return fmt.Errorf("gdino: swin: config %q: stage %d width %d, %d heads", c.Name, i, c.SwinDim(i), c.SwinHeads[i])
		}
	}
	prev := -1
	for _, i := range c.ReturnIndices {
		if i <= prev || i >= len(c.SwinDepths) {
			return fmt.Errorf("gdino: swin: config %q: returned stages %v of %d", c.Name, c.ReturnIndices, len(c.SwinDepths))
		}
		prev = i
	}
	return nil
}

// tokensToNCHW turns tokens (1, h*w, C) into the map (1, C, h, w)
// (x.view(-1, H, W, C).permute(0, 3, 1, 2)).
func tokensToNCHW(g *nn.Graph, x *nn.Node, h, w int) *nn.Node {
	xs := nn.Shape(x)
	if x == nil || len(xs) != 3 || xs[1] != h*w {
		return g.Errorf("gdino: tokens %v for a %dx%d map", xs, h, w)
	}
	c := xs[2]
	return g.OpFull("TokensToNCHW", []int{1, c, h, w}, func(out []float32, in [][]float32) error {
		nn.PermuteInto(out, in[0], []int{h * w, c}, []int{1, 0})
		return nil
	}, x)
}

// imgDump records node n under its golden name when dumping, keeping its
// value past the run.
func imgDump(g *nn.Graph, dump map[string]*nn.Node, name string, n *nn.Node) {
	if dump == nil || n == nil {
		return
	}
	dump[name] = g.Keep(n)
}
