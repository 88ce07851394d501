//go:build !purego && amd64

package nn

import (
	"math"
	"math/rand"
	"testing"
	"unsafe"
)

// TestDeformTabLayout checks deformTab against the offsets the assembly
// uses (T_* in ms_deform_attn_amd64.s).
func TestDeformTabLayout(t *testing.T) {
	var tab deformTab
	for _, f := range []struct {
		name      string
		got, want uintptr
	}{
		{"wHalf", unsafe.Offsetof(tab.wHalf), 0}, {"hHalf", unsafe.Offsetof(tab.hHalf), 256},
		{"wF", unsafe.Offsetof(tab.wF), 512}, {"hF", unsafe.Offsetof(tab.hF), 768},
		{"wI", unsafe.Offsetof(tab.wI), 1024}, {"wm2", unsafe.Offsetof(tab.wm2), 1280},
		{"hm2", unsafe.Offsetof(tab.hm2), 1536}, {"ws", unsafe.Offsetof(tab.ws), 1792},
		{"base", unsafe.Offsetof(tab.base), 2048}, {"stride", unsafe.Offsetof(tab.stride), 2304},
		{"dstStep", unsafe.Offsetof(tab.dstStep), 2336}, {"locStep", unsafe.Offsetof(tab.locStep), 2344},
		{"attnStep", unsafe.Offsetof(tab.attnStep), 2352}, {"valStep", unsafe.Offsetof(tab.valStep), 2360},
		{"offs", unsafe.Offsetof(tab.offs), 2368}, {"wts", unsafe.Offsetof(tab.wts), 10560},
	} {
		if f.got != f.want {
			t.Errorf("deformTab.%s at %d, the assembly reads %d", f.name, f.got, f.want)
		}
	}
}

// TestDeformItems32 compares the assembly sampler with the Go taps on the
// detector's layout (8 heads of 32 channels, 4 levels, 4 points, and 2
// points: one group of slots), with locations on and past the maps' edges
// and non-finite ones, on few queries and on enough to be reordered
// (deformOrder).
func TestDeformItems32(t *testing.T) {
	if fastMathISA < isaAVX2 {
		t.Skip("no AVX2")
	}
	rng := rand.New(rand.NewSource(21))
	shapes := [][2]int{{13, 17}, {7, 9}, {4, 5}, {1, 2}}
	for _, c := range [][2]int{{4, 200}, {2, 200}, {4, 1100}} {
		points, nq := c[0], c[1]
		heads, hd := 8, 32
		value, starts, loc, attn := msDeformCase(rng, shapes, heads, hd, nq, points)
		// Edges: pixel centres, the map's borders, just inside and outside
		// (-1, size) in pixels, and non-finite values.
		edges := []float32{0, 1, 0.5 / 17, 1 - 0.5/17, -0.5 / 17, 1 + 0.5/17, -0.49 / 17, 1 + 0.49/17,
			float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), -1e30, 1e30}
		for i := 0; i < len(loc)/4; i++ {
			loc[rng.Intn(len(loc))] = edges[rng.Intn(len(edges))]
		}
		if !deformFast(shapes, heads, hd, points, len(value)) {
			t.Fatal("no fast path for the detector's layout")
		}
		got, want := make([]float32, nq*heads*hd), make([]float32, nq*heads*hd)
		if err := msDeformAttn(got, value, shapes, starts, heads, hd, loc, attn, nq, points, true); err != nil {
			t.Fatal(err)
		}
		if err := msDeformAttn(want, value, shapes, starts, heads, hd, loc, attn, nq, points, false); err != nil {
			t.Fatal(err)
		}
		ref := msDeformRef(value, shapes, starts, heads, hd, loc, attn, nq, points)
		for i := range got {
			if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= 1e-6) {
				t.Fatalf("points %d, %d queries: element %d: assembly %v, Go %v", points, nq, i, got[i], want[i])
			}
			if d := math.Abs(float64(got[i]) - ref[i]); !(d <= 1e-5) {
				t.Fatalf("points %d, %d queries: element %d: assembly %v, reference %v", points, nq, i, got[i], ref[i])
			}
		}
	}
}

// TestDeformOrder checks that the tile order is a permutation, whatever
// the locations (NaN, infinities, outside the map).
func TestDeformOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(22))
	shapes := [][2]int{{30, 41}, {15, 21}}
	heads, lp, nq := 2, 8, 1500
	loc := make([]float32, 2*nq*heads*lp)
	special := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), -3, 5, 0, 1}
	for i := range loc {
		loc[i] = rng.Float32()
		if rng.Intn(5) == 0 {
			loc[i] = special[rng.Intn(len(special))]
		}
	}
	order := deformOrder(shapes, heads, lp, loc, nq)
	seen := make([]bool, nq)
	for _, q := range order {
		if seen[q] {
			t.Fatalf("query %d twice", q)
		}
		seen[q] = true
	}
	if len(order) != nq {
		t.Fatalf("%d queries ordered, want %d", len(order), nq)
	}
}
