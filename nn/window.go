package nn

// WindowPad returns n rounded up to a multiple of the window size ws: the
// padded side window_partition works on.
func WindowPad(n, ws int) int { return (n + ws - 1) / ws * ws }

// WindowPartitionInto is ViTDet's window_partition on NHWC x (b, h, w, c):
// the image is padded with zeros at the bottom and right to a multiple of
// ws and split into non-overlapping ws x ws windows, written to dst as
// (b * nh * nw, ws, ws, c) with the windows in row-major (nh, nw) order.
func WindowPartitionInto(dst, x []float32, b, h, w, c, ws int) {
	hp, wp := WindowPad(h, ws), WindowPad(w, ws)
	nh, nw := hp/ws, wp/ws
	// One task per output window row: (b, wy, wx, i).
	ParallelFor(b*nh*nw*ws, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			i := t % ws
			win := t / ws
			wx := win % nw
			wy := (win / nw) % nh
			bi := win / (nw * nh)
			y := wy*ws + i
			row := dst[t*ws*c : (t+1)*ws*c]
			if y >= h {
				clear(row)
				continue
			}
			x0 := wx * ws
			n := min(ws, w-x0) // valid pixels of this window row
			if n > 0 {
				copy(row[:n*c], x[((bi*h+y)*w+x0)*c:((bi*h+y)*w+x0+n)*c])
			} else {
				n = 0
			}
			clear(row[n*c:])
		}
	})
}

// WindowUnpartitionInto is window_unpartition: the inverse of
// WindowPartitionInto, merging (b * nh * nw, ws, ws, c) windows back to
// (b, h, w, c) and dropping the padding.
func WindowUnpartitionInto(dst, windows []float32, b, h, w, c, ws int) {
	nw := WindowPad(w, ws) / ws
	nh := WindowPad(h, ws) / ws
	// One task per output image row: (b, y).
	ParallelFor(b*h, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			bi, y := t/h, t%h
			wy, i := y/ws, y%ws
			for wx := 0; wx < nw; wx++ {
				x0 := wx * ws
				n := min(ws, w-x0)
				win := (bi*nh+wy)*nw + wx
				src := windows[(win*ws+i)*ws*c:]
				copy(dst[((bi*h+y)*w+x0)*c:((bi*h+y)*w+x0+n)*c], src[:n*c])
			}
		}
	})
}

// WindowPartition adds window_partition of NHWC x (B, H, W, C) into
// (B*nH*nW, ws, ws, C) windows, zero-padding H and W up to multiples of ws.
func (g *Graph) WindowPartition(x *Node, ws int) *Node {
	if !g.ok(x) {
		return nil
	}
	xs := shapeOf(x)
	if len(xs) != 4 || ws <= 0 {
		return g.fail("window partition: input %v, window %d: want NHWC and a positive window", xs, ws)
	}
	b, h, w, c := xs[0], xs[1], xs[2], xs[3]
	nwin := b * (WindowPad(h, ws) / ws) * (WindowPad(w, ws) / ws)
	return g.Op("WindowPartition", []int{nwin, ws, ws, c}, func(o []float32, v [][]float32) error {
		WindowPartitionInto(o, v[0], b, h, w, c, ws)
		return nil
	}, x)
}

// WindowUnpartition adds window_unpartition of windows (B*nH*nW, ws, ws, C)
// back to NHWC (B, h, w, C), cropping the padding.
func (g *Graph) WindowUnpartition(windows *Node, h, w int) *Node {
	if !g.ok(windows) {
		return nil
	}
	ws := shapeOf(windows)
	if len(ws) != 4 || ws[1] != ws[2] || h <= 0 || w <= 0 {
		return g.fail("window unpartition: windows %v to %dx%d: want (N, ws, ws, C)", ws, h, w)
	}
	win, c := ws[1], ws[3]
	per := (WindowPad(h, win) / win) * (WindowPad(w, win) / win)
	if ws[0]%per != 0 {
		return g.fail("window unpartition: %d windows is not a multiple of the %d per %dx%d image", ws[0], per, h, w)
	}
	b := ws[0] / per
	return g.Op("WindowUnpartition", []int{b, h, w, c}, func(o []float32, v [][]float32) error {
		WindowUnpartitionInto(o, v[0], b, h, w, c, win)
		return nil
	}, windows)
}
