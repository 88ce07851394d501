//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
)

// initOnce runs cuInit once per process.
var initOnce = sync.OnceValue(driverInit)

// Available reports whether the CUDA driver initialises and sees at least
// one device.
func Available() bool {
	if initOnce() != nil {
		return false
	}
	n, err := deviceCount()
	return err == nil && n > 0
}

// Device is an NVIDIA GPU with its primary context and a cuBLAS handle,
// driven from one goroutine locked to its OS thread. Its methods are safe
// for concurrent use; the device's work runs one call at a time.
type Device struct {
	ordinal int
	info    deviceInfo
	tf32    bool

	mu     sync.RWMutex // write-held by Close, read-held around each job
	closed bool
	jobs   chan func()
	exited chan struct{}

	errMu   sync.Mutex
	lastErr error

	// Owned by the worker goroutine.
	pc       *primaryContext
	blas     *blasHandle
	bufA     devBuf
	bufB     devBuf
	bufC     devBuf
	teardown error
}

// Open opens GPU number ordinal (0 for the first): it retains the device's
// primary context on a goroutine locked to its OS thread and creates a
// cuBLAS handle there. Close releases them.
func Open(ordinal int, opts ...Option) (*Device, error) {
	if err := initOnce(); err != nil {
		return nil, err
	}
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	d := &Device{ordinal: ordinal, tf32: cfg.tf32, jobs: make(chan func()), exited: make(chan struct{})}
	started := make(chan error, 1)
	go d.worker(started)
	if err := <-started; err != nil {
		return nil, fmt.Errorf("cuda: device %d: %w", ordinal, err)
	}
	return d, nil
}

// worker owns the OS thread on which the context is current. It never
// unlocks the thread: the thread, with its context binding, ends with it.
func (d *Device) worker(started chan<- error) {
	runtime.LockOSThread()
	defer close(d.exited)
	if err := d.setup(); err != nil {
		d.release()
		started <- err
		return
	}
	started <- nil
	for job := range d.jobs {
		job()
	}
}

// setup queries the device, makes its primary context current and creates
// the cuBLAS handle. It runs on the worker.
func (d *Device) setup() error {
	info, err := queryDevice(d.ordinal)
	if err != nil {
		return err
	}
	d.info = info
	if d.pc, err = retainContext(info.dev); err != nil {
		return err
	}
	d.blas, err = newBLAS(d.tf32)
	return err
}

// release frees what setup and the products made, in reverse order. It
// runs on the worker.
func (d *Device) release() error {
	var errs []error
	for _, b := range []*devBuf{&d.bufA, &d.bufB, &d.bufC} {
		errs = append(errs, b.free())
	}
	if d.blas != nil {
		errs = append(errs, d.blas.destroy())
		d.blas = nil
	}
	if d.pc != nil {
		errs = append(errs, d.pc.release())
		d.pc = nil
	}
	return errors.Join(errs...)
}

// do runs fn on the worker and returns its error.
func (d *Device) do(fn func() error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return ErrClosed
	}
	done := make(chan error, 1)
	d.jobs <- func() { done <- fn() }
	return <-done
}

// Close waits for the work in progress, frees the device buffers, the
// cuBLAS handle and the context, and ends the worker. Closing twice is
// harmless; a closed Device's Gemm returns false.
func (d *Device) Close() error {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	done := make(chan error, 1)
	d.jobs <- func() { done <- d.release() }
	err := <-done
	close(d.jobs)
	<-d.exited
	if err != nil {
		return fmt.Errorf("cuda: closing device %d: %w", d.ordinal, err)
	}
	return nil
}

// Name is the device's name, as "NVIDIA H100 80GB HBM3", prefixed with
// "cuda:<ordinal> ".
func (d *Device) Name() string {
	if d == nil {
		return ""
	}
	return fmt.Sprintf("cuda:%d %s", d.ordinal, d.info.name)
}

// TotalMemory is the device's memory in bytes.
func (d *Device) TotalMemory() int64 {
	if d == nil {
		return 0
	}
	return d.info.totalMem
}

// ComputeCapability is the device's compute capability (9, 0 for an H100).
func (d *Device) ComputeCapability() (major, minor int) {
	if d == nil {
		return 0, 0
	}
	return d.info.major, d.info.minor
}

// Err returns the error that last made Gemm return false, nil if none did.
func (d *Device) Err() error {
	if d == nil {
		return nil
	}
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return d.lastErr
}

// Gemm computes C = alpha*op(A)*op(B) + beta*C for row-major float32
// matrices on the device, with nn.Gemm's arguments: op(A) is m x k (A is
// k x m when transA), op(B) is k x n (B is n x k when transB), C is m x n,
// lda, ldb, ldc are row strides; when beta is 0, C is not read. A, B (and C
// when beta != 0) are copied to the device, cuBLAS multiplies them and C is
// copied back, leaving the elements between C's rows alone.
//
// It has the signature of nn.GemmBackend: it returns false, with C
// unchanged, when it did not compute the product (a closed device, invalid
// or unsupported arguments such as k == 0 or sizes above 2^31-1, or any
// CUDA error, which Err then reports), so that the caller runs it on the
// CPU. Errors of the product itself are caught by a synchronisation before
// C is written; only a failure of the final copy could leave C partly
// written, which matters when beta != 0.
func (d *Device) Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) bool {
	if d == nil {
		return false
	}
	if err := d.gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); err != nil {
		d.errMu.Lock()
		d.lastErr = err
		d.errMu.Unlock()
		return false
	}
	return true
}

// stored is the (rows, cols) of a rows x cols operand as stored, transposed
// or not.
func stored(rows, cols int, trans bool) (int, int) {
	if trans {
		return cols, rows
	}
	return rows, cols
}

// gemm checks Gemm's arguments and runs the product on the worker.
func (d *Device) gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) error {
	if m <= 0 || n <= 0 || k <= 0 {
		return fmt.Errorf("cuda: Gemm: sizes m=%d n=%d k=%d must be positive", m, n, k)
	}
	// A is ar x ac, B is br x bc, as stored (row-major).
	ar, ac := stored(m, k, transA)
	br, bc := stored(k, n, transB)
	if err := checkMatrix("A", a, ar, ac, lda); err != nil {
		return err
	}
	if err := checkMatrix("B", b, br, bc, ldb); err != nil {
		return err
	}
	if err := checkMatrix("C", c, m, n, ldc); err != nil {
		return err
	}
	return d.do(func() error {
		if err := d.bufA.ensure(int64(ar) * int64(ac) * 4); err != nil {
			return err
		}
		if err := d.bufB.ensure(int64(br) * int64(bc) * 4); err != nil {
			return err
		}
		if err := d.bufC.ensure(int64(m) * int64(n) * 4); err != nil {
			return err
		}
		// Packed on the device: A (ar, ac), B (br, bc), C (m, n).
		if err := upload(&d.bufA, a, ar, ac, lda); err != nil {
			return err
		}
		if err := upload(&d.bufB, b, br, bc, ldb); err != nil {
			return err
		}
		if beta != 0 {
			if err := upload(&d.bufC, c, m, n, ldc); err != nil {
				return err
			}
		}
		// cuBLAS is column-major: the row-major C (m, n) is the column-major
		// C^T (n, m), and C^T = op(B)^T op(A)^T. The packed row-major B read
		// column-major is B^T with leading dimension bc, so cuBLAS multiplies
		// (opB: n, k) by (opA: k, m) into C^T (n, m), leading dimension n.
		if err := d.blas.sgemm(transB, transA, n, m, k, alpha, &d.bufB, bc, &d.bufA, ac, beta, &d.bufC, n); err != nil {
			return err
		}
		// Execution errors surface here, before C is touched.
		if err := synchronize(); err != nil {
			return err
		}
		return download(c, ldc, &d.bufC, m, n)
	})
}

// checkMatrix reports an error unless s holds a rows x cols matrix (both
// positive) with row stride ld, all within cuBLAS's 32-bit sizes.
func checkMatrix(name string, s []float32, rows, cols, ld int) error {
	if rows > math.MaxInt32 || cols > math.MaxInt32 || ld > math.MaxInt32 {
		return fmt.Errorf("cuda: Gemm: %s is %dx%d with stride %d, beyond cuBLAS's 32-bit sizes", name, rows, cols, ld)
	}
	if ld < cols {
		return fmt.Errorf("cuda: Gemm: ld%s=%d is less than the %d columns of %s", name, ld, cols, name)
	}
	if need := int64(rows-1)*int64(ld) + int64(cols); int64(len(s)) < need {
		return fmt.Errorf("cuda: Gemm: %s has %d elements, needs %d for %dx%d with stride %d", name, len(s), need, rows, cols, ld)
	}
	return nil
}
