package m2m

// ForwardRegion computes only part of the mattes: which rows and columns
// of each layer's output that part depends on.

import "github.com/mam-go/mam-go/nn"

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
