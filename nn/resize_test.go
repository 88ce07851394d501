package nn

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"testing"
)

// refBilinear is upsample_bilinear2d (align_corners=False) written per
// output pixel: source coordinate scale*(d+0.5)-0.5 clamped at 0 (computed
// in float32, as PyTorch's CPU kernel does for float tensors), the lower
// neighbour, the upper one clamped to the last row/column, and the
// interpolation itself in float64.
func refBilinear(src []float32, planes, h, w, oh, ow int, sy, sx float64) []float32 {
	out := make([]float32, planes*oh*ow)
	coord := func(d, in int, s float64) (int, int, float64) {
		c := math.Max(float64(float32(s)*(float32(d)+0.5)-0.5), 0)
		i0 := min(int(math.Floor(c)), in-1)
		i1 := min(i0+1, in-1)
		return i0, i1, c - float64(i0)
	}
	for p := 0; p < planes; p++ {
		at := func(y, x int) float64 { return float64(src[(p*h+y)*w+x]) }
		for y := 0; y < oh; y++ {
			y0, y1, ly := coord(y, h, sy)
			for x := 0; x < ow; x++ {
				x0, x1, lx := coord(x, w, sx)
				v := (1-ly)*((1-lx)*at(y0, x0)+lx*at(y0, x1)) + ly*((1-lx)*at(y1, x0)+lx*at(y1, x1))
				out[(p*oh+y)*ow+x] = float32(v)
			}
		}
	}
	return out
}

func TestResizeBilinearKnown(t *testing.T) {
	cases := []struct {
		src          []float32
		h, w, oh, ow int
		want         []float32
	}{
		// F.interpolate(torch.tensor([[[[1., 2.]]]]), size=(1, 4), mode="bilinear")
		{[]float32{1, 2}, 1, 2, 1, 4, []float32{1, 1.25, 1.75, 2}},
		// downsampling by 2 averages pairs (no antialias)
		{[]float32{1, 3, 5, 9}, 1, 4, 1, 2, []float32{2, 7}},
		// 3 -> 2: sources 0.25 and 1.75
		{[]float32{0, 4, 8}, 1, 3, 1, 2, []float32{1, 7}},
		// identity
		{[]float32{1, 2, 3, 4}, 2, 2, 2, 2, []float32{1, 2, 3, 4}},
		// 2x2 -> 3x3: sources 0, 0.5 (clamped -1/6 -> 0; 5/6? no: 2/3*(d+.5)-.5 = 0, 0.5, 1.1667)
		{[]float32{0, 0, 0, 6}, 2, 2, 3, 3, []float32{0, 0, 0, 0, 1.5, 3, 0, 3, 6}},
	}
	for i, c := range cases {
		got := make([]float32, c.oh*c.ow)
		ResizeBilinearInto(got, c.src, 1, c.h, c.w, c.oh, c.ow)
		if d := convMaxDiff(t, got, c.want); d > 1e-6 {
			t.Errorf("case %d: got %v want %v", i, got, c.want)
		}
	}
}

func TestResizeBilinearInto(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	cases := []struct{ planes, h, w, oh, ow int }{
		{3, 16, 16, 4, 4},       // M2M: image to E (by 4)
		{2, 64, 48, 4, 3},       // by 16
		{1, 7, 5, 13, 11},       // odd upsampling
		{2, 13, 11, 7, 5},       // odd downsampling
		{1, 171, 256, 160, 240}, // crop -> original size, as the refinement does
		{1, 5, 9, 5, 9},
		{1, 1, 1, 3, 2},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%+v", c), func(t *testing.T) {
			src := convRand(rng, c.planes*c.h*c.w)
			want := refBilinear(src, c.planes, c.h, c.w, c.oh, c.ow, float64(c.h)/float64(c.oh), float64(c.w)/float64(c.ow))
			got := make([]float32, len(want))
			ResizeBilinearInto(got, src, c.planes, c.h, c.w, c.oh, c.ow)
			if d := convMaxDiff(t, got, want); d > 1e-6 {
				t.Errorf("max abs diff %g", d)
			}
		})
	}
}

func TestUpsampleGraph(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	cases := []struct{ n, c, h, w, scale int }{
		{1, 1, 4, 4, 4}, // os4 -> S
		{1, 1, 2, 3, 8}, // os8 -> S
		{2, 3, 5, 3, 2},
		{1, 2, 3, 7, 1},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%+v", c), func(t *testing.T) {
			g := NewGraph()
			x := g.Input("x", c.n, c.c, c.h, c.w)
			bl := g.UpsampleBilinearRegion(x, c.scale, Region{})
			rs := g.ResizeBilinear(x, c.h*c.scale+1, c.w*c.scale-1+c.scale)
			m, err := g.Compile()
			if err != nil {
				t.Fatal(err)
			}
			src := convRand(rng, c.n*c.c*c.h*c.w)
			if err := m.Run(context.Background(), map[string]*Tensor{"x": NewTensor(src, c.n, c.c, c.h, c.w)}); err != nil {
				t.Fatal(err)
			}
			p, oh, ow := c.n*c.c, c.h*c.scale, c.w*c.scale
			s := 1 / float64(c.scale)
			if d := convMaxDiff(t, Values(bl), refBilinear(src, p, c.h, c.w, oh, ow, s, s)); d > 1e-6 {
				t.Errorf("bilinear: max abs diff %g", d)
			}
			rh, rw := c.h*c.scale+1, c.w*c.scale-1+c.scale
			if !hasShape(rs, c.n, c.c, rh, rw) {
				t.Fatalf("resize shape %v", rs.Shape())
			}
			if d := convMaxDiff(t, Values(rs), refBilinear(src, p, c.h, c.w, rh, rw, float64(c.h)/float64(rh), float64(c.w)/float64(rw))); d > 1e-6 {
				t.Errorf("resize: max abs diff %g", d)
			}
		})
	}
	g := NewGraph()
	x := g.Input("x", 2, 3)
	g.UpsampleBilinearRegion(x, 2, Region{})
	if g.Err() == nil {
		t.Error("2-d input: no error")
	}
	g = NewGraph()
	g.ResizeBilinear(g.Input("x", 1, 1, 2, 2), 0, 3)
	if g.Err() == nil {
		t.Error("empty size: no error")
	}
}

// TestResizeBilinearCrop checks that the cropped resize gives exactly the
// top-left corner of the full resize, and the full resize the reference.
func TestResizeBilinearCrop(t *testing.T) {
	rng := rand.New(rand.NewSource(14))
	for _, c := range []struct{ planes, h, w, oh, ow, ch, cw int }{
		{3, 16, 16, 64, 64, 48, 64},  // SAM: low-res masks to S, crop to the resized image
		{1, 7, 9, 30, 31, 30, 31},    // no crop
		{2, 9, 5, 13, 4, 1, 1},       // a single pixel
		{1, 64, 64, 48, 40, 20, 33},  // downscale
		{1, 5, 6, 100, 100, 37, 100}, // crop rows only
	} {
		src := convRand(rng, c.planes*c.h*c.w)
		full := make([]float32, c.planes*c.oh*c.ow)
		ResizeBilinearInto(full, src, c.planes, c.h, c.w, c.oh, c.ow)
		ref := refBilinear(src, c.planes, c.h, c.w, c.oh, c.ow, float64(c.h)/float64(c.oh), float64(c.w)/float64(c.ow))
		if d := convMaxDiff(t, full, ref); d > 1e-6 {
			t.Errorf("%+v: full resize: max abs diff %g", c, d)
		}
		got := make([]float32, c.planes*c.ch*c.cw)
		ResizeBilinearCropInto(got, src, c.planes, c.h, c.w, c.oh, c.ow, c.ch, c.cw)
		for p := 0; p < c.planes; p++ {
			for y := 0; y < c.ch; y++ {
				for x := 0; x < c.cw; x++ {
					if g, w := got[(p*c.ch+y)*c.cw+x], full[(p*c.oh+y)*c.ow+x]; g != w {
						t.Fatalf("%+v: (%d, %d, %d) = %g, full resize has %g", c, p, y, x, g, w)
					}
				}
			}
		}
	}
}

// TestResizeBilinearRegion checks the resize of a plane's top-left region
// against slicing it out first.
func TestResizeBilinearRegion(t *testing.T) {
	rng := rand.New(rand.NewSource(15))
	for _, c := range []struct{ ld, rows, h, w, oh, ow int }{
		{64, 64, 48, 64, 30, 40}, // crop rows, then downscale
		{64, 64, 40, 50, 55, 70}, // crop both, then upscale
		{32, 40, 20, 25, 20, 25}, // same size: a copy
	} {
		src := convRand(rng, c.rows*c.ld)
		crop := make([]float32, c.h*c.w)
		for y := 0; y < c.h; y++ {
			copy(crop[y*c.w:(y+1)*c.w], src[y*c.ld:])
		}
		want := make([]float32, c.oh*c.ow)
		ResizeBilinearInto(want, crop, 1, c.h, c.w, c.oh, c.ow)
		got := make([]float32, c.oh*c.ow)
		ResizeBilinearRegionInto(got, src, c.ld, c.h, c.w, c.oh, c.ow)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%+v: value %d = %g, want %g", c, i, got[i], want[i])
			}
		}
	}
}
