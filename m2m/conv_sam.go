package m2m

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// leakySlope is the negative slope of every LeakyReLU of the module.
const leakySlope = 0.2

// Decoder is a loaded SAM_Decoder_Deep in eval mode. Its weights are bound
// as inputs of a graph compiled for the input shapes of the last Forward; a
// Decoder is safe for concurrent use (runs are serialised).
type Decoder struct {
	cfg    Config
	params map[string]*tensor.Dense // eval weights and folded biases by module name ("layer2.0.conv1.weight")

	mu   sync.Mutex
	prog *program
}

// Output holds the three alpha mattes of a forward pass, each (N, 1, 16E,
// 16E) in [0, 1] after (tanh(x) + 1) / 2.
type Output struct {
	OS1, OS4, OS8 *tensor.Dense
}

// Config returns the decoder's configuration.
func (d *Decoder) Config() Config { return d.cfg }

// New loads a SAM_Decoder_Deep from store (the MAM checkpoint's state dict,
// without any "module." prefix). Spectral-normalised weights are folded
// (W_bar / sigma), and each eval BatchNorm is folded into the convolution it
// follows (a per-channel weight scale and a bias). It fails naming the
// tensor when one is missing or mis-shaped, and when store holds tensors the
// module does not use.
func New(store *weights.Store, cfg Config) (*Decoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Decoder{cfg: cfg, params: map[string]*tensor.Dense{}}
	if err := d.load(store); err != nil {
		return nil, fmt.Errorf("m2m: %w", err)
	}
	if err := store.CheckUnused(); err != nil {
		return nil, fmt.Errorf("m2m: %w", err)
	}
	return d, nil
}

// load reads every tensor of the module, mirroring SAM_Decoder_Deep.__init__.
// Each BatchNorm that follows a convolution is folded into it (foldBatchNorm),
// so params holds, per convolution, "<name>.weight" and "<name>.bias".
func (d *Decoder) load(s *weights.Store) error {
	c, k := d.cfg, d.cfg.KernelSize
	inplanes := c.FeatDim
	for li, planes := range c.widths() {
		for bi := 0; bi < c.Layers[li+1]; bi++ {
			p := fmt.Sprintf("layer%d.%d", li+2, bi)
			bs := s.Sub(p)
			in := inplanes
			if bi == 0 {
				// first block: stride 2, input = previous width + img (3) + mask (1)
				in = inplanes + 4
				// conv1: ConvTranspose2d(in, in, k4, s2, p1), then bn1
				if err := d.convBN(p+".conv1", bs.Sub("conv1.module"), bs.Sub("bn1"), true, in, in, 4, 4); err != nil {
					return err
				}
				// upsample: nearest x2, conv1x1(in, planes), BatchNorm
				if err := d.convBN(p+".upsample", bs.Sub("upsample.1.module"), bs.Sub("upsample.2"), false, planes, in, 1, 1); err != nil {
					return err
				}
			} else if err := d.convBN(p+".conv1", bs.Sub("conv1.module"), bs.Sub("bn1"), false, in, in, k, k); err != nil {
				return err // conv1: conv3x3(in, in), then bn1
			}
			// conv2: conv3x3(in, planes), then bn2
			if err := d.convBN(p+".conv2", bs.Sub("conv2.module"), bs.Sub("bn2"), false, planes, in, k, k); err != nil {
				return err
			}
			inplanes = planes
		}
	}
	// conv1: ConvTranspose2d(MidPlanes, 32, k4, s2, p1), then bn1
	if err := d.convBN("conv1", s.Sub("conv1.module"), s.Sub("bn1"), true, c.MidPlanes, 32, 4, 4); err != nil {
		return err
	}
	for _, r := range []struct {
		name string
		in   int
	}{{"refine_OS1", 32}, {"refine_OS4", 64}, {"refine_OS8", 128}} {
		rs := s.Sub(r.name)
		w, err := rs.Tensor("0.weight", 32, r.in, k, k)
		if err != nil {
			return err
		}
		scale, shift, err := batchNorm(rs.Sub("1"), 32)
		if err != nil {
			return err
		}
		d.params[r.name+".0.weight"], d.params[r.name+".0.bias"] = foldBatchNorm(w, false, scale, shift)
		if d.params[r.name+".3.weight"], err = rs.Tensor("3.weight", 1, 32, k, k); err != nil {
			return err
		}
		if d.params[r.name+".3.bias"], err = rs.Tensor("3.bias", 1); err != nil {
			return err
		}
	}
	return nil
}

// convBN loads the spectral-normalised convolution under conv (weight shape
// shape) and the BatchNorm under bn that follows it, and stores them folded
// as name.weight and name.bias.
func (d *Decoder) convBN(name string, conv, bn *weights.Store, transposed bool, shape ...int) error {
	w, err := spectralNorm(conv, shape...)
	if err != nil {
		return err
	}
	cout := shape[0]
	if transposed {
		cout = shape[1]
	}
	scale, shift, err := batchNorm(bn, cout)
	if err != nil {
		return err
	}
	d.params[name+".weight"], d.params[name+".bias"] = foldBatchNorm(w, transposed, scale, shift)
	return nil
}

// program is a graph compiled for one set of input shapes.
type program struct {
	shapes        [4]string
	m             *nn.Machine
	os1, os4, os8 *G.Node
}

// Forward runs the module: feat is the image embeddings (N, FeatDim, E, E),
// img the normalised padded input (N, 3, H, W) (H = W = S = 16E for SAM),
// mask the binary guide mask (N, 1, h, w) (4E x 4E for SAM's low-res mask).
// It returns alpha mattes of (N, 1, 16E, 16E).
func (d *Decoder) Forward(ctx context.Context, feat, img, mask *tensor.Dense) (*Output, error) {
	return d.ForwardRegion(ctx, feat, img, mask, 0, 0)
}

// ForwardRegion is Forward computing only the top-left rows x cols of the
// mattes (0: the whole side), zero elsewhere: the image's region of SAM's
// padded input, which is all that refinement reads. Every layer computes
// just the rows and columns that region depends on, so the values inside
// it equal Forward's, at a fraction of the cost for a non-square image.
func (d *Decoder) ForwardRegion(ctx context.Context, feat, img, mask *tensor.Dense, rows, cols int) (*Output, error) {
	if feat == nil || img == nil || mask == nil {
		return nil, errors.New("m2m: forward: nil input")
	}
	fs, is, ms := feat.Shape(), img.Shape(), mask.Shape()
	for _, in := range []struct {
		name string
		t    *tensor.Dense
		c    int
	}{{"feat", feat, d.cfg.FeatDim}, {"img", img, 3}, {"mask", mask, 1}} {
		s := in.t.Shape()
		if in.t.Dtype() != tensor.Float32 {
			return nil, fmt.Errorf("m2m: forward: %s is %v, want float32", in.name, in.t.Dtype())
		}
		if len(s) != 4 || s[0] != fs[0] || s[1] != in.c || s[2] < 1 || s[3] < 1 {
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
	in := make(map[string]*tensor.Dense, len(d.params)+3)
	for k, v := range d.params {
		in[k] = v
	}
	in["feat"], in["img"], in["mask"] = feat, img, mask
	if err := d.prog.m.Run(ctx, in); err != nil {
		return nil, fmt.Errorf("m2m: forward: %w", err)
	}
	out := &Output{}
	for _, r := range []struct {
		dst **tensor.Dense
		n   *G.Node
	}{{&out.OS1, d.prog.os1}, {&out.OS4, d.prog.os4}, {&out.OS8, d.prog.os8}} {
		v := nn.Value(r.n)
		if v == nil {
			return nil, errors.New("m2m: forward: no output value")
		}
		*r.dst = v // a fresh tensor every run: graph outputs are never recycled
	}
	return out, nil
}

// builder adds the module's layers to a graph, declaring each weight as an
// input named like the state dict.
type builder struct {
	g   *nn.Graph
	d   *Decoder
	err error // first parameter not loaded
}

// w declares the parameter name as a graph input.
func (b *builder) w(name string) *G.Node {
	t, ok := b.d.params[name]
	if !ok {
		if b.err == nil {
			b.err = fmt.Errorf("parameter %q not loaded", name)
		}
		return nil
	}
	return b.g.Input(name, t.Shape()...)
}

// basicBlock is conv_sam.BasicBlock over the channel concatenation of xs:
// (N, in, H, W) -> (N, planes, H, W), or (N, planes, 2H, 2W) at stride 2.
// Every BatchNorm is folded into the convolution before it (load); the
// residual add and the last LeakyReLU are fused into conv2's output pass.
// Only the region r of the output is computed.
func (b *builder) basicBlock(p string, xs []*G.Node, stride int, r nn.Region) *G.Node {
	g, pad := b.g, b.d.cfg.KernelSize/2
	var out, identity *G.Node
	scale := 1
	if stride > 1 {
		// conv1: ConvTranspose2d(in, in, k4, s2, p1), bn1, LeakyReLU(0.2): (N, in, 2H, 2W)
		out = g.ConvTranspose2dFused(xs, b.w(p+".conv1.weight"), b.w(p+".conv1.bias"),
			nn.ConvOptions{Stride: 2, Pad: 1, LeakyReLU: true, Slope: leakySlope, Region: r.Grow(pad, pad)})
		// upsample: UpsamplingNearest2d(2) -> conv1x1(in, planes) -> BN: (N, planes, 2H, 2W).
		// The 1x1 convolution and the BatchNorm act on each pixel alone, so
		// they run before the nearest upsampling, which only copies pixels:
		// the same values at a quarter of the cost. The upsampling itself is
		// the residual read of conv2 (ResidualScale 2).
		identity = g.Conv2dFused(xs, b.w(p+".upsample.weight"), b.w(p+".upsample.bias"),
			nn.ConvOptions{Stride: 1, Region: need{}.half(r)}) // (N, planes, H, W)
		scale = 2
	} else {
		if len(xs) != 1 {
			return g.Fail(fmt.Errorf("m2m: %s: a stride-1 block takes one input", p))
		}
		// conv1: conv3x3(in, in), bn1, LeakyReLU(0.2): (N, in, H, W)
		out = g.Conv2dFused(xs, b.w(p+".conv1.weight"), b.w(p+".conv1.bias"),
			nn.ConvOptions{Stride: 1, Pad: pad, LeakyReLU: true, Slope: leakySlope, Region: r.Grow(pad, pad)})
		identity = xs[0]
	}
	// conv2: conv3x3(in, planes), bn2; out += identity; LeakyReLU(0.2): (N, planes, H', W')
	return g.Conv2dFused([]*G.Node{out}, b.w(p+".conv2.weight"), b.w(p+".conv2.bias"),
		nn.ConvOptions{Stride: 1, Pad: pad, LeakyReLU: true, Slope: leakySlope, Residual: identity, ResidualScale: scale, Region: r})
}

// layer is one _make_layer Sequential over the channel concatenation of
// xs: a stride-2 block then stride-1 ones, computing the region r of its
// output.
func (b *builder) layer(name string, blocks int, xs []*G.Node, r nn.Region) *G.Node {
	nd := need{pad: b.d.cfg.KernelSize / 2}
	var x *G.Node
	for i := 0; i < blocks; i++ {
		stride := 1
		if i == 0 {
			stride = 2
		}
		x = b.basicBlock(fmt.Sprintf("%s.%d", name, i), xs, stride, nd.blocksOut(r, blocks-1-i))
		xs = []*G.Node{x}
	}
	return x
}

// refine is a refine_OSk head: Conv3x3(c, 32) -> BN -> LeakyReLU(0.2) ->
// Conv3x3(32, 1, bias): (N, c, H, W) -> (N, 1, H, W), as one fused node
// (the 32-channel activation is never stored), computing the region r.
func (b *builder) refine(name string, x *G.Node, r nn.Region) *G.Node {
	pad := b.d.cfg.KernelSize / 2
	return b.g.Conv2dHead(x, b.w(name+".0.weight"), b.w(name+".0.bias"), b.w(name+".3.weight"), b.w(name+".3.bias"), pad, leakySlope, r)
}

// need maps the region of a layer's output that is needed to the region
// of its input that it depends on (a zero side, all, stays all).
type need struct{ pad int }

// side applies f to a side (0 stays 0).
func side(n int, f func(int) int) int {
	if n <= 0 {
		return 0
	}
	return f(n)
}

// each applies f to both sides of r.
func each(r nn.Region, f func(int) int) nn.Region {
	return nn.Region{Rows: side(r.Rows, f), Cols: side(r.Cols, f)}
}

// half: a 1x1 convolution read with nearest upsampling by 2.
func (need) half(r nn.Region) nn.Region { return each(r, func(n int) int { return (n + 1) / 2 }) }

// upT: ConvTranspose2d(k4, s2, p1) output rows [0, n) read input rows
// [0, floor(n/2)+1).
func (need) upT(r nn.Region) nn.Region { return each(r, func(n int) int { return n/2 + 1 }) }

// blockIn is the input region of a stride-1 block (two convolutions) whose
// output region is r.
func (nd need) blockIn(r nn.Region) nn.Region { return r.Grow(2*nd.pad, 2*nd.pad) }

// blocksOut is the output region of the block followed by later stride-1
// blocks of a layer whose output region is r.
func (nd need) blocksOut(r nn.Region, later int) nn.Region {
	for i := 0; i < later; i++ {
		r = nd.blockIn(r)
	}
	return r
}

// layerIn is the input region of a layer of blocks blocks whose output
// region is r: the first block's transposed convolution needs its output
// widened by pad (for conv2), its shortcut only half of it.
func (nd need) layerIn(r nn.Region, blocks int) nn.Region {
	return nd.upT(nd.blocksOut(r, blocks-1).Grow(nd.pad, nd.pad))
}

// upsample: bilinear upsampling by f from a side of s: output [0, n) reads
// input [0, (n-1+0.5)/f - 0.5 + 2), one more than needed, clipped to s.
func (need) upsample(r nn.Region, f, s int) nn.Region {
	return each(r, func(n int) int { return min(s, max(0, int((float64(n)-0.5)/float64(f)-0.5))+2) })
}

// maxRegion is the union of two regions.
func maxRegion(a, b nn.Region) nn.Region {
	m := func(x, y int) int {
		if x <= 0 || y <= 0 {
			return 0
		}
		return max(x, y)
	}
	return nn.Region{Rows: m(a.Rows, b.Rows), Cols: m(a.Cols, b.Cols)}
}

// build makes the graph of SAM_Decoder_Deep.forward for the given shapes,
// computing the region r of the outputs (see ForwardRegion).
// The torch.cat of each layer's input with the resized image and mask is
// never built: the first block's convolutions read the pieces in turn.
func (d *Decoder) build(n, e, ih, iw, mh, mw int, r nn.Region) (*program, error) {
	g := nn.NewGraph()
	b := &builder{g: g, d: d}
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
	x := b.layer("layer2", c.Layers[1], []*G.Node{xOS16, g.ResizeBilinear(img, e, e), g.ResizeBilinear(mask, e, e)}, r2) // (N, 128, 2E, 2E)
	xOS8 := b.refine("refine_OS8", x, r8os)                                                                              // (N, 1, 2E, 2E)

	// cat(x, img_os8, mask_os8): (N, 132, 2E, 2E)
	x = b.layer("layer3", c.Layers[2], []*G.Node{x, g.ResizeBilinear(img, 2*e, 2*e), g.ResizeBilinear(mask, 2*e, 2*e)}, r3) // (N, 64, 4E, 4E)
	xOS4 := b.refine("refine_OS4", x, r4os)                                                                                 // (N, 1, 4E, 4E)

	// cat(x, img_os4, mask_os4): (N, 68, 4E, 4E)
	x = b.layer("layer4", c.Layers[3], []*G.Node{x, g.ResizeBilinear(img, 4*e, 4*e), g.ResizeBilinear(mask, 4*e, 4*e)}, r4) // (N, MidPlanes, 8E, 8E)
	// conv1, bn1, leaky_relu: (N, 32, 16E, 16E), then refine_OS1 -> (N, 1, 16E, 16E),
	// fused: the 32-channel full-size image is made and consumed by bands of rows.
	xOS1 := g.ConvTranspose2dHead(x, b.w("conv1.weight"), b.w("conv1.bias"),
		b.w("refine_OS1.0.weight"), b.w("refine_OS1.0.bias"), b.w("refine_OS1.3.weight"), b.w("refine_OS1.3.bias"),
		2, 1, pad, leakySlope, r)

	p := &program{
		os1: g.TanhUnitRegion(xOS1, r),                                 // (tanh(x) + 1) / 2
		os4: g.TanhUnitRegion(g.UpsampleBilinearRegion(xOS4, 4, r), r), // (N, 1, 16E, 16E)
		os8: g.TanhUnitRegion(g.UpsampleBilinearRegion(xOS8, 8, r), r),
	}
	if b.err != nil {
		return nil, b.err
	}
	m, err := g.Compile()
	if err != nil {
		return nil, err
	}
	p.m = m
	return p, nil
}
