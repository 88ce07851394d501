package gdino

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/mam-go/mam-go/nn"
)

// imgRandom returns n values in [-scale, scale).
func imgRandom(rng *rand.Rand, n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = (2*rng.Float32() - 1) * scale
	}
	return v
}

// imgFinite fails the test when a value of n is NaN or infinite.
func imgFinite(t *testing.T, name string, n *nn.Node) {
	t.Helper()
	for i, v := range nn.Values(n) {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("%s: value %d is %v", name, i, v)
		}
	}
}

// swinSide is a side of the map after the patch embedding and i patch
// mergings: ceil(n / patch), then rounded up halves.
func swinSide(n, patch, i int) int {
	s := (n + patch - 1) / patch
	for ; i > 0; i-- {
		s = (s + 1) / 2
	}
	return s
}

// Odd input sizes pad at every stage: the patch embedding, the windows of
// every block and every PatchMerging; a 1x1 image is one token throughout,
// and 2x1333 is what Swin-T's preprocessing makes of a 2000x3 photo.
func TestImageBackboneOddSizes(t *testing.T) {
	cfg := Tiny()
	p := nn.NewParams(loadTinyStore(t))
	b := newImageBackbone(p, cfg)
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	for _, sz := range [][2]int{{1, 1}, {3, 2}, {37, 53}, {61, 29}, {113, 101}, {4, 200}, {2, 1333}} {
		h, w := sz[0], sz[1]
		g := nn.NewGraph()
		dump := map[string]*nn.Node{}
		srcs, pos, shapes := b.forward(g, g.Input("image", 1, 3, h, w), dump)
		imgRun(t, g, map[string][]float32{"image": imgRandom(rng, 3*h*w, 2)})
		for k, i := range cfg.ReturnIndices {
			want := [2]int{swinSide(h, cfg.SwinPatch, i), swinSide(w, cfg.SwinPatch, i)}
			if shapes[k] != want {
				t.Fatalf("%dx%d: level %d is %v, want %v", h, w, k, shapes[k], want)
			}
		}
		last := shapes[len(cfg.ReturnIndices)-1]
		if want := [2]int{(last[0] + 1) / 2, (last[1] + 1) / 2}; shapes[3] != want {
			t.Fatalf("%dx%d: level 3 is %v, want %v", h, w, shapes[3], want)
		}
		for l := range srcs {
			s := shapes[l]
			if fmt.Sprint(nn.Shape(srcs[l])) != fmt.Sprint([]int{1, 256, s[0], s[1]}) || fmt.Sprint(nn.Shape(pos[l])) != fmt.Sprint(nn.Shape(srcs[l])) {
				t.Fatalf("%dx%d: level %d: src %v, pos %v", h, w, l, nn.Shape(srcs[l]), nn.Shape(pos[l]))
			}
		}
		for name, n := range dump {
			imgFinite(t, fmt.Sprintf("%dx%d %s", h, w, name), n)
		}
	}
}

// patchify and the PatchMerging gather against the reference's explicit
// padding and slicing, on odd sizes.
func TestSwinPadding(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, sz := range [][2]int{{5, 7}, {1, 1}, {8, 3}} {
		h, w, ps := sz[0], sz[1], 4
		x := imgRandom(rng, 3*h*w, 1)
		g := nn.NewGraph()
		cols, hp, wp := patchify(g, g.Input("x", 1, 3, h, w), ps)
		imgRun(t, g, map[string][]float32{"x": x})
		got := nn.Values(cols)
		for py := 0; py < hp; py++ {
			for px := 0; px < wp; px++ {
				for ch := 0; ch < 3; ch++ {
					for ky := 0; ky < ps; ky++ {
						for kx := 0; kx < ps; kx++ {
							y, xx := py*ps+ky, px*ps+kx
							var want float32
							if y < h && xx < w {
								want = x[(ch*h+y)*w+xx]
							}
							if v := got[((py*wp+px)*3+ch)*ps*ps+ky*ps+kx]; v != want {
								t.Fatalf("patchify %dx%d: patch (%d,%d) ch %d (%d,%d): %v, want %v", h, w, py, px, ch, ky, kx, v, want)
							}
						}
					}
				}
			}
		}
	}
	// PatchMerging with identity norm and reduction = the gather itself.
	for _, sz := range [][2]int{{5, 3}, {1, 1}, {2, 7}} {
		h, w, c := sz[0], sz[1], 2
		p := nn.RandomParams(1, func(name string, shape []int) (float64, float64) { return 0, 0 })
		m := newPatchMerging(p, c)
		p.Set("norm.weight", ones(4*c))
		red := make([]float32, 2*c*4*c)
		for i := 0; i < 2*c; i++ {
			red[i*4*c+i] = 1 // outputs = the first 2c normalised inputs
		}
		p.Set("reduction.weight", red)
		x := imgRandom(rng, h*w*c, 1)
		g := nn.NewGraph()
		out, h2, w2 := m.forward(g, g.Input("x", 1, h*w, c), h, w)
		imgRun(t, g, map[string][]float32{"x": x})
		got := nn.Values(out)
		at := func(y, xx, k int) float64 {
			if y >= h || xx >= w {
				return 0
			}
			return float64(x[(y*w+xx)*c+k])
		}
		for y := 0; y < h2; y++ {
			for xx := 0; xx < w2; xx++ {
				// cat(x0, x1, x2, x3) = (even, even), (odd row), (odd col), (odd, odd)
				var cat []float64
				for _, d := range [][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
					for k := 0; k < c; k++ {
						cat = append(cat, at(2*y+d[0], 2*xx+d[1], k))
					}
				}
				var mean, vs float64
				for _, v := range cat {
					mean += v
				}
				mean /= float64(len(cat))
				for _, v := range cat {
					vs += (v - mean) * (v - mean)
				}
				sd := math.Sqrt(vs/float64(len(cat)) + swinEps)
				for k := 0; k < 2*c; k++ {
					want := (cat[k] - mean) / sd
					if v := got[(y*w2+xx)*2*c+k]; math.Abs(float64(v)-want) > 1e-5 {
						t.Fatalf("merge %dx%d: (%d,%d) %d: %v, want %v", h, w, y, xx, k, v, want)
					}
				}
			}
		}
	}
}

func ones(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// The Swin-T preset builds from random parameters (the schema its
// constructors ask for) and runs at a small size.
func TestImageBackboneRandomSwinT(t *testing.T) {
	cfg := SwinTOGC()
	p := nn.RandomParams(5, nil)
	b := newImageBackbone(p, cfg)
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	h, w := 75, 130
	g := nn.NewGraph()
	srcs, pos, shapes := b.forward(g, g.Input("image", 1, 3, h, w), nil)
	imgRun(t, g, map[string][]float32{"image": imgRandom(rand.New(rand.NewSource(3)), 3*h*w, 2)})
	if want := "[[10 17] [5 9] [3 5] [2 3]]"; fmt.Sprint(shapes) != want {
		t.Fatalf("level shapes %v, want %s", shapes, want)
	}
	for l := range srcs {
		imgFinite(t, fmt.Sprintf("src %d", l), srcs[l])
		imgFinite(t, fmt.Sprintf("pos %d", l), pos[l])
	}
	// Every tensor the checkpoint has for the image side, and no other.
	s := p.Store()
	want := 0
	for i, d := range cfg.SwinDepths {
		want += d * 13 // per block: 2 norms x 2, qkv x 2, proj x 2, table, fc1 x 2, fc2 x 2
		if i < len(cfg.SwinDepths)-1 {
			want += 3 // downsample norm x 2, reduction
		}
	}
	want += 4 + 2*len(cfg.ReturnIndices) + 4*cfg.NumLevels // patch_embed, norm<i>, input_proj
	if n := len(s.Names()); n != want {
		t.Errorf("%d parameters drawn, want %d", n, want)
	}
}

// Configurations the backbone cannot be built from are errors, not panics.
func TestImageBackboneBadConfig(t *testing.T) {
	for name, edit := range map[string]func(c *Config){
		"heads":   func(c *Config) { c.SwinHeads = c.SwinHeads[:2] },
		"patch":   func(c *Config) { c.SwinPatch = 0 },
		"window":  func(c *Config) { c.SwinWindow = 0 },
		"indices": func(c *Config) { c.ReturnIndices = []int{1, 5, 3} },
		"divide":  func(c *Config) { c.SwinHeads = []int{5, 2, 2, 3} },
		"hidden":  func(c *Config) { c.HiddenDim = 100 },
		"levels":  func(c *Config) { c.NumLevels = 2 },
	} {
		cfg := Tiny()
		edit(&cfg)
		p := nn.RandomParams(1, nil)
		b := newImageBackbone(p, cfg)
		g := nn.NewGraph()
		srcs, _, _ := b.forward(g, g.Input("image", 1, 3, 40, 40), nil)
		if g.Err() == nil || srcs != nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A wrong input is an error too.
	p := nn.RandomParams(1, nil)
	b := newImageBackbone(p, Tiny())
	g := nn.NewGraph()
	if srcs, _, _ := b.forward(g, g.Input("image", 1, 4, 40, 40), nil); g.Err() == nil || srcs != nil {
		t.Error("4-channel input: no error")
	}
}

// BenchmarkSwinTBackbone runs the image side of Swin-T OGC (backbone, neck,
// position embeddings) on an 800x1065 input, random weights.
func BenchmarkSwinTBackbone(b *testing.B) {
	cfg := SwinTOGC()
	p := nn.RandomParams(1, nil)
	bb := newImageBackbone(p, cfg)
	h, w := 800, 1065
	g := nn.NewGraph()
	bb.forward(g, g.Input("image", 1, 3, h, w), nil)
	m, err := g.Compile()
	if err != nil {
		b.Fatal(err)
	}
	in := map[string][]float32{"image": imgRandom(rand.New(rand.NewSource(1)), 3*h*w, 2)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.Exec(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}
