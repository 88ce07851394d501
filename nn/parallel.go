package nn

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// ParallelFor runs fn over [0, n) split into contiguous chunks, on the
// calling goroutine and on the helper goroutines that GEMM uses (which
// poll for work between tasks, so that handing a chunk over takes well
// under a microsecond instead of a goroutine start and wake-up). Chunks
// are taken dynamically, about four per thread, so a late helper delays
// little. fn must be safe to run concurrently on disjoint ranges.
func ParallelFor(n int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		if n > 0 {
			fn(0, n)
		}
		return
	}
	chunks := min(n, 4*workers)
	t := &parTask{fn: fn, n: n, chunk: (n + chunks - 1) / chunks}
	t.chunks = (n + t.chunk - 1) / t.chunk
	t.left.Store(int64(t.chunks))
	ensureGemmWorkers(workers - 1)
	for i := 0; i < workers-1; i++ {
		select {
		case gemmQueue <- gemmMsg{t: t}:
		default: // helpers are saturated: the caller does the rest
		}
	}
	t.help()
	// Chunks taken by helpers are finishing: wait by polling, yielding now
	// and then (parking would add a slow wake-up).
	for i := 0; t.left.Load() > 0; i++ {
		if i%64 == 63 {
			runtime.Gosched()
		}
	}
}

// parTask is one ParallelFor call, shared with its helpers. A helper that
// comes late finds no chunk left and returns.
type parTask struct {
	fn               func(lo, hi int)
	n, chunk, chunks int
	next, left       atomic.Int64
}

// help runs chunks until none is left.
func (t *parTask) help() {
	for {
		c := int(t.next.Add(1) - 1)
		if c >= t.chunks {
			return
		}
		lo := c * t.chunk
		t.fn(lo, min(lo+t.chunk, t.n))
		t.left.Add(-1)
	}
}

// onWorkers runs work on min(GOMAXPROCS, units) goroutines, the caller's
// included, and waits for all; work pulls its units from a shared counter.
func onWorkers(units int, work func()) {
	workers := min(runtime.GOMAXPROCS(0), units)
	var wg sync.WaitGroup
	for i := 1; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}
