package nn

import (
	"github.com/mam-go/mam-go/internal/gemmtest"
	"math"
	"math/rand"
	"sync/atomic"
	"testing"
)

// fakeBackend is a GemmBackend that computes the reference (or declines)
// and records what it was given.
type fakeBackend struct {
	decline bool
	calls   atomic.Int32
	last    [5]int // m, n, k, lda, ldb of the last call
}

func (f *fakeBackend) gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) bool {
	f.calls.Add(1)
	f.last = [5]int{m, n, k, lda, ldb}
	if f.decline {
		return false
	}
	gemmtest.Compute(gemmtest.Case{M: m, N: n, K: k, TransA: transA, TransB: transB, Alpha: alpha, Beta: beta}, a, lda, b, ldb, c, ldc)
	return true
}

func TestGemmBackend(t *testing.T) {
	t.Cleanup(func() { SetGemmBackend(nil, 0) })
	for _, tc := range []struct {
		name      string
		c         gemmtest.Case
		minFLOPs  int64 // relative to 2*m*n*k: the threshold is flops+minFLOPs
		decline   bool
		wantCalls int32
	}{
		{"NN at threshold", gemmtest.Case{M: 16, N: 24, K: 8, Alpha: 1}, 0, false, 1},
		{"NT padded", gemmtest.Case{M: 16, N: 24, K: 8, TransB: true, Alpha: 1, Pad: 3}, 0, false, 1},
		{"TN beta", gemmtest.Case{M: 9, N: 33, K: 17, TransA: true, Alpha: 0.5, Beta: 2, Pad: 1}, -100, false, 1},
		{"TT padded beta", gemmtest.Case{M: 31, N: 7, K: 12, TransA: true, TransB: true, Alpha: -1, Beta: 1, Pad: 5}, 0, false, 1},
		{"below threshold", gemmtest.Case{M: 16, N: 24, K: 8, Alpha: 1}, 1, false, 0},
		{"declined", gemmtest.Case{M: 16, N: 24, K: 8, TransA: true, Alpha: 1, Beta: 1, Pad: 2}, 0, true, 1},
		{"alpha zero stays", gemmtest.Case{M: 16, N: 24, K: 8, Beta: 2}, -1000, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			a, lda, b, ldb, cm, ldc := c.Operands(rand.New(rand.NewSource(int64(c.M*1000 + c.N*10 + c.K))))
			want, scale := gemmtest.Ref(c, a, lda, b, ldb, cm, ldc)
			f := &fakeBackend{decline: tc.decline}
			SetGemmBackend(f.gemm, 2*int64(c.M*c.N*c.K)+tc.minFLOPs)
			Gemm(c.TransA, c.TransB, c.M, c.N, c.K, c.Alpha, a, lda, b, ldb, c.Beta, cm, ldc)
			SetGemmBackend(nil, 0)

			if got := f.calls.Load(); got != tc.wantCalls {
				t.Fatalf("backend called %d times, want %d", got, tc.wantCalls)
			}
			if wantArgs := [5]int{c.M, c.N, c.K, lda, ldb}; tc.wantCalls > 0 && f.last != wantArgs {
				t.Errorf("backend got m, n, k, lda, ldb = %v, want %v", f.last, wantArgs)
			}
			worst, err := gemmtest.Check(c, cm, ldc, want, scale, 1e-5)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("max error %.3g of the scale", worst)
		})
	}
}

// TestGemmBackendRestore checks that a nil backend sends every product back
// to the CPU.
func TestGemmBackendRestore(t *testing.T) {
	t.Cleanup(func() { SetGemmBackend(nil, 0) })
	rng := rand.New(rand.NewSource(7))
	m, n, k := 8, 8, 8
	a, b, c := randFloats(rng, m*k), randFloats(rng, k*n), make([]float32, m*n)
	f := &fakeBackend{}
	SetGemmBackend(f.gemm, 0)
	Gemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	SetGemmBackend(nil, 0)
	Gemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	if got := f.calls.Load(); got != 1 {
		t.Fatalf("backend called %d times, want 1 (installed) + 0 (removed)", got)
	}
}

// TestGemmBackendBadArgs checks that arguments are checked before the
// backend sees them: Gemm panics and the backend is never called.
func TestGemmBackendBadArgs(t *testing.T) {
	t.Cleanup(func() { SetGemmBackend(nil, 0) })
	ok := make([]float32, 12)
	for _, tc := range []struct {
		name string
		run  func()
	}{
		{"lda too small", func() { Gemm(false, false, 2, 2, 3, 1, ok, 2, ok, 2, 0, ok, 2) }},
		{"short B", func() { Gemm(false, true, 2, 5, 3, 1, ok, 3, ok[:10], 3, 0, ok, 5) }},
		{"short C", func() { Gemm(false, false, 3, 4, 2, 1, ok, 2, ok, 4, 0, ok[:11], 4) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeBackend{}
			SetGemmBackend(f.gemm, 0)
			defer func() {
				SetGemmBackend(nil, 0)
				if recover() == nil {
					t.Error("no panic")
				}
				if n := f.calls.Load(); n != 0 {
					t.Errorf("backend called %d times with bad arguments", n)
				}
			}()
			tc.run()
		})
	}
}

func TestGemmFLOPs(t *testing.T) {
	for _, tc := range []struct {
		m, n, k int
		want    int64
	}{
		{1, 1, 1, 2},
		{64, 4096, 768, 2 * 64 * 4096 * 768},
		{1 << 20, 1 << 20, 1 << 20, 1 << 61},
		{1 << 21, 1 << 21, 1 << 20, math.MaxInt64}, // 2^63 overflows
		{1 << 21, 1 << 21, 1 << 21, math.MaxInt64},
	} {
		if got := gemmFLOPs(tc.m, tc.n, tc.k); got != tc.want {
			t.Errorf("gemmFLOPs(%d, %d, %d) = %d, want %d", tc.m, tc.n, tc.k, got, tc.want)
		}
	}
}
