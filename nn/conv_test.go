package nn

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"testing"
)

func convRand(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

// naiveConv2d is the definition of a cross-correlation with zero padding.
func naiveConv2d(x []float32, n, cin, h, w int, wt []float32, cout, kh, kw int, bias []float32, stride, pad int) []float32 {
	oh, ow := (h+2*pad-kh)/stride+1, (w+2*pad-kw)/stride+1
	out := make([]float32, n*cout*oh*ow)
	for b := 0; b < n; b++ {
		for co := 0; co < cout; co++ {
			for y := 0; y < oh; y++ {
				for xo := 0; xo < ow; xo++ {
					var s float64
					if bias != nil {
						s = float64(bias[co])
					}
					for ci := 0; ci < cin; ci++ {
						for i := 0; i < kh; i++ {
							for j := 0; j < kw; j++ {
								iy, ix := y*stride-pad+i, xo*stride-pad+j
								if iy < 0 || iy >= h || ix < 0 || ix >= w {
									continue
								}
								s += float64(x[((b*cin+ci)*h+iy)*w+ix]) * float64(wt[((co*cin+ci)*kh+i)*kw+j])
							}
						}
					}
					out[((b*cout+co)*oh+y)*ow+xo] = float32(s)
				}
			}
		}
	}
	return out
}

// naiveConvTranspose2d scatters every input value times the kernel into the
// output, the definition of a transposed convolution.
func naiveConvTranspose2d(x []float32, n, cin, h, w int, wt []float32, cout, kh, kw int, bias []float32, stride, pad int) []float32 {
	oh, ow := (h-1)*stride-2*pad+kh, (w-1)*stride-2*pad+kw
	acc := make([]float64, n*cout*oh*ow)
	for b := 0; b < n; b++ {
		for co := 0; co < cout; co++ {
			if bias != nil {
				for p := 0; p < oh*ow; p++ {
					acc[(b*cout+co)*oh*ow+p] = float64(bias[co])
				}
			}
			for ci := 0; ci < cin; ci++ {
				for y := 0; y < h; y++ {
					for xi := 0; xi < w; xi++ {
						v := float64(x[((b*cin+ci)*h+y)*w+xi])
						for i := 0; i < kh; i++ {
							for j := 0; j < kw; j++ {
								oy, ox := y*stride-pad+i, xi*stride-pad+j
								if oy < 0 || oy >= oh || ox < 0 || ox >= ow {
									continue
								}
								acc[((b*cout+co)*oh+oy)*ow+ox] += v * float64(wt[((ci*cout+co)*kh+i)*kw+j])
							}
						}
					}
				}
			}
		}
	}
	out := make([]float32, len(acc))
	for i, v := range acc {
		out[i] = float32(v)
	}
	return out
}

func convMaxDiff(t *testing.T, got, want []float32) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	var m float64
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		m = max(m, d)
	}
	return m
}

type convCase struct {
	n, cin, h, w, cout, kh, kw, stride, pad int
	bias                                    bool
	budget                                  int // small tiling for the case (setConvTiling(1, budget%13+2)), 0 for the default
}

var convCases = []convCase{
	{1, 3, 7, 5, 4, 3, 3, 1, 1, true, 0},
	{2, 3, 7, 5, 4, 3, 3, 1, 1, false, 0},
	{1, 2, 9, 11, 3, 3, 3, 2, 1, true, 0},
	{1, 5, 6, 6, 2, 1, 1, 1, 0, true, 0},  // 1x1 direct GEMM
	{2, 5, 6, 7, 3, 1, 1, 1, 0, false, 0}, // 1x1 direct GEMM, batch
	{1, 3, 16, 16, 4, 16, 16, 16, 0, true, 0},
	{1, 1, 16, 16, 4, 2, 2, 2, 0, true, 0},
	{1, 4, 13, 9, 3, 4, 2, 3, 2, true, 0},
	{2, 3, 9, 10, 5, 3, 3, 1, 1, true, 50}, // tiled: 27 rows, tile of 1 pixel
	{1, 3, 9, 10, 5, 3, 3, 2, 1, true, 100},
	{2, 3, 9, 10, 5, 3, 3, 1, 1, false, 600}, // tiles of 2 rows, the last one partial
	{1, 2, 5, 4, 3, 2, 2, 1, 3, true, 0},     // padding wider than the kernel: empty border rows/columns
	{1, 2, 6, 7, 3, 5, 5, 2, 2, false, 0},
}

func TestConv2dInto(t *testing.T) { checkConvInto(t, 7, convCases, false) }

func TestConvTranspose2dInto(t *testing.T) {
	checkConvInto(t, 8, []convCase{
		{1, 3, 5, 7, 4, 4, 4, 2, 1, false, 0}, // M2M's upsampling conv
		{2, 3, 5, 7, 4, 4, 4, 2, 1, true, 0},
		{1, 6, 4, 4, 3, 2, 2, 2, 0, true, 0}, // SAM's output upscaling
		{1, 2, 5, 3, 3, 3, 3, 1, 1, true, 0},
		{1, 2, 6, 5, 3, 3, 2, 3, 0, false, 0},
		{2, 3, 5, 7, 4, 4, 4, 2, 1, true, 20},   // tiled by rows
		{2, 3, 5, 7, 4, 4, 4, 2, 1, true, 1000}, // tiles of 2 rows, the last one partial
		{1, 2, 5, 6, 3, 2, 2, 1, 2, true, 0},    // padding cropping whole taps
	}, true)
}

// checkConvInto runs Conv2dInto, or ConvTranspose2dInto when transposed,
// on every case against the naive reference.
func checkConvInto(t *testing.T, seed int64, cases []convCase, transposed bool) {
	rng := rand.New(rand.NewSource(seed))
	kernel, naive := Conv2dInto, naiveConv2d
	if transposed {
		kernel, naive = ConvTranspose2dInto, naiveConvTranspose2d
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%+v", c), func(t *testing.T) {
			x := convRand(rng, c.n*c.cin*c.h*c.w)
			wt := convRand(rng, c.cout*c.cin*c.kh*c.kw) // either layout
			var b []float32
			if c.bias {
				b = convRand(rng, c.cout)
			}
			if c.budget > 0 {
				defer setConvTiling(1, c.budget%13+2)()
			}
			want := naive(x, c.n, c.cin, c.h, c.w, wt, c.cout, c.kh, c.kw, b, c.stride, c.pad)
			got := make([]float32, len(want))
			for i := range got {
				got[i] = float32(math.NaN()) // every output must be written
			}
			kernel(got, x, c.n, c.cin, c.h, c.w, wt, c.cout, c.kh, c.kw, b, c.stride, c.pad)
			if d := convMaxDiff(t, got, want); d > 1e-5 {
				t.Errorf("max abs diff %g", d)
			}
		})
	}
}

func TestConvGraph(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	g := NewGraph()
	x := g.Input("x", 1, 3, 6, 5)
	w := g.Input("w", 4, 3, 3, 3)
	b := g.Input("b", 4)
	wt := g.Input("wt", 4, 2, 4, 4)
	y := g.Conv2d(x, w, b, 1, 1)                                                     // (1, 4, 6, 5)
	z := g.ConvTranspose2dFused([]*Node{y}, wt, nil, ConvOptions{Stride: 2, Pad: 1}) // (1, 2, 12, 10)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	in := map[string][]float32{"x": convRand(rng, 90), "w": convRand(rng, 108), "b": convRand(rng, 4), "wt": convRand(rng, 128)}
	err = m.Run(context.Background(), map[string]*Tensor{
		"x": NewTensor(in["x"], 1, 3, 6, 5), "w": NewTensor(in["w"], 4, 3, 3, 3),
		"b": NewTensor(in["b"], 4), "wt": NewTensor(in["wt"], 4, 2, 4, 4),
	})
	if err != nil {
		t.Fatal(err)
	}
	wantY := naiveConv2d(in["x"], 1, 3, 6, 5, in["w"], 4, 3, 3, in["b"], 1, 1)
	wantZ := naiveConvTranspose2d(wantY, 1, 4, 6, 5, in["wt"], 2, 4, 4, nil, 2, 1)
	if !hasShape(z, 1, 2, 12, 10) {
		t.Fatalf("shape %v", z.Shape())
	}
	if d := convMaxDiff(t, Values(z), wantZ); d > 1e-4 {
		t.Errorf("max abs diff %g", d)
	}
}

func TestConvGraphErrors(t *testing.T) {
	cases := []struct {
		name  string
		build func(g *Graph)
	}{
		{"channels", func(g *Graph) { g.Conv2d(g.Input("x", 1, 3, 6, 6), g.Input("w", 4, 2, 3, 3), nil, 1, 1) }},
		{"bias", func(g *Graph) { g.Conv2d(g.Input("x", 1, 3, 6, 6), g.Input("w", 4, 3, 3, 3), g.Input("b", 3), 1, 1) }},
		{"rank", func(g *Graph) { g.Conv2d(g.Input("x", 3, 6, 6), g.Input("w", 4, 3, 3, 3), nil, 1, 1) }},
		{"stride", func(g *Graph) { g.Conv2d(g.Input("x", 1, 3, 6, 6), g.Input("w", 4, 3, 3, 3), nil, 0, 1) }},
		{"empty", func(g *Graph) { g.Conv2d(g.Input("x", 1, 3, 2, 2), g.Input("w", 4, 3, 5, 5), nil, 1, 0) }},
		{"transposed channels", func(g *Graph) {
			g.ConvTranspose2dFused([]*Node{g.Input("x", 1, 3, 6, 6)}, g.Input("w", 4, 3, 2, 2), nil, ConvOptions{Stride: 2})
		}},
	}
	for _, c := range cases {
		g := NewGraph()
		c.build(g)
		if g.Err() == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

func TestConvLeakyReLU(t *testing.T) {
	rng := rand.New(rand.NewSource(10))
	leaky := func(s []float32) []float32 {
		out := make([]float32, len(s))
		for i, v := range s {
			if v < 0 {
				v *= 0.2
			}
			out[i] = v
		}
		return out
	}
	for _, tc := range []struct {
		c          convCase
		transposed bool
	}{
		{convCase{1, 3, 7, 5, 4, 3, 3, 1, 1, true, 0}, false},
		{convCase{2, 3, 9, 10, 5, 3, 3, 1, 1, true, 600}, false}, // per-tile activation
		{convCase{1, 5, 6, 6, 2, 1, 1, 1, 0, true, 0}, false},    // direct 1x1
		{convCase{2, 3, 5, 7, 4, 4, 4, 2, 1, true, 0}, true},
	} {
		c := tc.c
		x, wt, b := convRand(rng, c.n*c.cin*c.h*c.w), convRand(rng, c.cout*c.cin*c.kh*c.kw), convRand(rng, c.cout)
		if c.budget > 0 {
			defer setConvTiling(1, c.budget%13+2)()
		}
		g := NewGraph()
		naive, op, ws := naiveConv2d, g.Conv2dFused, []int{c.cout, c.cin, c.kh, c.kw}
		if tc.transposed {
			naive, op, ws = naiveConvTranspose2d, g.ConvTranspose2dFused, []int{c.cin, c.cout, c.kh, c.kw}
		}
		want := leaky(naive(x, c.n, c.cin, c.h, c.w, wt, c.cout, c.kh, c.kw, b, c.stride, c.pad))
		y := op([]*Node{g.Input("x", c.n, c.cin, c.h, c.w)}, g.Input("w", ws...), g.Input("b", c.cout), ConvOptions{Stride: c.stride, Pad: c.pad, LeakyReLU: true, Slope: 0.2})
		m, err := g.Compile()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Exec(context.Background(), map[string][]float32{"x": x, "w": wt, "b": b}); err != nil {
			t.Fatal(err)
		}
		if d := convMaxDiff(t, Values(y), want); d > 1e-5 {
			t.Errorf("%+v (transposed %v): max abs diff %g", c, tc.transposed, d)
		}
	}
}

// TestConvRandomShapes sweeps seeded random small shapes, strides, paddings
// (wider than the kernel too) and tile budgets against the naive loops.
func TestConvRandomShapes(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	for it := 0; it < 300; it++ {
		c := convCase{
			n: 1 + rng.Intn(2), cin: 1 + rng.Intn(3), h: 1 + rng.Intn(7), w: 1 + rng.Intn(7), cout: 1 + rng.Intn(3),
			kh: 1 + rng.Intn(4), kw: 1 + rng.Intn(4), stride: 1 + rng.Intn(3), pad: rng.Intn(5), bias: rng.Intn(2) == 0,
		}
		panels, kc := []int{8, 1, 2}[rng.Intn(3)], []int{256, 1, 3, 7}[rng.Intn(4)]
		restore := setConvTiling(panels, kc)
		var b []float32
		if c.bias {
			b = convRand(rng, c.cout)
		}
		if oh, ow := ConvOutSize(c.h, c.kh, c.stride, c.pad), ConvOutSize(c.w, c.kw, c.stride, c.pad); oh > 0 && ow > 0 {
			x := convRand(rng, c.n*c.cin*c.h*c.w)
			wt := convRand(rng, c.cout*c.cin*c.kh*c.kw)
			want := naiveConv2d(x, c.n, c.cin, c.h, c.w, wt, c.cout, c.kh, c.kw, b, c.stride, c.pad)
			got := make([]float32, len(want))
			Conv2dInto(got, x, c.n, c.cin, c.h, c.w, wt, c.cout, c.kh, c.kw, b, c.stride, c.pad)
			if d := convMaxDiff(t, got, want); d > 1e-5 {
				t.Fatalf("conv %+v tiling %d/%d: max abs diff %g", c, panels, kc, d)
			}
		}
		if oh, ow := ConvTransposeOutSize(c.h, c.kh, c.stride, c.pad), ConvTransposeOutSize(c.w, c.kw, c.stride, c.pad); oh > 0 && ow > 0 {
			x := convRand(rng, c.n*c.cin*c.h*c.w)
			wt := convRand(rng, c.cin*c.cout*c.kh*c.kw)
			want := naiveConvTranspose2d(x, c.n, c.cin, c.h, c.w, wt, c.cout, c.kh, c.kw, b, c.stride, c.pad)
			got := make([]float32, len(want))
			for i := range got {
				got[i] = float32(math.NaN())
			}
			ConvTranspose2dInto(got, x, c.n, c.cin, c.h, c.w, wt, c.cout, c.kh, c.kw, b, c.stride, c.pad)
			if d := convMaxDiff(t, got, want); d > 1e-5 {
				t.Fatalf("transposed %+v tiling %d/%d: max abs diff %g", c, panels, kc, d)
			}
		}
		restore()
	}
}

// setConvTiling sets the pixel block (in micro-kernel panels) and depth
// block of the convolutions, and returns a function restoring them.
func setConvTiling(panels, kc int) func() {
	op, okc := convBlockPanels, convKC
	convBlockPanels, convKC = panels, kc
	return func() { convBlockPanels, convKC = op, okc }
}

// BenchmarkConv times M2M's convolution shapes (2 FLOPs per multiply-add).
func BenchmarkConv(b *testing.B) {
	for _, c := range []struct {
		name       string
		transposed bool
		cin, h, w  int
		cout, k    int
		stride     int
		pad        int
	}{
		{"3x3_32to32_512", false, 32, 512, 512, 32, 3, 1, 1},
		{"3x3_64to64_256", false, 64, 256, 256, 64, 3, 1, 1},
		{"3x3_128to128_128", false, 128, 128, 128, 128, 3, 1, 1},
		{"3x3_260to128_128", false, 260, 128, 128, 128, 3, 1, 1},
		{"1x1_260to128_64", false, 260, 64, 64, 128, 1, 1, 0},
		{"T4x4_260to260_64", true, 260, 64, 64, 260, 4, 2, 1},
		{"T4x4_68to68_256", true, 68, 256, 256, 68, 4, 2, 1},
		{"T4x4_32to32_512", true, 32, 512, 512, 32, 4, 2, 1},
	} {
		for _, wino := range []bool{true, false} {
			name := c.name
			if c.k == 3 {
				name += map[bool]string{true: "_winograd", false: "_direct"}[wino]
			} else if !wino {
				continue
			}
			b.Run(name, func(b *testing.B) {
				defer func(old bool) { convWinograd = old }(convWinograd)
				convWinograd = wino
				rng := rand.New(rand.NewSource(1))
				x := convRand(rng, c.cin*c.h*c.w)
				wt := convRand(rng, c.cin*c.cout*c.k*c.k)
				bias := convRand(rng, c.cout)
				var oh, ow int
				var macs float64
				if c.transposed {
					oh, ow = ConvTransposeOutSize(c.h, c.k, c.stride, c.pad), ConvTransposeOutSize(c.w, c.k, c.stride, c.pad)
					macs = float64(c.cin*c.cout*c.k*c.k) * float64(c.h*c.w)
				} else {
					oh, ow = ConvOutSize(c.h, c.k, c.stride, c.pad), ConvOutSize(c.w, c.k, c.stride, c.pad)
					macs = float64(c.cin*c.cout*c.k*c.k) * float64(oh*ow)
				}
				dst := make([]float32, c.cout*oh*ow)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if c.transposed {
						ConvTranspose2dInto(dst, x, 1, c.cin, c.h, c.w, wt, c.cout, c.k, c.k, bias, c.stride, c.pad)
					} else {
						Conv2dInto(dst, x, 1, c.cin, c.h, c.w, wt, c.cout, c.k, c.k, bias, c.stride, c.pad)
					}
				}
				b.ReportMetric(2*macs*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// TestConvFused checks Conv2dFused and ConvTranspose2dFused (inputs split
// along channels, residual with nearest upsampling, LeakyReLU) against the
// naive loops on the concatenated input, at sizes that need several
// micro-kernel panels along both output channels and pixels, several depth
// blocks, and under small tilings.
func TestConvFused(t *testing.T) {
	rng := rand.New(rand.NewSource(17))
	cases := []struct {
		transposed                bool
		n, h, w, cout, k, st, pad int
		split                     []int
		rscale                    int // 0: no residual
		leaky                     bool
		panels, kc                int // tiling, 0: default
	}{
		{false, 1, 9, 37, 33, 3, 1, 1, []int{40}, 0, true, 0, 0},
		{false, 1, 9, 37, 33, 3, 1, 1, []int{40}, 0, true, 1, 64},
		{false, 2, 6, 20, 70, 3, 1, 1, []int{30, 3, 1}, 1, true, 0, 0},
		{false, 1, 8, 10, 15, 3, 1, 1, []int{7}, 2, true, 2, 5},
		{false, 1, 12, 34, 5, 1, 1, 0, []int{20, 3, 1}, 0, false, 0, 0},
		{false, 1, 11, 13, 6, 3, 2, 1, []int{4, 2}, 0, true, 0, 0},
		{true, 1, 5, 19, 33, 4, 2, 1, []int{30, 3, 1}, 0, true, 0, 0},
		{true, 2, 4, 9, 7, 4, 2, 1, []int{5}, 0, true, 1, 3},
		{true, 1, 6, 40, 70, 2, 2, 0, []int{18}, 0, false, 0, 0},
		{true, 1, 5, 7, 4, 3, 2, 1, []int{3, 2}, 0, true, 0, 0}, // phases of different depths
		{true, 1, 4, 6, 5, 4, 2, 1, []int{6}, 2, true, 0, 0},
	}
	for i, c := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if c.panels > 0 {
				defer setConvTiling(c.panels, c.kc)()
			}
			cin := 0
			for _, s := range c.split {
				cin += s
			}
			x := convRand(rng, c.n*cin*c.h*c.w)
			var wt []float32
			var oh, ow int
			var want []float32
			bias := convRand(rng, c.cout)
			if c.transposed {
				wt = convRand(rng, cin*c.cout*c.k*c.k)
				want = naiveConvTranspose2d(x, c.n, cin, c.h, c.w, wt, c.cout, c.k, c.k, bias, c.st, c.pad)
				oh, ow = ConvTransposeOutSize(c.h, c.k, c.st, c.pad), ConvTransposeOutSize(c.w, c.k, c.st, c.pad)
			} else {
				wt = convRand(rng, c.cout*cin*c.k*c.k)
				want = naiveConv2d(x, c.n, cin, c.h, c.w, wt, c.cout, c.k, c.k, bias, c.st, c.pad)
				oh, ow = ConvOutSize(c.h, c.k, c.st, c.pad), ConvOutSize(c.w, c.k, c.st, c.pad)
			}
			g := NewGraph()
			in := map[string]*Tensor{}
			var xs []*Node
			c0 := 0
			for si, sc := range c.split {
				// piece si holds channels c0..c0+sc of every image
				part := make([]float32, 0, c.n*sc*c.h*c.w)
				for b := 0; b < c.n; b++ {
					part = append(part, x[(b*cin+c0)*c.h*c.w:(b*cin+c0+sc)*c.h*c.w]...)
				}
				name := fmt.Sprint("x", si)
				xs = append(xs, g.Input(name, c.n, sc, c.h, c.w))
				in[name] = NewTensor(part, c.n, sc, c.h, c.w)
				c0 += sc
			}
			ws := []int{c.cout, cin, c.k, c.k}
			if c.transposed {
				ws = []int{cin, c.cout, c.k, c.k}
			}
			in["w"], in["b"] = NewTensor(wt, ws...), NewTensor(bias, c.cout)
			o := ConvOptions{Stride: c.st, Pad: c.pad, LeakyReLU: c.leaky, Slope: 0.2}
			if c.rscale > 0 {
				rh, rw := oh/c.rscale, ow/c.rscale
				res := convRand(rng, c.n*c.cout*rh*rw)
				in["r"] = NewTensor(res, c.n, c.cout, rh, rw)
				o.Residual, o.ResidualScale = g.Input("r", c.n, c.cout, rh, rw), c.rscale
				for p := range want {
					b, co, y, xx := p/(c.cout*oh*ow), p/(oh*ow)%c.cout, p/ow%oh, p%ow
					want[p] += res[((b*c.cout+co)*rh+y/c.rscale)*rw+xx/c.rscale]
				}
			}
			if c.leaky {
				for p, v := range want {
					if v < 0 {
						want[p] = v * 0.2
					}
				}
			}
			var y *Node
			if c.transposed {
				y = g.ConvTranspose2dFused(xs, g.Input("w", ws...), g.Input("b", c.cout), o)
			} else {
				y = g.Conv2dFused(xs, g.Input("w", ws...), g.Input("b", c.cout), o)
			}
			m, err := g.Compile()
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			if !hasShape(y, c.n, c.cout, oh, ow) {
				t.Fatalf("shape %v, want (%d, %d, %d, %d)", y.Shape(), c.n, c.cout, oh, ow)
			}
			if d := convMaxDiff(t, Values(y), want); d > 1e-4 {
				t.Errorf("max abs diff %g", d)
			}
		})
	}
}

// TestConv2dHead checks the fused conv -> LeakyReLU -> 1-channel conv
// against the naive loops.
func TestConv2dHead(t *testing.T) {
	rng := rand.New(rand.NewSource(19))
	for i, c := range []struct {
		n, cin, h, w, mid, k int
		bias                 bool
		panels, kc           int
	}{
		{1, 5, 9, 37, 32, 3, true, 0, 0},
		{2, 3, 7, 6, 8, 3, false, 0, 0},
		{1, 40, 6, 40, 17, 3, true, 1, 50},
		{1, 2, 8, 9, 4, 5, true, 0, 0},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if c.panels > 0 {
				defer setConvTiling(c.panels, c.kc)()
			}
			pad := c.k / 2
			x := convRand(rng, c.n*c.cin*c.h*c.w)
			w1 := convRand(rng, c.mid*c.cin*c.k*c.k)
			var b1 []float32
			if c.bias {
				b1 = convRand(rng, c.mid)
			}
			w2 := convRand(rng, c.mid*c.k*c.k)
			b2 := convRand(rng, 1)
			mid := naiveConv2d(x, c.n, c.cin, c.h, c.w, w1, c.mid, c.k, c.k, b1, 1, pad)
			for p, v := range mid {
				if v < 0 {
					mid[p] = v * 0.2
				}
			}
			want := naiveConv2d(mid, c.n, c.mid, c.h, c.w, w2, 1, c.k, c.k, b2, 1, pad)
			g := NewGraph()
			in := map[string]*Tensor{
				"x":  NewTensor(x, c.n, c.cin, c.h, c.w),
				"w1": NewTensor(w1, c.mid, c.cin, c.k, c.k),
				"w2": NewTensor(w2, 1, c.mid, c.k, c.k),
				"b2": NewTensor(b2, 1),
			}
			var b1n *Node
			if c.bias {
				in["b1"] = NewTensor(b1, c.mid)
				b1n = g.Input("b1", c.mid)
			}
			y := g.Conv2dHead(g.Input("x", c.n, c.cin, c.h, c.w), g.Input("w1", c.mid, c.cin, c.k, c.k), b1n,
				g.Input("w2", 1, c.mid, c.k, c.k), g.Input("b2", 1), pad, 0.2, Region{})
			m, err := g.Compile()
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			if d := convMaxDiff(t, Values(y), want); d > 1e-4 {
				t.Errorf("max abs diff %g", d)
			}
		})
	}
	g := NewGraph()
	g.Conv2dHead(g.Input("x", 1, 3, 6, 6), g.Input("w1", 4, 3, 3, 3), nil, g.Input("w2", 2, 4, 3, 3), g.Input("b2", 1), 1, 0.2, Region{})
	if g.Err() == nil {
		t.Error("two-channel head: no error")
	}
}

// TestConvWinograd compares the Winograd path of 3x3 convolutions (stride
// 1, padding 1) with the naive loops, relative to the outputs' magnitude:
// several depth blocks, odd sizes (partial tiles), small tilings.
func TestConvWinograd(t *testing.T) {
	rng := rand.New(rand.NewSource(23))
	for i, c := range []struct {
		n, cin, h, w, cout int
		panels, kc         int
	}{
		{1, 300, 7, 13, 33, 0, 0},
		{2, 5, 9, 40, 70, 0, 0},
		{1, 40, 11, 35, 17, 1, 16},
		{1, 1, 1, 1, 1, 0, 0},
		{1, 3, 2, 3, 4, 1, 2},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if c.panels > 0 {
				defer setConvTiling(c.panels, c.kc)()
			}
			x := convRand(rng, c.n*c.cin*c.h*c.w)
			wt := convRand(rng, c.cout*c.cin*9)
			b := convRand(rng, c.cout)
			want := naiveConv2d(x, c.n, c.cin, c.h, c.w, wt, c.cout, 3, 3, b, 1, 1)
			got := make([]float32, len(want))
			Conv2dInto(got, x, c.n, c.cin, c.h, c.w, wt, c.cout, 3, 3, b, 1, 1)
			var mx float64
			for _, v := range want {
				mx = max(mx, math.Abs(float64(v)))
			}
			if d := convMaxDiff(t, got, want); d > 1e-5*max(mx, 1) {
				t.Errorf("max abs diff %g (outputs up to %g)", d, mx)
			}
		})
	}
}

// TestConvTranspose2dHead checks the banded transposed convolution + head
// against the unfused ops, with bands of a few rows (halos at every band
// edge) and with and without the Winograd head.
func TestConvTranspose2dHead(t *testing.T) {
	rng := rand.New(rand.NewSource(29))
	for i, c := range []struct {
		n, cin, h, w, c, k, stride, pad, cmid, hpad int
		band                                        int
		wino                                        bool
	}{
		{1, 5, 9, 11, 6, 4, 2, 1, 7, 1, 3, true},
		{1, 5, 9, 11, 6, 4, 2, 1, 7, 1, 4, false},
		{2, 3, 6, 7, 4, 4, 2, 1, 5, 1, 5, true},
		{1, 4, 5, 6, 3, 3, 2, 1, 4, 2, 2, false},
		{1, 6, 8, 40, 32, 4, 2, 1, 32, 1, 128, true},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			defer func(b int, w bool) { convHeadBand, convWinograd = b, w }(convHeadBand, convWinograd)
			convHeadBand, convWinograd = c.band, c.wino
			hk := 2*c.hpad + 1
			in := map[string]*Tensor{
				"x":  NewTensor(convRand(rng, c.n*c.cin*c.h*c.w), c.n, c.cin, c.h, c.w),
				"wt": NewTensor(convRand(rng, c.cin*c.c*c.k*c.k), c.cin, c.c, c.k, c.k),
				"bt": NewTensor(convRand(rng, c.c), c.c),
				"w1": NewTensor(convRand(rng, c.cmid*c.c*hk*hk), c.cmid, c.c, hk, hk),
				"b1": NewTensor(convRand(rng, c.cmid), c.cmid),
				"w2": NewTensor(convRand(rng, c.cmid*hk*hk), 1, c.cmid, hk, hk),
				"b2": NewTensor(convRand(rng, 1), 1),
			}
			g := NewGraph()
			node := func(name string) *Node { return g.Input(name, in[name].Shape...) }
			fused := g.ConvTranspose2dHead(node("x"), node("wt"), node("bt"), node("w1"), node("b1"), node("w2"), node("b2"), c.stride, c.pad, c.hpad, 0.2, Region{})
			up := g.ConvTranspose2dFused([]*Node{node("x")}, node("wt"), node("bt"), ConvOptions{Stride: c.stride, Pad: c.pad, LeakyReLU: true, Slope: 0.2})
			ref := g.Conv2dHead(up, node("w1"), node("b1"), node("w2"), node("b2"), c.hpad, 0.2, Region{})
			m, err := g.Compile()
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			if !hasShape(fused, ref.Shape()...) {
				t.Fatalf("shape %v, want %v", fused.Shape(), ref.Shape())
			}
			if d := convMaxDiff(t, Values(fused), Values(ref)); d > 1e-4 {
				t.Errorf("max abs diff %g", d)
			}
		})
	}
}

// TestRegion checks that every op given an output Region computes the
// values inside it exactly as without one (bit for bit), on regions that
// cut rows, columns or both at even and odd sizes, with the Winograd path
// on and off and several convolution tilings.
func TestRegion(t *testing.T) {
	rng := rand.New(rand.NewSource(31))
	const n, cin, h, w, cout = 2, 6, 13, 37, 9
	in := map[string]*Tensor{
		"x":   NewTensor(convRand(rng, n*cin*h*w), n, cin, h, w),
		"x2":  NewTensor(convRand(rng, n*3*h*w), n, 3, h, w),
		"w3":  NewTensor(convRand(rng, cout*(cin+3)*9), cout, cin+3, 3, 3),
		"b":   NewTensor(convRand(rng, cout), cout),
		"res": NewTensor(convRand(rng, n*cout*h*w), n, cout, h, w),
		"wt":  NewTensor(convRand(rng, cin*cout*16), cin, cout, 4, 4),
		"w1":  NewTensor(convRand(rng, 5*cout*9), 5, cout, 9/3, 3),
		"b1":  NewTensor(convRand(rng, 5), 5),
		"w2":  NewTensor(convRand(rng, 5*9), 1, 5, 3, 3),
		"b2":  NewTensor(convRand(rng, 1), 1),
		"wh":  NewTensor(convRand(rng, 5*cin*9), 5, cin, 3, 3),
	}
	for _, r := range []Region{{Rows: 5}, {Cols: 11}, {Rows: 6, Cols: 20}, {Rows: 1, Cols: 1}, {Rows: 100, Cols: 100}} {
		for _, wino := range []bool{true, false} {
			for _, tiling := range [][2]int{{0, 0}, {1, 8}} {
				t.Run(fmt.Sprintf("%dx%d/wino=%v/tiling=%v", r.Rows, r.Cols, wino, tiling), func(t *testing.T) {
					defer func(b bool) { convWinograd = b }(convWinograd)
					convWinograd = wino
					if tiling[0] > 0 {
						defer setConvTiling(tiling[0], tiling[1])()
					}
					defer func(b int) { convHeadBand = b }(convHeadBand)
					convHeadBand = 5
					g := NewGraph()
					node := func(name string) *Node { return g.Input(name, in[name].Shape...) }
					x, x2 := node("x"), node("x2")
					type pair struct {
						name      string
						full, reg *Node
						scale     int // the region is of an output scale times larger
					}
					conv := func(r Region) *Node {
						return g.Conv2dFused([]*Node{x, x2}, node("w3"), node("b"),
							ConvOptions{Stride: 1, Pad: 1, LeakyReLU: true, Slope: 0.2, Residual: node("res"), Region: r})
					}
					convT := func(r Region) *Node {
						return g.ConvTranspose2dFused([]*Node{x}, node("wt"), node("b"), ConvOptions{Stride: 2, Pad: 1, Region: r})
					}
					head := func(r Region) *Node {
						return g.Conv2dHead(x, node("wh"), node("b1"), node("w2"), node("b2"), 1, 0.2, r)
					}
					tHead := func(r Region) *Node {
						return g.ConvTranspose2dHead(x, node("wt"), node("b"), node("w1"), node("b1"), node("w2"), node("b2"), 2, 1, 1, 0.2, r)
					}
					r2 := Region{Rows: 2 * r.Rows, Cols: 2 * r.Cols}
					pairs := []pair{
						{"conv", conv(Region{}), conv(r), 1},
						{"convT", convT(Region{}), convT(r2), 2},
						{"head", head(Region{}), head(r), 1},
						{"convT head", tHead(Region{}), tHead(r2), 2},
						{"upsample", g.UpsampleBilinearRegion(x, 3, Region{}), g.UpsampleBilinearRegion(x, 3, Region{Rows: 3 * r.Rows, Cols: 3 * r.Cols}), 3},
						{"tanh unit", g.TanhUnitRegion(x, Region{}), g.TanhUnitRegion(x, r), 1},
					}
					m, err := g.Compile()
					if err != nil {
						t.Fatal(err)
					}
					if err := m.Run(context.Background(), in); err != nil {
						t.Fatal(err)
					}
					for _, p := range pairs {
						full, reg := Values(p.full), Values(p.reg)
						s := p.full.Shape()
						rows, cols := (Region{Rows: p.scale * r.Rows, Cols: p.scale * r.Cols}).limits(s[2], s[3])
						fv, rv := full, reg
						for pl := 0; pl < s[0]*s[1]; pl++ {
							for y := 0; y < rows; y++ {
								for xx := 0; xx < cols; xx++ {
									i := (pl*s[2]+y)*s[3] + xx
									if fv[i] != rv[i] {
										t.Fatalf("%s: plane %d (%d, %d): %g with the region, %g without", p.name, pl, y, xx, rv[i], fv[i])
									}
								}
							}
						}
					}
				})
			}
		}
	}
}
