package nn

import (
	"math"
	"sync/atomic"
)

// GemmBackend computes a product with Gemm's signature and meaning
// somewhere else than the CPU kernels (on a GPU: see package
// github.com/mam-go/mam-go/cuda). It returns true when it has written C,
// and false to have Gemm run the product on the CPU instead; a backend that
// returns false must have left C unchanged. It receives only products that
// passed Gemm's argument checks, with m, n, k > 0 and alpha != 0. It may be
// called from several goroutines at once.
type GemmBackend func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) bool

// gemmBackendSet is an installed backend and its size threshold.
type gemmBackendSet struct {
	f        GemmBackend
	minFLOPs int64
}

// gemmBackend is the installed backend, nil for the CPU only.
var gemmBackend atomic.Pointer[gemmBackendSet]

// SetGemmBackend routes every Gemm call of at least minFLOPs floating-point
// operations (2*m*n*k) to f; smaller products, which would cost more to
// move than to compute, stay on the CPU. A nil f restores the CPU path for
// every product. The backend is process-wide: it serves every model and
// graph, and calls already running finish where they started.
//
// Only Gemm itself is routed: kernels that call the CPU GEMM on their own
// goroutine (the fused attention of Attention and friends) keep running on
// the CPU.
func SetGemmBackend(f GemmBackend, minFLOPs int64) {
	if f == nil {
		gemmBackend.Store(nil)
		return
	}
	gemmBackend.Store(&gemmBackendSet{f: f, minFLOPs: max(minFLOPs, 0)})
}

// gemmOffload offers Gemm's product to the installed backend and reports
// whether the backend computed it. Arguments are checked first (panicking as
// Gemm documents), so that a backend never reads or writes out of bounds.
func gemmOffload(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) bool {
	be := gemmBackend.Load()
	if be == nil || m <= 0 || n <= 0 || k <= 0 || alpha == 0 {
		return false
	}
	if gemmFLOPs(m, n, k) < be.minFLOPs {
		return false
	}
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, true)
	return be.f(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemmFLOPs is 2*m*n*k for positive sizes, saturating at MaxInt64.
func gemmFLOPs(m, n, k int) int64 {
	f := 2 * float64(m) * float64(n) * float64(k)
	if f >= math.MaxInt64 {
		return math.MaxInt64
	}
	return 2 * int64(m) * int64(n) * int64(k)
}
