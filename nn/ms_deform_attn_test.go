package nn

import (
	"context"
	"math"
	"math/rand"
	"testing"
)

// msDeformRef is the sampling core written as grid_sample's reference
// formula, in float64: unnormalise, floor, four weighted neighbours, zero
// outside.
func msDeformRef(value []float32, shapes [][2]int, starts []int, heads, hd int, loc, attn []float32, nq, points int) []float64 {
	dim := heads * hd
	levels := len(shapes)
	out := make([]float64, nq*dim)
	for q := 0; q < nq; q++ {
		for h := 0; h < heads; h++ {
			for l, sh := range shapes {
				H, W := sh[0], sh[1]
				for p := 0; p < points; p++ {
					i := ((q*heads+h)*levels+l)*points + p
					ix := float64(loc[2*i])*float64(W) - 0.5
					iy := float64(loc[2*i+1])*float64(H) - 0.5
					x0, y0 := math.Floor(ix), math.Floor(iy)
					for _, n := range [4][2]float64{{x0, y0}, {x0 + 1, y0}, {x0, y0 + 1}, {x0 + 1, y0 + 1}} {
						xi, yi := int(n[0]), int(n[1])
						if xi < 0 || xi >= W || yi < 0 || yi >= H {
							continue
						}
						wt := (1 - math.Abs(ix-n[0])) * (1 - math.Abs(iy-n[1])) * float64(attn[i])
						row := (starts[l] + yi*W + xi) * dim
						for c := 0; c < hd; c++ {
							out[q*dim+h*hd+c] += wt * float64(value[row+h*hd+c])
						}
					}
				}
			}
		}
	}
	return out
}

func msDeformCase(rng *rand.Rand, shapes [][2]int, heads, hd, nq, points int) (value []float32, starts []int, loc, attn []float32) {
	s := 0
	for _, sh := range shapes {
		starts = append(starts, s)
		s += sh[0] * sh[1]
	}
	value = make([]float32, s*heads*hd)
	for i := range value {
		value[i] = rng.Float32()*2 - 1
	}
	n := nq * heads * len(shapes) * points
	loc = make([]float32, 2*n)
	for i := range loc {
		loc[i] = rng.Float32()*1.4 - 0.2 // some outside [0, 1]
	}
	attn = make([]float32, n)
	for i := range attn {
		attn[i] = rng.Float32()
	}
	return
}

func TestMSDeformAttnInto(t *testing.T) {
	for _, hd := range []int{5, 32} { // 32: the AVX2 kernel's width
		testMSDeformAttnInto(t, hd)
	}
}

func testMSDeformAttnInto(t *testing.T, hd int) {
	rng := rand.New(rand.NewSource(1))
	shapes := [][2]int{{7, 9}, {4, 5}, {2, 3}, {1, 1}}
	heads, nq, points := 3, 130, 2
	value, starts, loc, attn := msDeformCase(rng, shapes, heads, hd, nq, points)
	// exact corner cases: the centres of the first and last pixels, the
	// map's edges, and non-finite locations
	loc[0], loc[1] = 0.5/9, 0.5/7
	loc[2], loc[3] = 1-0.5/9, 1-0.5/7
	loc[4], loc[5] = 0, 1
	loc[6], loc[7] = float32(math.NaN()), 0.5
	loc[8], loc[9] = float32(math.Inf(1)), float32(math.Inf(-1))
	got := make([]float32, nq*heads*hd)
	if err := MSDeformAttnInto(got, value, shapes, starts, heads, hd, loc, attn, nq, points); err != nil {
		t.Fatal(err)
	}
	want := msDeformRef(value, shapes, starts, heads, hd, loc, attn, nq, points)
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= 1e-5) {
			t.Fatalf("head width %d: element %d: got %v want %v", hd, i, got[i], want[i])
		}
	}
}

// TestDeformTaps compares the accumulation kernel this CPU uses with the
// plain Go one, for odd and even tap counts.
func TestDeformTaps(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	v := make([]float32, 64*32)
	for i := range v {
		v[i] = rng.Float32()*2 - 1
	}
	for taps := 0; taps <= 7; taps++ {
		off, wt := make([]int, taps), make([]float32, taps)
		for k := range off {
			off[k], wt[k] = rng.Intn(64)*32, rng.Float32()
		}
		got, want := make([]float32, 32), make([]float32, 32)
		for c := range got {
			got[c] = float32(c)
			want[c] = float32(c)
		}
		deformTaps(got, v, off, wt)
		deformTapsGo(want, v, off, wt)
		for c := range got {
			if math.Abs(float64(got[c]-want[c])) > 1e-5 {
				t.Fatalf("%d taps, channel %d: got %v want %v", taps, c, got[c], want[c])
			}
		}
	}
}

func TestMSDeformAttnErrors(t *testing.T) {
	dst := make([]float32, 8)
	if err := MSDeformAttnInto(dst, make([]float32, 8), [][2]int{{2, 2}}, []int{1}, 2, 1, nil, nil, 0, 1); err == nil {
		t.Error("wrong level start accepted")
	}
	if err := MSDeformAttnInto(dst, make([]float32, 3), [][2]int{{2, 2}}, []int{0}, 2, 1, make([]float32, 8), make([]float32, 4), 2, 1); err == nil {
		t.Error("short value accepted")
	}
	// no query, no level: nothing to do
	if err := MSDeformAttnInto(nil, nil, nil, nil, 8, 32, nil, nil, 0, 4); err != nil {
		t.Error(err)
	}
}

func TestGraphMSDeformAttn(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	shapes := [][2]int{{3, 4}, {2, 2}}
	heads, hd, nq, points := 2, 4, 5, 3
	value, starts, loc, attn := msDeformCase(rng, shapes, heads, hd, nq, points)
	g := NewGraph()
	v := g.Input("value", 16, heads*hd)
	l := g.Input("loc", nq, heads, len(shapes), points, 2)
	a := g.Input("attn", nq, heads, len(shapes)*points)
	out := g.MSDeformAttn(v, l, a, shapes, starts, heads, points)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(context.Background(), map[string][]float32{"value": value, "loc": loc, "attn": attn}); err != nil {
		t.Fatal(err)
	}
	want := msDeformRef(value, shapes, starts, heads, hd, loc, attn, nq, points)
	got := Values(out)
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= 1e-5) {
			t.Fatalf("element %d: got %v want %v", i, got[i], want[i])
		}
	}
	g2 := NewGraph()
	g2.MSDeformAttn(g2.Input("value", 15, 8), g2.Input("loc", 2, 2, 2, 3, 2), g2.Input("attn", 2, 2, 6), shapes, starts, heads, points)
	if g2.Err() == nil {
		t.Error("value rows not matching the levels accepted")
	}
}

// BenchmarkMSDeformAttnEncoder is one encoder layer's sampling core at the
// detector's full size (800x1065 input: four levels, 17821 queries, 8
// heads of 32 channels, 4 points), each query sampling within a few pixels
// of its own position on every level.
func BenchmarkMSDeformAttnEncoder(b *testing.B) {
	shapes := [][2]int{{100, 134}, {50, 67}, {25, 34}, {13, 17}}
	heads, hd, points := 8, 32, 4
	rng := rand.New(rand.NewSource(3))
	var starts []int
	var ref [][2]float32
	s := 0
	for _, sh := range shapes {
		starts = append(starts, s)
		s += sh[0] * sh[1]
		for y := 0; y < sh[0]; y++ {
			for x := 0; x < sh[1]; x++ {
				ref = append(ref, [2]float32{(float32(x) + 0.5) / float32(sh[1]), (float32(y) + 0.5) / float32(sh[0])})
			}
		}
	}
	nq, levels := s, len(shapes)
	value := randFloats(rng, s*heads*hd)
	loc := make([]float32, nq*heads*levels*points*2)
	attn := make([]float32, nq*heads*levels*points)
	for q := 0; q < nq; q++ {
		for h := 0; h < heads; h++ {
			for l, sh := range shapes {
				for p := 0; p < points; p++ {
					i := ((q*heads+h)*levels+l)*points + p
					loc[2*i] = ref[q][0] + (rng.Float32()*4-2)/float32(sh[1])
					loc[2*i+1] = ref[q][1] + (rng.Float32()*4-2)/float32(sh[0])
					attn[i] = rng.Float32() / float32(levels*points)
				}
			}
		}
	}
	dst := make([]float32, nq*heads*hd)
	for _, fast := range []bool{true, false} {
		b.Run(map[bool]string{true: "fast", false: "go"}[fast], func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if err := msDeformAttn(dst, value, shapes, starts, heads, hd, loc, attn, nq, points, fast); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestMSDeformAttnProj compares the core over a projected value, gathered
// then projected, with the projection followed by MSDeformAttnInto, and
// the gather with its Go version.
func TestMSDeformAttnProj(t *testing.T) {
	rng := rand.New(rand.NewSource(23))
	shapes := [][2]int{{11, 13}, {6, 7}, {3, 4}, {2, 2}}
	for _, c := range []struct{ heads, hd, dimIn, points, nq int }{{8, 32, 256, 4, 70}, {3, 5, 7, 2, 30}, {2, 32, 64, 2, 40}} {
		_, starts, loc, attn := msDeformCase(rng, shapes, c.heads, c.hd, c.nq, c.points)
		s := starts[len(starts)-1] + shapes[len(shapes)-1][0]*shapes[len(shapes)-1][1]
		loc[0], loc[3] = float32(math.NaN()), 1.2
		memory := randFloats(rng, s*c.dimIn)
		dim := c.heads * c.hd
		w, b := randFloats(rng, dim*c.dimIn), randFloats(rng, dim)
		value := make([]float32, s*dim)
		LinearRows(value, memory, s, c.dimIn, w, dim, b)
		want := make([]float32, c.nq*dim)
		if err := MSDeformAttnInto(want, value, shapes, starts, c.heads, c.hd, loc, attn, c.nq, c.points); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, c.nq*dim)
		if err := MSDeformAttnProjInto(got, memory, c.dimIn, w, b, shapes, starts, c.heads, c.hd, loc, attn, c.nq, c.points); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if d := math.Abs(float64(got[i] - want[i])); !(d <= 1e-4*math.Max(1, math.Abs(float64(want[i])))) {
				t.Fatalf("%+v: element %d: %v, want %v", c, i, got[i], want[i])
			}
		}
		g1, g2 := make([]float32, c.nq*c.heads*c.dimIn), make([]float32, c.nq*c.heads*c.dimIn)
		s1, s2 := make([]float32, c.nq*c.heads), make([]float32, c.nq*c.heads)
		msDeformGather(g1, s1, memory, c.dimIn, shapes, starts, c.heads, loc, attn, c.nq, c.points)
		msDeformGatherGo(g2, s2, memory, c.dimIn, shapes, starts, c.heads, loc, attn, c.nq, c.points)
		for i := range g1 {
			if d := math.Abs(float64(g1[i] - g2[i])); !(d <= 1e-5) {
				t.Fatalf("%+v: gathered %d: %v, Go %v", c, i, g1[i], g2[i])
			}
		}
		for i := range s1 {
			if d := math.Abs(float64(s1[i] - s2[i])); !(d <= 1e-5) {
				t.Fatalf("%+v: weight sum %d: %v, Go %v", c, i, s1[i], s2[i])
			}
		}
	}
}
