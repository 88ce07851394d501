package nn

import (
	"math"
	"math/rand"
	"testing"
)

// TestWinogradAsm checks that the assembly Winograd transforms give the
// same bits as the Go loops, at sizes with ragged tile rows and edges.
func TestWinogradAsm(t *testing.T) {
	if !winoAsm {
		t.Skip("no assembly Winograd transforms here")
	}
	rng := rand.New(rand.NewSource(5))
	for _, c := range []struct{ cin, h, w, cout int }{
		{3, 7, 9, 5}, {32, 33, 70, 17}, {64, 40, 130, 64}, {260, 16, 20, 30},
	} {
		x := convRand(rng, c.cin*c.h*c.w)
		wt := convRand(rng, c.cin*c.cout*9)
		bias := convRand(rng, c.cout)
		got := make([]float32, c.cout*c.h*c.w)
		want := make([]float32, len(got))
		Conv2dInto(got, x, 1, c.cin, c.h, c.w, wt, c.cout, 3, 3, bias, 1, 1)
		winoAsm = false
		Conv2dInto(want, x, 1, c.cin, c.h, c.w, wt, c.cout, 3, 3, bias, 1, 1)
		winoAsm = true
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%+v: [%d] = %v, want %v", c, i, got[i], want[i])
			}
		}
	}
}

// TestActRowFast checks the assembly epilogue rows bit for bit against the
// Go formulas, with and without residuals and LeakyReLU, written one row or
// two interleaved rows at a time.
func TestActRowFast(t *testing.T) {
	if !winoAsm {
		t.Skip("no assembly epilogue here")
	}
	rng := rand.New(rand.NewSource(9))
	for _, leaky := range []bool{false, true} {
		ls := leakyScale(leaky, 0.2)
		checkActRow(t, rng, leaky, &ls)
		checkAct2Row(t, rng, leaky, &ls)
	}
}

func checkActRow(t *testing.T, rng *rand.Rand, leaky bool, ls *[2]float32) {
	const n = 48
	a, r := convRand(rng, n), convRand(rng, n)
	a[3] = float32(math.Copysign(0, -1))
	for _, rscale := range []int{0, 1, 2} {
		var rr []float32
		if rscale > 0 {
			rr = r
		}
		d := make([]float32, n)
		if k := actRowFast(d, a, rr, rscale, 0.3, ls, n-5); k != n-16 {
			t.Fatalf("did %d outputs, want %d", k, n-16)
		}
		for j := 0; j < n-16; j++ {
			v := a[j] + 0.3
			if rscale > 0 {
				v += r[j/rscale]
			}
			if w := v * ls[math.Float32bits(v)>>31]; math.Float32bits(d[j]) != math.Float32bits(w) {
				t.Fatalf("leaky %v rscale %d: [%d] = %v, want %v", leaky, rscale, j, d[j], w)
			}
		}
		checkUnwritten(t, d[n-16:])
	}
}

func checkAct2Row(t *testing.T, rng *rand.Rand, leaky bool, ls *[2]float32) {
	const n = 40
	a0, a1 := convRand(rng, n), convRand(rng, n)
	d := make([]float32, 2*n)
	if k := act2RowFast(d, a0, a1, -0.1, ls, n); k != 32 {
		t.Fatalf("did %d, want 32", k)
	}
	for j := 0; j < 32; j++ {
		v, u := a0[j]-0.1, a1[j]-0.1
		v, u = v*ls[math.Float32bits(v)>>31], u*ls[math.Float32bits(u)>>31]
		if math.Float32bits(d[2*j]) != math.Float32bits(v) || math.Float32bits(d[2*j+1]) != math.Float32bits(u) {
			t.Fatalf("leaky %v: [%d] = %v %v, want %v %v", leaky, j, d[2*j], d[2*j+1], v, u)
		}
	}
	checkUnwritten(t, d[64:])
}

// checkUnwritten fails unless every value of tail is still 0.
func checkUnwritten(t *testing.T, tail []float32) {
	t.Helper()
	for j, v := range tail {
		if v != 0 {
			t.Fatalf("wrote [%d] past the outputs", j)
		}
	}
}
