package mam

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// parallelRange runs fn over [0, n) split into contiguous chunks on up to
// GOMAXPROCS goroutines (about four chunks per goroutine, taken as they
// come). fn must be safe to run concurrently on disjoint ranges.
func parallelRange(n int, fn func(lo, hi int)) {
	if err := safeParallelRange(n, fn); err != nil {
		panic(err) // only for our own loops: a panic there is a bug
	}
}

// safeParallelRange is parallelRange that turns a panic in fn (from an
// image.Image implementation that does not keep its promises, say) into an
// error instead of crashing the program.
func safeParallelRange(n int, fn func(lo, hi int)) (err error) {
	if n <= 0 {
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("mam: %w: %v", ErrInvalidInput, p)
			}
		}()
		fn(0, n)
		return nil
	}
	chunks := min(n, 4*workers)
	size := (n + chunks - 1) / chunks
	chunks = (n + size - 1) / size
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	for k := 0; k < workers; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					once.Do(func() { err = fmt.Errorf("mam: %w: %v", ErrInvalidInput, p) })
					next.Store(int64(chunks)) // the others stop early
				}
			}()
			for {
				c := int(next.Add(1) - 1)
				if c >= chunks {
					return
				}
				lo := c * size
				fn(lo, min(lo+size, n))
			}
		}()
	}
	wg.Wait()
	return err
}
