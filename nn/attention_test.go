package nn

import (
	"context"
	"math"
	"math/rand"
	"slices"
	"testing"
)

// naiveResizeLinear resizes the rows of table (l, dim) to out rows as
// F.interpolate(mode="linear", align_corners=False), written from the
// formula in float64.
func naiveResizeLinear(table []float32, l, dim, out int) []float64 {
	res := make([]float64, out*dim)
	for r := 0; r < out; r++ {
		src := (float64(r)+0.5)*float64(l)/float64(out) - 0.5
		if src < 0 {
			src = 0
		}
		i0 := int(math.Floor(src))
		if i0 > l-1 {
			i0 = l - 1
		}
		i1 := min(i0+1, l-1)
		f := src - float64(i0)
		for d := 0; d < dim; d++ {
			res[r*dim+d] = (1-f)*float64(table[i0*dim+d]) + f*float64(table[i1*dim+d])
		}
	}
	return res
}

// naiveRelPosAttention is the reference Attention.forward written as plain
// loops in float64, materialising every score.
func naiveRelPosAttention(x []float32, b, h, w, c, heads int, qkvW, qkvB, projW, projB, relH []float32, lh int, relW []float32, lw int) []float64 {
	n, hd := h*w, c/heads
	lin := func(in []float64, wt, bias []float32, out int) []float64 {
		rows := len(in) / (len(wt) / out)
		k := len(wt) / out
		res := make([]float64, rows*out)
		for r := 0; r < rows; r++ {
			for o := 0; o < out; o++ {
				s := 0.0
				if bias != nil {
					s = float64(bias[o])
				}
				for i := 0; i < k; i++ {
					s += in[r*k+i] * float64(wt[o*k+i])
				}
				res[r*out+o] = s
			}
		}
		return res
	}
	xf := make([]float64, len(x))
	for i, v := range x {
		xf[i] = float64(v)
	}
	qkv := lin(xf, qkvW, qkvB, 3*c)
	th := naiveResizeLinear(relH, lh, hd, 2*h-1)
	tw := naiveResizeLinear(relW, lw, hd, 2*w-1)
	scale := 1 / math.Sqrt(float64(hd))
	merged := make([]float64, b*n*c)
	attn := make([]float64, n)
	for bi := 0; bi < b; bi++ {
		for hh := 0; hh < heads; hh++ {
			q := func(t, d int) float64 { return qkv[(bi*n+t)*3*c+hh*hd+d] }
			k := func(t, d int) float64 { return qkv[(bi*n+t)*3*c+c+hh*hd+d] }
			v := func(t, d int) float64 { return qkv[(bi*n+t)*3*c+2*c+hh*hd+d] }
			for i := 0; i < h; i++ {
				for j := 0; j < w; j++ {
					t := i*w + j
					for ki := 0; ki < h; ki++ {
						for kj := 0; kj < w; kj++ {
							s, rhv, rwv := 0.0, 0.0, 0.0
							for d := 0; d < hd; d++ {
								s += q(t, d) * scale * k(ki*w+kj, d)
								rhv += q(t, d) * th[(i-ki+h-1)*hd+d]
								rwv += q(t, d) * tw[(j-kj+w-1)*hd+d]
							}
							attn[ki*w+kj] = s + rhv + rwv
						}
					}
					mx := math.Inf(-1)
					for _, a := range attn {
						mx = math.Max(mx, a)
					}
					sum := 0.0
					for u := range attn {
						attn[u] = math.Exp(attn[u] - mx)
						sum += attn[u]
					}
					for d := 0; d < hd; d++ {
						o := 0.0
						for u := range attn {
							o += attn[u] / sum * v(u, d)
						}
						merged[(bi*n+t)*c+hh*hd+d] = o
					}
				}
			}
		}
	}
	return lin(merged, projW, projB, c)
}

func attnRand(rng *rand.Rand, n int, scale float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = (rng.Float32()*2 - 1) * scale
	}
	return s
}

func TestRelPosTableResize(t *testing.T) {
	// F.interpolate([0, 1, 2], size=5, mode="linear") = [0, 0.4, 1, 1.6, 2].
	got := relPosTable([]float32{0, 1, 2}, 3, 1, 3)
	lin := []float32{0, 0.4, 1, 1.6, 2}
	for i := 0; i < 3; i++ {
		for k := 0; k < 3; k++ {
			want := lin[i-k+2]
			if d := math.Abs(float64(got[i*3+k] - want)); d > 1e-6 {
				t.Errorf("R[%d,%d] = %g, want %g", i, k, got[i*3+k], want)
			}
		}
	}
	// No resize: a gather of the table.
	tab := []float32{1, 2, 3, 4, 5, 6} // (3, 2) for size 2
	got = relPosTable(tab, 3, 2, 2)
	want := []float32{3, 4, 1, 2, 5, 6, 3, 4} // R[0,0]=T1 R[0,1]=T0 R[1,0]=T2 R[1,1]=T1
	if !slices.Equal(got, want) {
		t.Fatalf("gather: got %v, want %v", got, want)
	}
}

// TestRelPosSDPA checks the attention core on a qkv projection, as the
// encoder uses it: windowed (the image zero-padded after the norm and split,
// so padding tokens carry the qkv bias) and global, against the naive
// reference run on the partitioned input.
func TestRelPosSDPA(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	tests := []struct {
		name                  string
		b, h, w, c, heads, ws int
		lh, lw                int
		bias                  bool
	}{
		{"window-padded", 1, 16, 16, 32, 2, 6, 11, 11, true}, // tiny encoder windowed block
		{"window-exact", 2, 8, 12, 16, 2, 4, 7, 7, true},
		{"window-rect-nobias", 1, 5, 9, 12, 3, 4, 7, 7, false},
		{"window-resize", 1, 7, 7, 8, 1, 3, 9, 4, true},
		{"global", 2, 6, 7, 16, 2, 0, 11, 13, true},
		{"global-many-blocks", 1, 48, 48, 8, 1, 0, 95, 95, true},
		{"global-rect", 2, 3, 5, 12, 3, 0, 5, 9, true},
		{"global-resize-up", 2, 6, 6, 16, 2, 0, 7, 5, true},
		{"global-resize-down-nobias", 1, 4, 5, 8, 1, 0, 13, 20, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, h, w, c, heads, ws := tc.b, tc.h, tc.w, tc.c, tc.heads, tc.ws
			hd := c / heads
			x := attnRand(rng, b*h*w*c, 1)
			qkvW, projW := attnRand(rng, 3*c*c, 0.5), attnRand(rng, c*c, 0.5)
			var qkvB []float32
			if tc.bias {
				qkvB = attnRand(rng, 3*c, 0.5)
			}
			relH, relW := attnRand(rng, tc.lh*hd, 0.5), attnRand(rng, tc.lw*hd, 0.5)

			// want: partition (zero padding), attention per window, merge.
			var want []float64
			if ws == 0 {
				want = naiveRelPosAttention(x, b, h, w, c, heads, qkvW, qkvB, projW, nil, relH, tc.lh, relW, tc.lw)
			} else {
				nh, nw := windowPad(h, ws)/ws, windowPad(w, ws)/ws
				wins := naiveWindowPartition(x, b, h, w, c, ws)
				wo := naiveRelPosAttention(wins, b*nh*nw, ws, ws, c, heads, qkvW, qkvB, projW, nil, relH, tc.lh, relW, tc.lw)
				want = make([]float64, b*h*w*c)
				for bi := 0; bi < b; bi++ {
					for y := 0; y < h; y++ {
						for xx := 0; xx < w; xx++ {
							win := (bi*nh+y/ws)*nw + xx/ws
							src := ((win*ws+y%ws)*ws + xx%ws) * c
							copy(want[((bi*h+y)*w+xx)*c:((bi*h+y)*w+xx+1)*c], wo[src:src+c])
						}
					}
				}
			}

			qkv := make([]float32, b*h*w*3*c)
			LinearRows(qkv, x, b*h*w, c, qkvW, 3*c, qkvB)
			g := NewGraph()
			in := map[string]*Tensor{
				"qkv": NewTensor(qkv, b, h, w, 3*c), "rel_h": NewTensor(relH, tc.lh, hd), "rel_w": NewTensor(relW, tc.lw, hd),
				"qkv.b": NewTensor(make([]float32, 3*c), 3*c),
			}
			qb := g.Input("qkv.b", 3*c)
			if tc.bias {
				in["qkv.b"] = NewTensor(qkvB, 3*c)
			} else {
				qb = nil
			}
			out := g.RelPosSDPA(g.Input("qkv", b, h, w, 3*c), qb, g.Input("rel_h", tc.lh, hd), g.Input("rel_w", tc.lw, hd), heads, ws)
			m, err := g.Compile()
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			if !hasShape(out, b, h, w, c) {
				t.Fatalf("shape %v", out.Shape())
			}
			got := make([]float32, b*h*w*c)
			LinearRows(got, Values(out), b*h*w, c, projW, c, nil)
			maxd, at, ref := 0.0, 0, 0.0
			for i := range want {
				ref = math.Max(ref, math.Abs(want[i]))
				if d := math.Abs(float64(got[i]) - want[i]); d > maxd || math.IsNaN(d) {
					maxd, at = d, i
				}
			}
			if tol := 1e-5 * math.Max(ref, 1); !(maxd <= tol) {
				t.Errorf("max abs diff %.3g at %d (got %g want %g), tolerance %.3g", maxd, at, got[at], want[at], tol)
			} else {
				t.Logf("max abs diff %.3g (ref max %.3g)", maxd, ref)
			}
		})
	}
}

func TestRelPosSDPAShapes(t *testing.T) {
	tests := []struct {
		name          string
		qkv, rh, rw   []int
		heads, window int
	}{
		{"3d input", []int{4, 4, 24}, []int{7, 4}, []int{7, 4}, 2, 0},
		{"not 3C", []int{1, 4, 4, 25}, []int{7, 4}, []int{7, 4}, 2, 0},
		{"heads", []int{1, 4, 4, 24}, []int{7, 4}, []int{7, 4}, 3, 0},
		{"table", []int{1, 4, 4, 24}, []int{7, 8}, []int{7, 4}, 2, 0},
		{"window", []int{1, 4, 4, 24}, []int{7, 4}, []int{7, 4}, 2, -1},
	}
	for _, tc := range tests {
		g := NewGraph()
		out := g.RelPosSDPA(g.Input("q", tc.qkv...), nil, g.Input("h", tc.rh...), g.Input("w", tc.rw...), tc.heads, tc.window)
		if out != nil || g.Err() == nil {
			t.Errorf("%s: want a building error", tc.name)
		}
	}
}

func BenchmarkRelPosSDPA(b *testing.B) {
	// The attention core of a ViT-B block at 1024 px: 64x64 tokens, C 768,
	// 12 heads, global or in 14x14 windows.
	rng := rand.New(rand.NewSource(1))
	const e, c, heads, ws = 64, 768, 12, 14
	qkv := attnRand(rng, e*e*3*c, 1)
	qkvB := attnRand(rng, 3*c, 0.1)
	dst := make([]float32, e*e*c)
	for _, bc := range []struct {
		name   string
		window int
	}{{"global", 0}, {"window", ws}} {
		side := e
		if bc.window > 0 {
			side = bc.window
		}
		rel := attnRand(rng, (2*side-1)*c/heads, 0.1)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				RelPosSDPAInto(dst, qkv, 1, e, e, c, heads, bc.window, qkvB, rel, 2*side-1, rel, 2*side-1)
			}
		})
	}
}

// naiveWindowPartition is window_partition written as index arithmetic on
// the padded image.
func naiveWindowPartition(x []float32, b, h, w, c, ws int) []float32 {
	hp, wp := windowPad(h, ws), windowPad(w, ws)
	nh, nw := hp/ws, wp/ws
	out := make([]float32, b*nh*nw*ws*ws*c)
	for bi := 0; bi < b; bi++ {
		for wy := 0; wy < nh; wy++ {
			for wx := 0; wx < nw; wx++ {
				for i := 0; i < ws; i++ {
					for j := 0; j < ws; j++ {
						for ch := 0; ch < c; ch++ {
							y, xx := wy*ws+i, wx*ws+j
							var v float32
							if y < h && xx < w {
								v = x[((bi*h+y)*w+xx)*c+ch]
							}
							out[((((bi*nh+wy)*nw+wx)*ws+i)*ws+j)*c+ch] = v
						}
					}
				}
			}
		}
	}
	return out
}

// relPosTable is the reference's get_rel_pos for equal query and key
// sizes: it returns R (size, size, dim) with R[i, k] = T[i - k + size - 1],
// where T is table (l, dim) linearly resized to 2*size-1 rows, as
// F.interpolate(mode="linear", align_corners=False) does, when l differs.
func relPosTable(table []float32, l, dim, size int) []float32 {
	t := relPosTableRows(table, l, dim, size)
	out := make([]float32, size*size*dim)
	for i := 0; i < size; i++ {
		for k := 0; k < size; k++ {
			copy(out[(i*size+k)*dim:(i*size+k+1)*dim], t[(i-k+size-1)*dim:])
		}
	}
	return out
}
