package nn

import (
	"context"
	"math/rand"
	"testing"
)

// naiveWindowPartition is window_partition written as index arithmetic on
// the padded image.
func naiveWindowPartition(x []float32, b, h, w, c, ws int) []float32 {
	hp, wp := WindowPad(h, ws), WindowPad(w, ws)
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

func TestWindowPartition(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	tests := []struct{ b, h, w, c, ws int }{
		{1, 16, 16, 3, 6}, // padded, as the tiny golden model
		{2, 12, 12, 2, 6}, // exact multiple
		{1, 5, 9, 4, 4},   // rectangular, padded differently per axis
		{1, 3, 2, 1, 7},   // one window bigger than the image
		{3, 14, 14, 5, 14},
	}
	for _, tc := range tests {
		x := make([]float32, tc.b*tc.h*tc.w*tc.c)
		for i := range x {
			x[i] = rng.Float32()*2 - 1
		}
		want := naiveWindowPartition(x, tc.b, tc.h, tc.w, tc.c, tc.ws)
		got := make([]float32, len(want))
		for i := range got {
			got[i] = 99 // the padding must be written, not left
		}
		WindowPartitionInto(got, x, tc.b, tc.h, tc.w, tc.c, tc.ws)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%+v: partition differs at %d: got %g want %g", tc, i, got[i], want[i])
			}
		}
		back := make([]float32, len(x))
		WindowUnpartitionInto(back, got, tc.b, tc.h, tc.w, tc.c, tc.ws)
		for i := range x {
			if back[i] != x[i] {
				t.Fatalf("%+v: unpartition differs at %d: got %g want %g", tc, i, back[i], x[i])
			}
		}

		// The same through graph ops.
		g := NewGraph()
		in := g.Input("x", tc.b, tc.h, tc.w, tc.c)
		win := g.WindowPartition(in, tc.ws)
		out := g.WindowUnpartition(win, tc.h, tc.w)
		m, err := g.Compile()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Run(context.Background(), map[string]*Tensor{"x": NewTensor(x, tc.b, tc.h, tc.w, tc.c)}); err != nil {
			t.Fatal(err)
		}
		gw, gb := Values(win), Values(out)
		for i := range want {
			if gw[i] != want[i] {
				t.Fatalf("%+v: graph partition differs at %d", tc, i)
			}
		}
		for i := range x {
			if gb[i] != x[i] {
				t.Fatalf("%+v: graph unpartition differs at %d", tc, i)
			}
		}
	}
}

func TestWindowGraphErrors(t *testing.T) {
	g := NewGraph()
	x := g.Input("x", 1, 4, 4)
	if g.WindowPartition(x, 2) != nil || g.Err() == nil {
		t.Error("3-d input should fail")
	}
	g = NewGraph()
	w := g.Input("w", 5, 2, 2, 3)
	if g.WindowUnpartition(w, 4, 4) != nil || g.Err() == nil {
		t.Error("5 windows for a 2x2 grid should fail")
	}
}
