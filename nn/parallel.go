package nn

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
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
	// Chunks taken by helpers are finishing: wait for them.
	waitFor(&t.left, &t.waiter, true)
}

// parTask is one ParallelFor call, shared with its helpers. A helper that
// comes late finds no chunk left and returns.
type parTask struct {
	fn               func(lo, hi int)
	n, chunk, chunks int
	next, left       atomic.Int64
	waiter           waiter
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
		if t.left.Add(-1) == 0 {
			t.waiter.wake()
		}
	}
}

// waitSpin is how long a caller waiting for its helpers polls before it
// parks. Polling hands over in well under a microsecond where a parked
// goroutine can take hundreds to wake on a virtual machine; but a helper
// whose thread the OS has descheduled (a loaded host) can take
// milliseconds, which polling would burn: past waitSpin the caller parks
// and gives the CPU back.
const waitSpin = 30 * time.Microsecond

// waiter lets one goroutine park until a count reaches zero; the goroutine
// that brings it to zero calls wake. It is reusable once the wait is over.
type waiter struct {
	parked atomic.Bool
	ch     chan struct{}
}

// wake releases the waiter if it is parked; call it after bringing the
// count to zero.
func (w *waiter) wake() {
	if w.parked.Load() && w.parked.CompareAndSwap(true, false) {
		w.ch <- struct{}{}
	}
}

// waitFor returns once *count is zero (it only decreases by then),
// polling for waitSpin, then parking on w. With steal, it takes the
// helpers' nested work from gemmQueue meanwhile (products run inside their
// chunks offer phases to idle goroutines).
func waitFor(count *atomic.Int64, w *waiter, steal bool) {
	if count.Load() <= 0 {
		return
	}
	var start time.Time
	for i := 0; ; i++ {
		if count.Load() <= 0 {
			return
		}
		if steal {
			select {
			case msg := <-gemmQueue:
				msg.run()
				continue
			default:
			}
		}
		if i%64 == 63 {
			if start.IsZero() {
				start = time.Now()
			} else if time.Since(start) > waitSpin {
				break
			}
			runtime.Gosched()
		}
	}
	if w.ch == nil {
		w.ch = make(chan struct{}, 1)
	}
	w.parked.Store(true)
	if count.Load() <= 0 && w.parked.CompareAndSwap(true, false) {
		return // finished meanwhile; nobody wakes us
	}
	<-w.ch
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
