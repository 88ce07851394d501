package nn

import (
	"math/rand"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mam-go/mam-go/internal/gemmtest"
)

// TestParallelFor checks that every index runs exactly once, with chunks
// slow enough that the caller parks (waitSpin) and with products inside
// the chunks that offer their phases to the waiting caller.
func TestParallelFor(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	for _, n := range []int{0, 1, 2, 7, 100} {
		for _, slow := range []bool{false, true} {
			counts := make([]atomic.Int32, n)
			ParallelFor(n, func(lo, hi int) {
				if slow && hi == n {
					time.Sleep(2 * time.Millisecond) // past waitSpin: the caller parks
				}
				for i := lo; i < hi; i++ {
					counts[i].Add(1)
				}
			})
			for i := range counts {
				if c := counts[i].Load(); c != 1 {
					t.Fatalf("n=%d slow=%v: index %d ran %d times", n, slow, i, c)
				}
			}
		}
	}
	// Nested products, large enough to run in parallel.
	const m, k, nn, tasks = 96, 200, 150, 6
	rng := rand.New(rand.NewSource(13))
	a, b := randFloats(rng, tasks*m*k), randFloats(rng, k*nn)
	c := make([]float32, tasks*m*nn)
	for r := 0; r < 3; r++ {
		ParallelFor(tasks, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				Gemm(false, false, m, nn, k, 1, a[i*m*k:(i+1)*m*k], k, b, nn, 0, c[i*m*nn:(i+1)*m*nn], nn)
			}
		})
	}
	tc := gemmtest.Case{M: tasks * m, N: nn, K: k, Alpha: 1}
	want, scale := gemmtest.Ref(tc, a, k, b, nn, nil, nn)
	if _, err := gemmtest.Check(tc, c, nn, want, scale, 2e-6*k); err != nil {
		t.Fatal(err)
	}
}
