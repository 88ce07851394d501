package nn

import (
	"math"
	"math/rand"
	"testing"
)

// geluExact is torch.nn.GELU() in float64.
func geluExact(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }

// isaName names the instruction sets of fastMathISAs in test output.
func isaName(isa int) string { return [...]string{"go", "avx2", "avx512"}[isa] }

func TestExp32(t *testing.T) {
	for _, isa := range fastMathISAs() {
		fn := func(x []float32, mx float32) float32 { return expShiftSumISA(isa, x, mx) }
		t.Run(isaName(isa), func(t *testing.T) {
			// A dense sweep of [-87.3, 88] plus odd lengths for the tails.
			var xs []float32
			for v := -87.3; v <= 88; v += 0.000731 {
				xs = append(xs, float32(v))
			}
			for _, n := range []int{len(xs), 1, 15, 16, 17, 31, 33} {
				x := append([]float32(nil), xs[:n]...)
				sum := fn(x, 0)
				var want float64
				maxRel, at := 0.0, 0
				for i, v := range xs[:n] {
					e := math.Exp(float64(v))
					want += float64(x[i])
					if r := math.Abs(float64(x[i])-e) / e; r > maxRel || math.IsNaN(r) {
						maxRel, at = r, i
					}
				}
				if !(maxRel <= 2.5e-7) {
					t.Errorf("n=%d: max relative error %.3g at x=%v (got %v, want %v)", n, maxRel, xs[at], x[at], math.Exp(float64(xs[at])))
				}
				if r := math.Abs(float64(sum)-want) / want; want < math.MaxFloat32 && !(r <= 1e-5) {
					t.Errorf("n=%d: sum %v, want %v", n, sum, want)
				}
			}
			// Shift, clamping and NaN.
			x := []float32{1, 3, -200, float32(math.Inf(-1)), 0, float32(math.NaN())}
			fn(x, 3)
			wants := []float64{math.Exp(-2), 1, 0, 0, math.Exp(-3)}
			for i, w := range wants {
				if math.Abs(float64(x[i])-w) > 1e-7*math.Max(w, 1e-30)+2e-38 {
					t.Errorf("e^(%d) = %v, want %v", i, x[i], w)
				}
			}
			if !math.IsNaN(float64(x[5])) {
				t.Errorf("e^NaN = %v", x[5])
			}
		})
	}
}

func TestGELU32(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	var xs []float32
	for v := -12.0; v <= 12; v += 0.00037 {
		xs = append(xs, float32(v))
	}
	bias := make([]float32, len(xs))
	for i := range bias {
		bias[i] = float32(rng.NormFloat64())
	}
	for _, isa := range fastMathISAs() {
		for _, withBias := range []bool{false, true} {
			for _, n := range []int{len(xs), 1, 7, 16, 29} {
				x := append([]float32(nil), xs[:n]...)
				var b []float32
				if withBias {
					b = bias[:n]
				}
				geluBiasISA(isa, x, b)
				maxd, at := 0.0, 0
				for i, v := range xs[:n] {
					in := v
					if withBias {
						in += b[i]
					}
					want := geluExact(float64(in))
					// float32 rounding of the result is 6e-8 relative.
					if d := math.Abs(float64(x[i])-want) / math.Max(1, math.Abs(want)); d > maxd || math.IsNaN(d) {
						maxd, at = d, i
					}
				}
				if !(maxd <= 2e-7) {
					t.Errorf("%s bias=%v n=%d: max error %.3g at %d (got %v want %v)", isaName(isa), withBias, n, maxd, at, x[at], geluExact(float64(xs[at])))
				} else if n == len(xs) {
					t.Logf("%s bias=%v: max error %.3g", isaName(isa), withBias, maxd)
				}
			}
		}
	}
	if g := GELU(float32(math.NaN())); !math.IsNaN(float64(g)) {
		t.Errorf("GELU(NaN) = %v", g)
	}
}

func TestRelAddMax(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for _, isa := range fastMathISAs() {
		for _, hw := range [][2]int{{14, 14}, {64, 64}, {1, 1}, {3, 17}, {5, 16}, {2, 33}, {4, 7}, {0, 4}} {
			h, w := hw[0], hw[1]
			row := attnRand(rng, h*w+1, 3)
			row[h*w] = 1e9 // past the row: neither changed nor counted
			relh, relw := attnRand(rng, h, 2), attnRand(rng, w, 2)
			got := append([]float32(nil), row...)
			gm := relAddMaxISA(isa, got[:h*w], relh, relw)
			want := float32(math.Inf(-1))
			for k := 0; k < h; k++ {
				for l := 0; l < w; l++ {
					v := (row[k*w+l] + relh[k]) + relw[l]
					if got[k*w+l] != v {
						t.Fatalf("%s %dx%d: [%d,%d] = %v, want %v", isaName(isa), h, w, k, l, got[k*w+l], v)
					}
					want = max(want, v)
				}
			}
			if gm != want || got[h*w] != 1e9 {
				t.Errorf("%s %dx%d: max %v, want %v (guard %v)", isaName(isa), h, w, gm, want, got[h*w])
			}
		}
	}
}

func TestAddRows(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	for _, isa := range fastMathISAs() {
		for _, rc := range [][2]int{{3, 768}, {5, 7}, {1, 16}, {4, 33}, {3, 9}, {0, 8}, {2, 0}} {
			rows, cols := rc[0], rc[1]
			a, b := attnRand(rng, rows*cols, 1), attnRand(rng, cols, 1)
			dst := make([]float32, len(a)+1)
			dst[len(a)] = 42 // must stay
			addRowsISA(isa, dst[:len(a)], a, b)
			for i := range a {
				if want := a[i] + b[i%cols]; dst[i] != want {
					t.Fatalf("%s %dx%d: [%d] = %v, want %v", isaName(isa), rows, cols, i, dst[i], want)
				}
			}
			if dst[len(a)] != 42 {
				t.Fatalf("%s %dx%d: wrote past the end", isaName(isa), rows, cols)
			}
		}
	}
}

func TestReLU(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	nan := float32(math.NaN())
	for _, isa := range fastMathISAs() {
		for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 70} {
			src := attnRand(rng, n, 3)
			if n > 3 {
				src[0], src[1], src[2] = nan, float32(math.Inf(-1)), float32(math.Inf(1))
			}
			dst := make([]float32, n+1)
			dst[n] = 42
			reluISA(isa, dst[:n], src)
			for i, v := range src {
				want := v
				if v < 0 {
					want = 0
				}
				if dst[i] != want && !(want != want && dst[i] != dst[i]) {
					t.Fatalf("%s n=%d: [%d] = %v, want %v", isaName(isa), n, i, dst[i], want)
				}
			}
			if dst[n] != 42 {
				t.Fatalf("%s n=%d: wrote past the end", isaName(isa), n)
			}
			// In place.
			reluISA(isa, src, src)
			for i, v := range src {
				if v != dst[i] && !(v != v && dst[i] != dst[i]) {
					t.Fatalf("%s n=%d in place: [%d] = %v, want %v", isaName(isa), n, i, v, dst[i])
				}
			}
		}
	}
}

func TestLayerNormRow(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	for _, d := range []int{1, 7, 8, 9, 16, 24, 33, 256, 768} {
		// An offset mean checks the two-pass variance.
		x := attnRand(rng, d, 2)
		for i := range x {
			x[i] += 3
		}
		w, b := attnRand(rng, d, 1), attnRand(rng, d, 1)
		var mean, vs float64
		for _, v := range x {
			mean += float64(v)
		}
		mean /= float64(d)
		for _, v := range x {
			vs += (float64(v) - mean) * (float64(v) - mean)
		}
		inv := 1 / math.Sqrt(vs/float64(d)+1e-6)
		ims := []struct {
			name string
			fn   func(dst, x, w, b []float32, eps float32)
		}{{"go", layerNormRowGo}, {"dispatch", layerNormRow}}
		for _, isa := range fastMathISAs() {
			ims = append(ims, struct {
				name string
				fn   func(dst, x, w, b []float32, eps float32)
			}{isaName(isa), func(dst, x, w, b []float32, eps float32) { layerNormRowISA(isa, dst, x, w, b, eps) }})
		}
		for _, im := range ims {
			got := make([]float32, d+1)
			got[d] = 42 // must stay
			im.fn(got[:d], x, w, b, 1e-6)
			for i := 0; i < d; i++ {
				want := (float64(x[i])-mean)*inv*float64(w[i]) + float64(b[i])
				if math.Abs(float64(got[i])-want) > 2e-6 {
					t.Fatalf("%s d=%d: [%d] = %v, want %v", im.name, d, i, got[i], want)
				}
			}
			if got[d] != 42 {
				t.Fatalf("%s d=%d: wrote past the row", im.name, d)
			}
		}
	}
}

func TestScaleInto(t *testing.T) {
	rng := rand.New(rand.NewSource(10))
	for _, isa := range fastMathISAs() {
		for _, n := range []int{0, 1, 7, 8, 15, 16, 64, 70} {
			src := attnRand(rng, n, 3)
			dst := make([]float32, n+1)
			dst[n] = 42
			scaleIntoISA(isa, dst[:n], src, 0.37)
			for i, v := range src {
				if dst[i] != v*0.37 {
					t.Fatalf("%s n=%d: [%d] = %v, want %v", isaName(isa), n, i, dst[i], v*0.37)
				}
			}
			if dst[n] != 42 {
				t.Fatalf("%s n=%d: wrote past the end", isaName(isa), n)
			}
		}
	}
}

func TestTanhUnitRow(t *testing.T) {
	for _, isa := range fastMathISAs() {
		t.Run(isaName(isa), func(t *testing.T) {
			var xs []float32
			for v := -60.0; v <= 60; v += 0.000913 {
				xs = append(xs, float32(v))
			}
			for _, n := range []int{len(xs), 1, 15, 16, 17, 31, 33} {
				got := make([]float32, n)
				tanhUnitRowISA(isa, got, xs[:n])
				maxAbs, at := 0.0, 0
				for i, v := range xs[:n] {
					want := (math.Tanh(float64(v)) + 1) / 2
					if d := math.Abs(float64(got[i]) - want); d > maxAbs || math.IsNaN(d) {
						maxAbs, at = d, i
					}
				}
				if !(maxAbs <= 1.5e-7) {
					t.Errorf("n=%d: max abs error %.3g at x=%v (got %v)", n, maxAbs, xs[at], got[at])
				}
			}
			x := []float32{float32(math.Inf(1)), float32(math.Inf(-1)), 0, float32(math.NaN())}
			got := make([]float32, len(x))
			tanhUnitRowISA(isa, got, x)
			if got[0] != 1 || got[1] != 0 || got[2] != 0.5 || !math.IsNaN(float64(got[3])) {
				t.Errorf("(tanh(x)+1)/2 of +Inf, -Inf, 0, NaN = %v", got)
			}
		})
	}
}

func TestDivMax(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	nan := float32(math.NaN())
	for _, isa := range fastMathISAs() {
		for _, n := range []int{0, 1, 5, 8, 9, 16, 17, 33, 900} {
			for _, special := range []bool{false, true} {
				x := attnRand(rng, n, 4)
				if special && n > 2 {
					x[0], x[n-1] = nan, float32(math.Inf(-1))
				}
				want := append([]float32(nil), x...)
				wmx := divMaxGo(want, 0.37)
				got := append(append([]float32(nil), x...), 42)
				mx := divMaxISA(isa, got[:n], 0.37)
				if mx != wmx {
					t.Fatalf("%s n=%d: max %v, want %v", isaName(isa), n, mx, wmx)
				}
				for i := range want {
					if got[i] != want[i] && !(want[i] != want[i] && got[i] != got[i]) {
						t.Fatalf("%s n=%d: [%d] = %v, want %v", isaName(isa), n, i, got[i], want[i])
					}
				}
				if got[n] != 42 {
					t.Fatalf("%s n=%d: wrote past the end", isaName(isa), n)
				}
			}
		}
		// All NaN: no maximum.
		if mx := divMaxISA(isa, []float32{nan, nan, nan}, 2); !math.IsInf(float64(mx), -1) {
			t.Errorf("%s: max of NaNs = %v, want -Inf", isaName(isa), mx)
		}
	}
}
