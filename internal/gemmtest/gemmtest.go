// Package gemmtest checks row-major float32 matrix products (nn.Gemm, its
// backends, cuda.Device) against a float64 reference. It imports nothing
// of the module, so that every package's tests can use it, the cuda
// package's included.
package gemmtest

import (
	"fmt"
	"math"
	"math/rand"
)

// Case is one product C = alpha op(A) op(B) + beta C, with op(A) m x k and
// op(B) k x n; Pad is added to every row stride.
type Case struct {
	M, N, K        int
	TransA, TransB bool
	Alpha, Beta    float32
	Pad            int
	NaNC           bool // C starts as NaN: with beta 0 it must vanish
}

func (tc Case) String() string {
	return fmt.Sprintf("m%d_n%d_k%d_tA%v_tB%v_a%g_b%g_pad%d_nan%v", tc.M, tc.N, tc.K, tc.TransA, tc.TransB, tc.Alpha, tc.Beta, tc.Pad, tc.NaNC)
}

// Sentinel fills the padding of C's rows, which a product must not touch.
const Sentinel = -4242

// Operands draws A and B (exactly as long as their strides need) and C
// (its row padding set to Sentinel, its values NaN with NaNC).
func (tc Case) Operands(rng *rand.Rand) (a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	ar, ac := stored(tc.M, tc.K, tc.TransA)
	br, bc := stored(tc.K, tc.N, tc.TransB)
	lda, ldb, ldc = ac+tc.Pad, bc+tc.Pad, tc.N+tc.Pad
	a = RandFloats(rng, max((ar-1)*lda+ac, 1))
	b = RandFloats(rng, max((br-1)*ldb+bc, 1))
	c = RandFloats(rng, max(tc.M*ldc, 1))
	for i := range c[:tc.M*ldc] {
		if i%ldc >= tc.N {
			c[i] = Sentinel
		} else if tc.NaNC {
			c[i] = float32(math.NaN())
		}
	}
	return a, lda, b, ldb, c, ldc
}

// stored is the (rows, cols) of a rows x cols operand as stored.
func stored(rows, cols int, trans bool) (int, int) {
	if trans {
		return cols, rows
	}
	return rows, cols
}

// Ref is the float64 reference of the product on the operands: C (m x n,
// dense) and, per element, the scale |alpha| sum |a b| + |beta c| that
// bounds the rounding error of a float32 evaluation. C is not read when
// beta is 0.
func Ref(tc Case, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) (want, scale []float64) {
	m, n := tc.M, tc.N
	want, scale = make([]float64, m*n), make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, abs float64
			for p := 0; p < tc.K; p++ {
				ai, bi := i*lda+p, p*ldb+j
				if tc.TransA {
					ai = p*lda + i
				}
				if tc.TransB {
					bi = j*ldb + p
				}
				v := float64(a[ai]) * float64(b[bi])
				s += v
				abs += math.Abs(v)
			}
			w, sc := float64(tc.Alpha)*s, math.Abs(float64(tc.Alpha))*abs
			if tc.Beta != 0 {
				w += float64(tc.Beta) * float64(c[i*ldc+j])
				sc += math.Abs(float64(tc.Beta) * float64(c[i*ldc+j]))
			}
			want[i*n+j], scale[i*n+j] = w, sc
		}
	}
	return want, scale
}

// Check compares C with the reference: every value within tol of its error
// scale (NaN fails), the row padding untouched. It returns the largest
// error relative to the scale.
func Check(tc Case, c []float32, ldc int, want, scale []float64, tol float64) (float64, error) {
	var worst float64
	for i := 0; i < tc.M; i++ {
		for j := 0; j < ldc; j++ {
			got := float64(c[i*ldc+j])
			if j >= tc.N {
				if got != Sentinel {
					return 0, fmt.Errorf("%v: C[%d][%d] (row padding) = %g, want it untouched", tc, i, j, got)
				}
				continue
			}
			w, sc := want[i*tc.N+j], scale[i*tc.N+j]
			rel := math.Abs(got-w) / math.Max(sc, 1e-30)
			if !(rel <= tol) {
				return 0, fmt.Errorf("%v: C[%d][%d] = %g, want %g (error %.3g of the scale %.3g, tolerance %g)", tc, i, j, got, w, rel, sc, tol)
			}
			worst = max(worst, rel)
		}
	}
	return worst, nil
}

// RandFloats returns n values uniform in [-1, 1).
func RandFloats(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

// Compute writes the reference product of the operands into c, as a
// backend that computes on the CPU does.
func Compute(tc Case, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	want, _ := Ref(tc, a, lda, b, ldb, c, ldc)
	for i := 0; i < tc.M; i++ {
		for j := 0; j < tc.N; j++ {
			c[i*ldc+j] = float32(want[i*tc.N+j])
		}
	}
}
