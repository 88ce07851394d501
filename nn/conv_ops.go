package nn

// Convolutions as graph ops (torch.nn.Conv2d, ConvTranspose2d), with their
// fusions: inputs read as one channel concatenation, bias, residual with
// nearest upsampling, LeakyReLU, output region.

// ConvOptions selects the fused extras of Conv2dFused and
// ConvTranspose2dFused.
type ConvOptions struct {
	Stride, Pad int
	// LeakyReLU applies LeakyReLU(Slope) last.
	LeakyReLU bool
	Slope     float32
	// Residual, when not nil, is added before the activation. It is
	// (N, Cout, OH/ResidualScale, OW/ResidualScale) and is read with
	// nearest upsampling by ResidualScale (1 when 0): the shortcut of a
	// ResNet block that upsamples.
	Residual      *Node
	ResidualScale int
	// Region, when set, limits the outputs computed to its top-left
	// corner (see Region).
	Region Region
}

// convInputs checks that xs share batch and spatial size and returns their
// channel counts.
func (g *Graph) convInputs(op string, xs []*Node) (n, h, w int, chans []int, ok bool) {
	if len(xs) == 0 {
		g.fail("%s: no input", op)
		return 0, 0, 0, nil, false
	}
	if !g.ok(xs...) {
		return 0, 0, 0, nil, false
	}
	s0 := shapeOf(xs[0])
	for _, x := range xs {
		s := shapeOf(x)
		if len(s) != 4 || s[0] != s0[0] || s[2] != s0[2] || s[3] != s0[3] {
			g.fail("%s: inputs %v and %v do not stack along channels", op, s0, s)
			return 0, 0, 0, nil, false
		}
		chans = append(chans, s[1])
	}
	return s0[0], s0[2], s0[3], chans, true
}

// convBuild adds a lowered convolution node over the channel concatenation
// of xs.
func (g *Graph) convBuild(name string, transposed bool, xs []*Node, w, b *Node, o ConvOptions) *Node {
	op := "conv2d"
	if transposed {
		op = "convtranspose2d"
	}
	n, h, wd, chans, ok := g.convInputs(op, xs)
	if !ok || !g.ok(w) {
		return nil
	}
	cin := 0
	for _, c := range chans {
		cin += c
	}
	ws := shapeOf(w)
	if len(ws) != 4 {
		return g.fail("%s: weight %v is not 4-d", op, ws)
	}
	wcin, cout := ws[1], ws[0]
	if transposed {
		wcin, cout = ws[0], ws[1]
	}
	kh, kw := ws[2], ws[3]
	if wcin != cin {
		return g.fail("%s: input of %d channels, weight %v", op, cin, ws)
	}
	if o.Stride < 1 || o.Pad < 0 {
		return g.fail("%s: stride %d, padding %d", op, o.Stride, o.Pad)
	}
	if b != nil && prod(shapeOf(b)) != cout {
		return g.fail("%s: bias %v for %d output channels", op, shapeOf(b), cout)
	}
	var oh, ow int
	if transposed {
		oh, ow = ConvTransposeOutSize(h, kh, o.Stride, o.Pad), ConvTransposeOutSize(wd, kw, o.Stride, o.Pad)
	} else {
		oh, ow = ConvOutSize(h, kh, o.Stride, o.Pad), ConvOutSize(wd, kw, o.Stride, o.Pad)
	}
	if oh <= 0 || ow <= 0 {
		return g.fail("%s: input (%d, %d, %d, %d), kernel %dx%d, stride %d, padding %d: empty output", op, n, cin, h, wd, kh, kw, o.Stride, o.Pad)
	}
	rscale := max(o.ResidualScale, 1)
	var rh, rw int
	if o.Residual != nil {
		if !g.ok(o.Residual) {
			return nil
		}
		rs := shapeOf(o.Residual)
		if len(rs) != 4 || rs[0] != n || rs[1] != cout || rs[2]*rscale != oh || rs[3]*rscale != ow {
			return g.fail("%s: residual %v (scale %d) for output (%d, %d, %d, %d)", op, rs, rscale, n, cout, oh, ow)
		}
		rh, rw = rs[2], rs[3]
	}
	ins := append([]*Node{w}, xs...)
	bi, ri := -1, -1
	if b != nil {
		bi = len(ins)
		ins = append(ins, b)
	}
	if o.Residual != nil {
		ri = len(ins)
		ins = append(ins, o.Residual)
	}
	nx := len(xs)
	cache := g.weightCache(w)
	return g.Op(name, []int{n, cout, oh, ow}, func(out []float32, v [][]float32) error {
		srcs := make([][]float32, nx)
		for i := range srcs {
			srcs[i] = v[1+i]
		}
		tmpl := cache.get([][]float32{v[0]}, func() any {
			if transposed {
				return newConvTranspose2d(nil, chans, n, h, wd, v[0], cout, kh, kw, o.Stride, o.Pad, nil)
			}
			return newConv2d(nil, chans, n, h, wd, v[0], cout, kh, kw, o.Stride, o.Pad, nil)
		}).(*convOp)
		c := tmpl.withRows(h, oh, out)
		c.srcs = srcs
		if bi >= 0 {
			c.epi.bias = v[bi]
		}
		if ri >= 0 {
			c.epi.res, c.epi.rh, c.epi.rw, c.epi.rscale = v[ri], rh, rw, rscale
		}
		c.epi.leaky, c.epi.slope = o.LeakyReLU, o.Slope
		rows, cols := o.Region.limits(oh, ow)
		if rows < oh {
			c.oLo, c.oHi = 0, rows
		}
		if cols < ow {
			c.oWi = cols
		}
		c.run()
		return nil
	}, ins...)
}

// Conv2d is torch.nn.Conv2d (groups 1, dilation 1, zero padding) on NCHW x:
// w is (Cout, Cin, KH, KW), b (Cout) or nil.
func (g *Graph) Conv2d(x, w, b *Node, stride, pad int) *Node {
	return g.convBuild("Conv2d", false, []*Node{x}, w, b, ConvOptions{Stride: stride, Pad: pad})
}

// Conv2dFused is torch.nn.Conv2d (groups 1, dilation 1, zero padding) over
// the channel concatenation of the NCHW inputs xs (torch.cat(xs, 1), never
// built), with the extras of o fused into its output pass: w is (Cout,
// sum Cin, KH, KW), b (Cout) or nil.
func (g *Graph) Conv2dFused(xs []*Node, w, b *Node, o ConvOptions) *Node {
	return g.convBuild("Conv2dFused", false, xs, w, b, o)
}

// ConvTranspose2dFused is torch.nn.ConvTranspose2d (groups 1, dilation 1, no
// output padding) over the channel concatenation of xs, with the extras of
// o fused: w is (sum Cin, Cout, KH, KW), b (Cout) or nil.
func (g *Graph) ConvTranspose2dFused(xs []*Node, w, b *Node, o ConvOptions) *Node {
	return g.convBuild("ConvTranspose2dFused", true, xs, w, b, o)
}
