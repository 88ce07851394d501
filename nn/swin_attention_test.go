package nn

import (
	"context"
	"math"
	"math/rand"
	"testing"
)

// swinAttentionNaive is SwinTransformerBlock's attention half written out
// step by step as the reference does (pad, roll, window partition,
// WindowAttention with the index buffer built as the reference builds it,
// window reverse, roll back, crop, residual), in float64, after norm1
// when normW is not nil.
func swinAttentionNaive(x []float32, h, w, c, heads, ws, shift int, normW, normB []float32, qkvW, qkvB, projW, projB, table []float32) []float64 {
	hp := (h + ws - 1) / ws * ws
	wp := (w + ws - 1) / ws * ws
	// norm1, then pad: (hp, wp, c)
	padded := make([]float64, hp*wp*c)
	for y := 0; y < h; y++ {
		for xx := 0; xx < w; xx++ {
			tok := x[(y*w+xx)*c : (y*w+xx+1)*c]
			var mean, vs float64
			for _, v := range tok {
				mean += float64(v)
			}
			mean /= float64(c)
			for _, v := range tok {
				vs += (float64(v) - mean) * (float64(v) - mean)
			}
			sd := math.Sqrt(vs/float64(c) + 1e-5)
			for k := 0; k < c; k++ {
				v := float64(tok[k])
				if normW != nil {
					v = (v-mean)/sd*float64(normW[k]) + float64(normB[k])
				}
				padded[(y*wp+xx)*c+k] = v
			}
		}
	}
	// roll by -shift: shifted[y][x] = padded[(y+shift)%hp][(x+shift)%wp]
	shifted := make([]float64, len(padded))
	for y := 0; y < hp; y++ {
		for xx := 0; xx < wp; xx++ {
			s := (((y+shift)%hp)*wp + (xx+shift)%wp) * c
			copy(shifted[(y*wp+xx)*c:(y*wp+xx+1)*c], padded[s:s+c])
		}
	}
	// the mask image: regions over the padded map
	img := make([]int, hp*wp)
	if shift > 0 {
		cuts := func(l int) [][2]int { return [][2]int{{0, l - ws}, {l - ws, l - shift}, {l - shift, l}} }
		cnt := 0
		for _, hs := range cuts(hp) {
			for _, wsl := range cuts(wp) {
				for y := max(hs[0], 0); y < hs[1]; y++ {
					for xx := max(wsl[0], 0); xx < wsl[1]; xx++ {
						img[y*wp+xx] = cnt
					}
				}
				cnt++
			}
		}
	}
	// relative_position_index as the reference computes it
	n := ws * ws
	index := make([]int, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			r0 := (i/ws - j/ws) + ws - 1
			r1 := (i%ws - j%ws) + ws - 1
			index[i*n+j] = r0*(2*ws-1) + r1
		}
	}
	hd := c / heads
	scale := math.Pow(float64(hd), -0.5)
	outShifted := make([]float64, len(padded))
	for wy := 0; wy < hp/ws; wy++ {
		for wx := 0; wx < wp/ws; wx++ {
			pos := func(t int) int { return (wy*ws+t/ws)*wp + wx*ws + t%ws }
			// qkv (n, 3c)
			qkv := make([]float64, n*3*c)
			for t := 0; t < n; t++ {
				xin := shifted[pos(t)*c : pos(t)*c+c]
				for o := 0; o < 3*c; o++ {
					s := float64(qkvB[o])
					for k := 0; k < c; k++ {
						s += xin[k] * float64(qkvW[o*c+k])
					}
					qkv[t*3*c+o] = s
				}
			}
			merged := make([]float64, n*c)
			for hh := 0; hh < heads; hh++ {
				for i := 0; i < n; i++ {
					att := make([]float64, n)
					mx := math.Inf(-1)
					for j := 0; j < n; j++ {
						var s float64
						for d := 0; d < hd; d++ {
							s += qkv[i*3*c+hh*hd+d] * scale * qkv[j*3*c+c+hh*hd+d]
						}
						s += float64(table[index[i*n+j]*heads+hh])
						if shift > 0 && img[pos(i)] != img[pos(j)] {
							s += -100
						}
						att[j] = s
						mx = math.Max(mx, s)
					}
					var sum float64
					for j := range att {
						att[j] = math.Exp(att[j] - mx)
						sum += att[j]
					}
					for d := 0; d < hd; d++ {
						var s float64
						for j := 0; j < n; j++ {
							s += att[j] / sum * qkv[j*3*c+2*c+hh*hd+d]
						}
						merged[i*c+hh*hd+d] = s
					}
				}
			}
			for t := 0; t < n; t++ {
				for o := 0; o < c; o++ {
					s := float64(projB[o])
					for k := 0; k < c; k++ {
						s += merged[t*c+k] * float64(projW[o*c+k])
					}
					outShifted[pos(t)*c+o] = s
				}
			}
		}
	}
	// roll back by +shift, crop, residual
	out := make([]float64, h*w*c)
	for y := 0; y < h; y++ {
		for xx := 0; xx < w; xx++ {
			// x[y][x] = outShifted[(y-shift) mod hp][(x-shift) mod wp]
			sy, sx := (y-shift+hp)%hp, (xx-shift+wp)%wp
			for k := 0; k < c; k++ {
				out[(y*w+xx)*c+k] = float64(x[(y*w+xx)*c+k]) + outShifted[(sy*wp+sx)*c+k]
			}
		}
	}
	return out
}

func swinRand(rng *rand.Rand, n int, scale float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = (rng.Float32()*2 - 1) * scale
	}
	return s
}

func TestSwinWindowAttentionInto(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for _, tc := range []struct {
		h, w, c, heads, ws, shift int
		norm                      bool
	}{
		{7, 7, 8, 2, 7, 0, false},
		{7, 7, 8, 2, 7, 3, true},
		{25, 34, 12, 1, 7, 3, true}, // the golden stage 0: padding and shift
		{13, 17, 24, 2, 7, 0, true},
		{4, 5, 16, 4, 7, 3, true}, // a map smaller than one window
		{1, 1, 6, 3, 7, 3, false},
		{30, 23, 16, 2, 5, 2, true},  // another window and shift
		{16, 40, 8, 1, 4, 2, true},   // no padding, several windows per task
		{9, 12, 40, 2, 7, 3, true},   // head width 20: not a whole B panel
		{15, 8, 96, 3, 7, 3, false},  // Swin-T's stage 0 width
		{8, 9, 48, 12, 7, 3, true},   // head width 4
		{12, 12, 64, 2, 12, 6, true}, // Swin-B's window
	} {
		n := tc.h * tc.w
		c := tc.c
		x := swinRand(rng, n*c, 2)
		var normW, normB []float32
		if tc.norm {
			normW, normB = swinRand(rng, c, 1), swinRand(rng, c, 0.5)
		}
		qkvW, qkvB := swinRand(rng, 3*c*c, 0.5), swinRand(rng, 3*c, 0.5)
		projW, projB := swinRand(rng, c*c, 0.5), swinRand(rng, c, 0.5)
		table := swinRand(rng, (2*tc.ws-1)*(2*tc.ws-1)*tc.heads, 3)
		got := make([]float32, n*c)
		for i := range got {
			got[i] = float32(math.NaN()) // every value must be written
		}
		wt := &SwinWindowWeights{NormW: normW, NormB: normB, Eps: 1e-5, QKVW: qkvW, QKVB: qkvB, ProjW: projW, ProjB: projB, Table: table}
		SwinWindowAttentionInto(got, x, tc.h, tc.w, c, tc.heads, tc.ws, tc.shift, wt)
		want := swinAttentionNaive(x, tc.h, tc.w, c, tc.heads, tc.ws, tc.shift, normW, normB, qkvW, qkvB, projW, projB, table)
		var worst float64
		for i := range want {
			d := math.Abs(float64(got[i]) - want[i])
			if !(d <= 1e-4*(1+math.Abs(want[i]))) {
				t.Fatalf("%+v: element %d: got %v want %v", tc, i, got[i], want[i])
			}
			worst = max(worst, d)
		}
		t.Logf("%+v: max abs diff %.3g", tc, worst)
	}
}

func TestGraphSwinWindowAttention(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	h, w, c, heads, ws, shift := 9, 11, 8, 2, 7, 3
	x := swinRand(rng, h*w*c, 1)
	normW, normB := swinRand(rng, c, 1), swinRand(rng, c, 1)
	qkvW, qkvB := swinRand(rng, 3*c*c, 0.5), swinRand(rng, 3*c, 0.5)
	projW, projB := swinRand(rng, c*c, 0.5), swinRand(rng, c, 0.5)
	table := swinRand(rng, 169*heads, 1)
	g := NewGraph()
	in := g.Input("x", 1, h*w, c)
	out := g.SwinWindowAttention(in, g.Param("norm.weight", normW, c), g.Param("norm.bias", normB, c),
		g.Param("qkv.weight", qkvW, 3*c, c), g.Param("qkv.bias", qkvB, 3*c), g.Param("proj.weight", projW, c, c),
		g.Param("proj.bias", projB, c), g.Param("table", table, 169, heads), 1e-5, h, w, heads, ws, shift)
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(context.Background(), map[string][]float32{"x": x}); err != nil {
		t.Fatal(err)
	}
	want := swinAttentionNaive(x, h, w, c, heads, ws, shift, normW, normB, qkvW, qkvB, projW, projB, table)
	for i, v := range Values(out) {
		if math.Abs(float64(v)-want[i]) > 1e-4*(1+math.Abs(want[i])) {
			t.Fatalf("element %d: got %v want %v", i, v, want[i])
		}
	}
	// Shape errors are reported, not panics.
	bad := []func(g *Graph) *Node{
		func(g *Graph) *Node { // map size does not match the tokens
			return g.SwinWindowAttention(g.Input("x", 10, c), nil, nil, g.Input("q", 3*c, c), nil, g.Input("p", c, c), nil, g.Input("t", 169, heads), 1e-5, 3, 4, heads, 7, 0)
		},
		func(g *Graph) *Node { // shift not below the window
			return g.SwinWindowAttention(g.Input("x", 12, c), nil, nil, g.Input("q", 3*c, c), nil, g.Input("p", c, c), nil, g.Input("t", 169, heads), 1e-5, 3, 4, heads, 7, 7)
		},
		func(g *Graph) *Node { // table of the wrong size
			return g.SwinWindowAttention(g.Input("x", 12, c), nil, nil, g.Input("q", 3*c, c), nil, g.Input("p", c, c), nil, g.Input("t", 168, heads), 1e-5, 3, 4, heads, 7, 0)
		},
		func(g *Graph) *Node { // a norm weight without its bias
			return g.SwinWindowAttention(g.Input("x", 12, c), g.Input("nw", c), nil, g.Input("q", 3*c, c), nil, g.Input("p", c, c), nil, g.Input("t", 169, heads), 1e-5, 3, 4, heads, 7, 0)
		},
		func(g *Graph) *Node { // heads do not divide the width
			return g.SwinWindowAttention(g.Input("x", 12, c), nil, nil, g.Input("q", 3*c, c), nil, g.Input("p", c, c), nil, g.Input("t", 169, 3), 1e-5, 3, 4, 3, 7, 0)
		},
	}
	for i, f := range bad {
		g := NewGraph()
		if f(g) != nil || g.Err() == nil {
			t.Errorf("bad case %d: no error", i)
		}
	}
}

func TestSwinRelativeIndex(t *testing.T) {
	idx := SwinRelativeIndex(7)
	// query (0,0) and key (6,6): (0-6+6)*13 + (0-6+6) = 0; the reverse is 168.
	if idx[0*49+48] != 0 || idx[48*49+0] != 168 || idx[24*49+24] != 84 {
		t.Fatalf("index: %d %d %d", idx[48], idx[48*49], idx[24*49+24])
	}
}

func BenchmarkSwinWindowAttentionStage0(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	h, w, c, heads := 200, 267, 96, 3
	x := swinRand(rng, h*w*c, 1)
	qkvW, qkvB := swinRand(rng, 3*c*c, 0.1), swinRand(rng, 3*c, 0.1)
	projW, projB := swinRand(rng, c*c, 0.1), swinRand(rng, c, 0.1)
	table := swinRand(rng, 169*heads, 1)
	normW, normB := swinRand(rng, c, 1), swinRand(rng, c, 0.1)
	wt := &SwinWindowWeights{NormW: normW, NormB: normB, Eps: 1e-5, QKVW: qkvW, QKVB: qkvB, ProjW: projW, ProjB: projB, Table: table}
	dst := make([]float32, h*w*c)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		SwinWindowAttentionInto(dst, x, h, w, c, heads, 7, 3, wt)
	}
}
