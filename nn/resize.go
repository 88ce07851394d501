package nn

// Bilinear resizing as F.interpolate(mode="bilinear", align_corners=False)
// computes it, whole or cropped.

// linearTaps are the source indices and weights of 1-d linear
// interpolation for every output index, as PyTorch's CPU upsample kernels
// compute them for align_corners=False.
type linearTaps struct {
	i0, i1 []int
	l0, l1 []float32
}

// newLinearTaps maps out output indices onto in input indices with the
// source-per-destination ratio scale (in/out for a size, 1/factor for a
// scale factor): src = scale*(dst+0.5)-0.5 clamped at 0, in float32.
func newLinearTaps(in, out int, scale float32) linearTaps {
	t := linearTaps{i0: make([]int, out), i1: make([]int, out), l0: make([]float32, out), l1: make([]float32, out)}
	for d := 0; d < out; d++ {
		src := scale*(float32(d)+0.5) - 0.5
		if src < 0 {
			src = 0
		}
		i0 := int(src)
		if i0 > in-1 {
			i0 = in - 1
		}
		i1 := i0
		if i0 < in-1 {
			i1 = i0 + 1
		}
		l1 := min(max(src-float32(i0), 0), 1)
		t.i0[d], t.i1[d], t.l0[d], t.l1[d] = i0, i1, 1-l1, l1
	}
	return t
}

// bilinearInto resizes planes h x w planes of src (row stride ld, plane
// stride ps: a region of larger planes when ld > w) to oh x ow with the
// given source-per-destination ratios, writing only the top-left ch x cw corner of
// each output plane (ch <= oh, cw <= ow) to dst, whose planes are dps
// values apart with rows dld apart (ch*cw and cw: compact planes): the
// resize-then-crop of SAM's mask postprocessing, without computing what the
// crop drops. It is separable: every source row that some output row needs
// is interpolated along x once, then output rows mix two of those. That
// gives exactly the values of PyTorch's per-pixel formula
// h0*(w0*s00 + w1*s01) + h1*(w0*s10 + w1*s11), each product rounded to
// float32.
func bilinearInto(dst []float32, dld, dps int, src []float32, planes, h, w, ld, ps, oh, ow, ch, cw int, sy, sx float32) {
	if planes <= 0 || ch <= 0 || cw <= 0 {
		return
	}
	ty, tx := newLinearTaps(h, oh, sy), newLinearTaps(w, ow, sx)
	// Source rows needed by output rows 0..ch-1: [0, rows).
	rows := ty.i1[ch-1] + 1
	tmp := pool.get(planes * rows * cw)
	defer pool.put(tmp)
	tx0, tx1, lx0, lx1 := tx.i0[:cw], tx.i1[:cw], tx.l0[:cw], tx.l1[:cw]
	ParallelFor(planes*rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			p, y := r/rows, r%rows
			s := src[p*ps+y*ld : p*ps+y*ld+w]
			o := tmp[r*cw : (r+1)*cw]
			for x := range o {
				o[x] = float32(lx0[x]*s[tx0[x]]) + float32(lx1[x]*s[tx1[x]])
			}
		}
	})
	ParallelFor(planes*ch, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			p, y := r/ch, r%ch
			t0 := tmp[(p*rows+ty.i0[y])*cw : (p*rows+ty.i0[y]+1)*cw]
			t1 := tmp[(p*rows+ty.i1[y])*cw : (p*rows+ty.i1[y]+1)*cw]
			h0, h1 := ty.l0[y], ty.l1[y]
			o := dst[p*dps+y*dld : p*dps+y*dld+cw]
			if h1 == 0 && h0 == 1 {
				copy(o, t0)
				continue
			}
			for x := range o {
				o[x] = float32(h0*t0[x]) + float32(h1*t1[x])
			}
		}
	})
}

// ResizeBilinearInto resizes planes planes of h x w values in src to oh x ow
// in dst, as F.interpolate(size=(oh, ow), mode="bilinear",
// align_corners=False) without antialiasing.
func ResizeBilinearInto(dst, src []float32, planes, h, w, oh, ow int) {
	ResizeBilinearCropInto(dst, src, planes, h, w, oh, ow, oh, ow)
}

// ResizeBilinearCropInto is ResizeBilinearInto followed by the crop
// [..., :ch, :cw] (ch <= oh, cw <= ow), computing only the kept pixels: dst
// holds planes planes of ch x cw.
func ResizeBilinearCropInto(dst, src []float32, planes, h, w, oh, ow, ch, cw int) {
	if oh <= 0 || ow <= 0 || h <= 0 || w <= 0 {
		return
	}
	ch, cw = min(ch, oh), min(cw, ow)
	bilinearInto(dst, cw, ch*cw, src, planes, h, w, w, h*w, oh, ow, ch, cw, float32(h)/float32(oh), float32(w)/float32(ow))
}

// ResizeBilinearRegionInto resizes the top-left h x w region of one plane
// with row stride ld (src[y*ld+x]) to oh x ow in dst, as slicing
// [:h, :w] and then F.interpolate(size=(oh, ow), mode="bilinear",
// align_corners=False). A region already of the output size is copied.
func ResizeBilinearRegionInto(dst, src []float32, ld, h, w, oh, ow int) {
	if oh <= 0 || ow <= 0 || h <= 0 || w <= 0 {
		return
	}
	if h == oh && w == ow {
		// Weights 1 and 0 everywhere: the identity.
		ParallelFor(h, func(lo, hi int) {
			for y := lo; y < hi; y++ {
				copy(dst[y*w:(y+1)*w], src[y*ld:y*ld+w])
			}
		})
		return
	}
	bilinearInto(dst, ow, oh*ow, src, 1, h, w, ld, 0, oh, ow, oh, ow, float32(h)/float32(oh), float32(w)/float32(ow))
}

// ResizeBilinear is F.interpolate(x, size=(oh, ow), mode="bilinear",
// align_corners=False) on NCHW x.
func (g *Graph) ResizeBilinear(x *Node, oh, ow int) *Node {
	n, c, h, w, ok := g.nchw("resize bilinear", x)
	if !ok {
		return nil
	}
	if oh <= 0 || ow <= 0 {
		return g.fail("resize bilinear: input %v to %dx%d", shapeOf(x), oh, ow)
	}
	return g.Op("ResizeBilinear", []int{n, c, oh, ow}, func(o []float32, v [][]float32) error {
		ResizeBilinearInto(o, v[0], n*c, h, w, oh, ow)
		return nil
	}, x)
}

// UpsampleBilinearRegion is nn.Upsample(scale_factor=scale,
// mode="bilinear") on NCHW x, computing only the region r of each output
// plane (zero elsewhere; the zero Region is the whole plane).
func (g *Graph) UpsampleBilinearRegion(x *Node, scale int, r Region) *Node {
	n, c, h, w, ok := g.nchw("upsample bilinear", x)
	if !ok {
		return nil
	}
	if scale < 1 {
		return g.fail("upsample bilinear: input %v, scale %d", shapeOf(x), scale)
	}
	inv := float32(1 / float64(scale))
	return g.Op("UpsampleBilinear", []int{n, c, h * scale, w * scale}, func(o []float32, v [][]float32) error {
		oh, ow := h*scale, w*scale
		rows, cols := r.limits(oh, ow)
		bilinearInto(o, ow, oh*ow, v[0], n*c, h, w, w, h*w, oh, ow, rows, cols, inv, inv)
		return nil
	}, x)
}
