package nn

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
)

// bufPool recycles float32 buffers between ops (see funcOp's liveness) and
// across runs and graphs, so that a graph run again, or the next stage of
// a pipeline, reuses memory that is already mapped instead of allocating
// and faulting in fresh pages (on a virtual machine a page fault costs a
// few microseconds: 0.5 ms or more per fresh megabyte). A request takes the
// smallest free buffer that holds it, if that is at most twice its size;
// at most maxBytes are kept, and beyond that buffers are left to the
// garbage collector.
type bufPool struct {
	mu       sync.Mutex
	free     [][]float32 // whole buffers (len == cap), by ascending size
	held     int64       // bytes in free
	maxBytes int64
}

var pool = &bufPool{maxBytes: 384 << 20}

// get returns a zeroed buffer of n values.
func (p *bufPool) get(n int) []float32 {
	b := p.take(n)
	if b == nil {
		return make([]float32, n)
	}
	clear(b)
	return b
}

// take returns a free buffer of n values, not zeroed, or nil.
func (p *bufPool) take(n int) []float32 {
	if n <= 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	i, _ := slices.BinarySearchFunc(p.free, n, func(b []float32, n int) int { return len(b) - n })
	if i == len(p.free) || len(p.free[i]) > 2*n {
		return nil
	}
	b := p.free[i]
	p.free = slices.Delete(p.free, i, i+1)
	p.held -= 4 * int64(len(b))
	if poison.Load() {
		nan := float32(math.NaN())
		for j := range b {
			b[j] = nan
		}
	}
	return b[:n]
}

var poison atomic.Bool

// PoisonRecycledBuffers makes every recycled buffer that is handed out
// without zeroing (to OpFull kernels, as scratch) hold NaNs, so that a
// kernel that leaves a value unwritten gives NaN instead of a stale value.
// For tests; it slows runs down.
func PoisonRecycledBuffers(on bool) { poison.Store(on) }

// put gives b (from get or take, or any buffer) back for reuse; the caller
// must not touch it afterwards.
func (p *bufPool) put(b []float32) {
	b = b[:cap(b)]
	n := len(b)
	if n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held+4*int64(n) > p.maxBytes {
		return
	}
	i, _ := slices.BinarySearchFunc(p.free, n, func(b []float32, n int) int { return len(b) - n })
	p.free = slices.Insert(p.free, i, b)
	p.held += 4 * int64(n)
}

// Buffer returns a zeroed buffer of n values from the pool that recycles
// the intermediate tensors of graph runs: kernels outside this package use
// it for scratch memory (already mapped, unlike a fresh allocation), and
// give it back with Recycle when done.
func Buffer(n int) []float32 { return pool.get(n) }

// Scratch is Buffer without the zeroing: its values are whatever the
// buffer last held (NaN under PoisonRecycledBuffers), for scratch a kernel
// overwrites before reading.
func Scratch(n int) []float32 {
	if b := pool.take(n); b != nil {
		return b
	}
	return make([]float32, n)
}

// Recycle gives a buffer (from Buffer, or any buffer no longer used) back
// to the pool; the caller must not touch it afterwards.
func Recycle(b []float32) { pool.put(b) }
