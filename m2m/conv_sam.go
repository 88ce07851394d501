package m2m

// This file mirrors networks/m2ms/conv_sam.py: SAM_Decoder_Deep and its
// BasicBlock, in eval mode.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// leakySlope is the negative slope of every LeakyReLU of the module.
const leakySlope = 0.2

// Decoder is a loaded SAM_Decoder_Deep in eval mode. Its weights are bound
// to a graph compiled for the input shapes of the last Forward; a Decoder
// is safe for concurrent use (runs are serialised).
type Decoder struct {
	cfg       Config
	layers    [3][]basicBlock // layer2, layer3, layer4
	conv1     convBN          // ConvTranspose2d(MidPlanes, 32, 4, 2, 1), bn1
	refineOS1 refineHead
	refineOS4 refineHead
	refineOS8 refineHead

	mu   sync.Mutex
	prog *program
}

// Output holds the three alpha mattes of a forward pass, each (N, 1, 16E,
// 16E) in [0, 1] after (tanh(x) + 1) / 2.
type Output struct {
	OS1, OS4, OS8 *nn.Tensor
}

// Config returns the decoder's configuration.
func (d *Decoder) Config() Config { return d.cfg }

// newDecoder fetches every parameter of SAM_Decoder_Deep from p, as its
// __init__ declares them; cfg must be valid.
func newDecoder(p *nn.Params, cfg Config) *Decoder {
	k := cfg.KernelSize
	d := &Decoder{cfg: cfg}
	inplanes := cfg.FeatDim
	for li, planes := range cfg.widths() {
		// _make_layer: the first block takes the image (3) and the mask
		// (1) too, upsamples by 2 and changes the width; the others keep it.
		lp := p.Sub(fmt.Sprintf("layer%d", li+2))
		d.layers[li] = append(d.layers[li], newBasicBlock(lp.Index(0), inplanes+4, planes, k, 2))
		for bi := 1; bi < cfg.Layers[li+1]; bi++ {
			d.layers[li] = append(d.layers[li], newBasicBlock(lp.Index(bi), planes, planes, k, 1))
		}
		inplanes = planes
	}
	d.conv1 = newConvBN(p.Sub("conv1.module"), p.Sub("bn1"), true, cfg.MidPlanes, 32, 4, 4)
	d.refineOS1 = newRefineHead(p.Sub("refine_OS1"), 32, k)
	d.refineOS4 = newRefineHead(p.Sub("refine_OS4"), 64, k)
	d.refineOS8 = newRefineHead(p.Sub("refine_OS8"), 128, k)
	return d
}

// New builds a SAM_Decoder_Deep from store (the MAM checkpoint's state
// dict, without any "module." prefix). Spectral-normalised weights are
// folded (W_bar / sigma), and each eval BatchNorm is folded into the
// convolution it follows (a per-channel weight scale and a bias). It fails
// naming the tensor when one is missing or mis-shaped, and when store holds
// tensors the module does not use.
func New(store *weights.Store, cfg Config) (*Decoder, error) {
	if store == nil {
		return nil, errors.New("m2m: nil weights store")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d, err := nn.Build(store, true, func(p *nn.Params) *Decoder { return newDecoder(p, cfg) })
	if err != nil {
		return nil, fmt.Errorf("m2m: %w", err)
	}
	return d, nil
}

// RandomWeights makes a state dict with the names and shapes of
// SAM_Decoder_Deep for cfg, filled with seeded random values (U(-0.1,
// 0.1); spectral-norm u near 1 and v 1, so that sigma stays away from 0;
// running variances near 1), for benchmarks and tests that need the
// released architecture without a checkpoint. It is drawn by the module's
// own constructors, so its schema is New's. An invalid cfg gives an empty
// store (New reports why).
func RandomWeights(cfg Config, seed int64) *weights.Store {
	return nn.RandomStore(seed, randomInit, func(p *nn.Params) {
		if cfg.Validate() == nil {
			newDecoder(p, cfg)
		}
	})
}

// randomInit is RandomWeights' distribution.
func randomInit(name string, _ []int) (scale, offset float64) {
	switch name[strings.LastIndexByte(name, '.')+1:] {
	case "weight_u", "running_var":
		return 0.1, 1
	case "weight_v":
		return 0, 1
	}
	return 0.1, 0
}

// program is a graph compiled for one set of input shapes.
type program struct {
	shapes        [4]string
	m             *nn.Machine
	os1, os4, os8 *nn.Node
}

// Forward runs the module: feat is the image embeddings (N, FeatDim, E, E),
// img the normalised padded input (N, 3, H, W) (H = W = S = 16E for SAM),
// mask the binary guide mask (N, 1, h, w) (4E x 4E for SAM's low-res mask).
// It returns alpha mattes of (N, 1, 16E, 16E).
func (d *Decoder) Forward(ctx context.Context, feat, img, mask *nn.Tensor) (*Output, error) {
	return d.ForwardRegion(ctx, feat, img, mask, 0, 0)
}

// ForwardRegion is Forward computing only the top-left rows x cols of the
// mattes (0: the whole side), zero elsewhere: the image's region of SAM's
// padded input, which is all that refinement reads. Every layer computes
// just the rows and columns that region depends on, so the values inside
// it equal Forward's, at a fraction of the cost for a non-square image.
func (d *Decoder) ForwardRegion(ctx context.Context, feat, img, mask *nn.Tensor, rows, cols int) (*Output, error) {
	if feat == nil || img == nil || mask == nil {
		return nil, errors.New("m2m: forward: nil input")
	}
	fs, is, ms := feat.Shape, img.Shape, mask.Shape
	for _, in := range []struct {
		name string
		t    *nn.Tensor
		c    int
	}{{"feat", feat, d.cfg.FeatDim}, {"img", img, 3}, {"mask", mask, 1}} {
		s := in.t.Shape
		if len(s) != 4 || s[0] != fs[0] || s[1] != in.c || s[2] < 1 || s[3] < 1 || !in.t.HasShape(s...) {
			return nil, fmt.Errorf("m2m: forward: %s has shape %v, want (%d, %d, H, W)", in.name, s, fs[0], in.c)
		}
	}
	if fs[2] != fs[3] {
		return nil, fmt.Errorf("m2m: forward: feat has shape %v, want a square grid", fs)
	}
	if rows < 0 || cols < 0 {
		return nil, fmt.Errorf("m2m: forward: region %dx%d", cols, rows)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	key := [4]string{fmt.Sprint(fs), fmt.Sprint(is), fmt.Sprint(ms), fmt.Sprint(rows, cols)}
	if d.prog == nil || d.prog.shapes != key {
		p, err := d.build(fs[0], fs[2], is[2], is[3], ms[2], ms[3], nn.Region{Rows: rows, Cols: cols})
		if err != nil {
			return nil, fmt.Errorf("m2m: build: %w", err)
		}
		if d.prog != nil {
			d.prog.m.Close()
		}
		p.shapes = key
		d.prog = p
	}
	if err := d.prog.m.Exec(ctx, map[string][]float32{"feat": feat.Data, "img": img.Data, "mask": mask.Data}); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("m2m: forward: %w", err)
	}
	// Graph outputs get a fresh buffer every run: no copies needed.
	out := func(n *nn.Node) *nn.Tensor { return nn.NewTensor(nn.Values(n), n.Shape()...) }
	return &Output{OS1: out(d.prog.os1), OS4: out(d.prog.os4), OS8: out(d.prog.os8)}, nil
}

// basicBlock is BasicBlock: conv1, bn1, LeakyReLU, conv2, bn2, the
// shortcut (upsample for the first block of a layer), sum and LeakyReLU.
// Every BatchNorm is folded into the convolution before it.
type basicBlock struct {
	conv1    convBN  // ConvTranspose2d(in, in, 4, 2, 1) at stride 2, conv3x3(in, in) else
	conv2    convBN  // conv3x3(in, planes)
	upsample *convBN // UpsamplingNearest2d(2), conv1x1(in, planes), BatchNorm (stride 2 only)
	stride   int
	pad      int
}

func newBasicBlock(p *nn.Params, in, planes, k, stride int) basicBlock {
	b := basicBlock{stride: stride, pad: k / 2}
	if stride > 1 {
		b.conv1 = newConvBN(p.Sub("conv1.module"), p.Sub("bn1"), true, in, in, 4, 4)
		up := newConvBN(p.Sub("upsample.1.module"), p.Sub("upsample.2"), false, planes, in, 1, 1)
		b.upsample = &up
	} else {
		b.conv1 = newConvBN(p.Sub("conv1.module"), p.Sub("bn1"), false, in, in, k, k)
	}
	b.conv2 = newConvBN(p.Sub("conv2.module"), p.Sub("bn2"), false, planes, in, k, k)
	return b
}

// forward is BasicBlock.forward over the channel concatenation of xs
// (N, in, H, W) -> (N, planes, H, W), or (N, planes, 2H, 2W) at stride 2;
// the residual sum and the last LeakyReLU are fused into conv2's output
// pass. Only the region r of the output is computed.
func (b basicBlock) forward(g *nn.Graph, xs []*nn.Node, r nn.Region) *nn.Node {
	var out, identity *nn.Node
	scale := 1
	if b.stride > 1 {
		// conv1 (transposed, k4 s2 p1), bn1, LeakyReLU(0.2): (N, in, 2H, 2W)
		out = g.ConvTranspose2dFused(xs, b.conv1.w.Node(g), b.conv1.b.Node(g),
			nn.ConvOptions{Stride: 2, Pad: 1, LeakyReLU: true, Slope: leakySlope, Region: r.Grow(b.pad, b.pad)})
		// upsample: UpsamplingNearest2d(2) -> conv1x1(in, planes) -> BN:
		// (N, planes, 2H, 2W). The 1x1 convolution and the BatchNorm act on
		// each pixel alone, so they run before the nearest upsampling,
		// which only copies pixels: the same values at a quarter of the
		// cost. The upsampling itself is the residual read of conv2
		// (ResidualScale 2).
		identity = g.Conv2dFused(xs, b.upsample.w.Node(g), b.upsample.b.Node(g),
			nn.ConvOptions{Stride: 1, Region: need{}.half(r)}) // (N, planes, H, W)
		scale = 2
	} else {
		if len(xs) != 1 {
			return g.Errorf("m2m: a stride-1 block takes one input")
		}
		// conv1: conv3x3(in, in), bn1, LeakyReLU(0.2): (N, in, H, W)
		out = g.Conv2dFused(xs, b.conv1.w.Node(g), b.conv1.b.Node(g),
			nn.ConvOptions{Stride: 1, Pad: b.pad, LeakyReLU: true, Slope: leakySlope, Region: r.Grow(b.pad, b.pad)})
		identity = xs[0]
	}
	// conv2: conv3x3(in, planes), bn2; out += identity; LeakyReLU(0.2): (N, planes, H', W')
	return g.Conv2dFused([]*nn.Node{out}, b.conv2.w.Node(g), b.conv2.b.Node(g),
		nn.ConvOptions{Stride: 1, Pad: b.pad, LeakyReLU: true, Slope: leakySlope, Residual: identity, ResidualScale: scale, Region: r})
}

// layerForward is one _make_layer Sequential over the channel
// concatenation of xs: a stride-2 block then stride-1 ones, computing the
// region r of its output.
func layerForward(g *nn.Graph, blocks []basicBlock, xs []*nn.Node, r nn.Region) *nn.Node {
	var x *nn.Node
	for i, b := range blocks {
		nd := need{pad: b.pad}
		x = b.forward(g, xs, nd.blocksOut(r, len(blocks)-1-i))
		xs = []*nn.Node{x}
	}
	return x
}

// refineHead is a refine_OSk Sequential: Conv3x3(c, 32), BatchNorm,
// LeakyReLU(0.2), Conv3x3(32, 1, bias).
type refineHead struct {
	conv0  convBN // conv and BatchNorm folded
	w3, b3 nn.Weight
	pad    int
}

func newRefineHead(p *nn.Params, in, k int) refineHead {
	return refineHead{
		conv0: foldBatchNorm(p.Weight("0.weight", 32, in, k, k), false, p.Sub("1"), 32),
		w3:    p.Weight("3.weight", 1, 32, k, k),
		b3:    p.Weight("3.bias", 1),
		pad:   k / 2,
	}
}

// forward: (N, c, H, W) -> (N, 1, H, W), as one fused node (the
// 32-channel activation is never stored), computing the region r.
func (h refineHead) forward(g *nn.Graph, x *nn.Node, r nn.Region) *nn.Node {
	return g.Conv2dHead(x, h.conv0.w.Node(g), h.conv0.b.Node(g), h.w3.Node(g), h.b3.Node(g), h.pad, leakySlope, r)
}

// build makes the graph of SAM_Decoder_Deep.forward for the given shapes,
// computing the region r of the outputs (see ForwardRegion).
// The torch.cat of each layer's input with the resized image and mask is
// never built: the first block's convolutions read the pieces in turn.
func (d *Decoder) build(n, e, ih, iw, mh, mw int, r nn.Region) (*program, error) {
	g := nn.NewGraph()
	c := d.cfg
	pad := c.KernelSize / 2
	nd := need{pad: pad}

	// What each stage must compute, from the outputs back: os1 comes from
	// x4 through conv1 (transposed) and refine_OS1 (two convolutions);
	// os4 and os8 are upsampled from refine heads on x3 and x2.
	r4 := nd.upT(r.Grow(2*pad, 2*pad))                                    // x4 (8E)
	r4os := nd.upsample(r, 4, 4*e)                                        // refine_OS4 output (4E)
	r3 := maxRegion(nd.layerIn(r4, c.Layers[3]), r4os.Grow(2*pad, 2*pad)) // x3 (4E)
	r8os := nd.upsample(r, 8, 2*e)                                        // refine_OS8 output (2E)
	r2 := maxRegion(nd.layerIn(r3, c.Layers[2]), r8os.Grow(2*pad, 2*pad)) // x2 (2E)

	xOS16 := g.Input("feat", n, c.FeatDim, e, e) // (N, FeatDim, E, E)
	img := g.Input("img", n, 3, ih, iw)          // (N, 3, S, S)
	mask := g.Input("mask", n, 1, mh, mw)        // (N, 1, 4E, 4E)

	// cat(x_os16, img_os16, mask_os16): bilinear to (E, E) -> (N, FeatDim+4, E, E)
	x := layerForward(g, d.layers[0], []*nn.Node{xOS16, g.ResizeBilinear(img, e, e), g.ResizeBilinear(mask, e, e)}, r2) // (N, 128, 2E, 2E)
	xOS8 := d.refineOS8.forward(g, x, r8os)                                                                             // (N, 1, 2E, 2E)

	// cat(x, img_os8, mask_os8): (N, 132, 2E, 2E)
	x = layerForward(g, d.layers[1], []*nn.Node{x, g.ResizeBilinear(img, 2*e, 2*e), g.ResizeBilinear(mask, 2*e, 2*e)}, r3) // (N, 64, 4E, 4E)
	xOS4 := d.refineOS4.forward(g, x, r4os)                                                                                // (N, 1, 4E, 4E)

	// cat(x, img_os4, mask_os4): (N, 68, 4E, 4E)
	x = layerForward(g, d.layers[2], []*nn.Node{x, g.ResizeBilinear(img, 4*e, 4*e), g.ResizeBilinear(mask, 4*e, 4*e)}, r4) // (N, MidPlanes, 8E, 8E)
	// conv1, bn1, leaky_relu: (N, 32, 16E, 16E), then refine_OS1 -> (N, 1, 16E, 16E),
	// fused: the 32-channel full-size image is made and consumed by bands of rows.
	h := d.refineOS1
	xOS1 := g.ConvTranspose2dHead(x, d.conv1.w.Node(g), d.conv1.b.Node(g),
		h.conv0.w.Node(g), h.conv0.b.Node(g), h.w3.Node(g), h.b3.Node(g), 2, 1, pad, leakySlope, r)

	p := &program{
		os1: g.TanhUnitRegion(xOS1, r),                                 // (tanh(x) + 1) / 2
		os4: g.TanhUnitRegion(g.UpsampleBilinearRegion(xOS4, 4, r), r), // (N, 1, 16E, 16E)
		os8: g.TanhUnitRegion(g.UpsampleBilinearRegion(xOS8, 8, r), r),
	}
	m, err := g.Compile()
	if err != nil {
		return nil, err
	}
	p.m = m
	return p, nil
}
