//go:build cuda

package cuda

// Thin cgo bindings to the few CUDA driver API and cuBLAS calls the package
// uses. gorgonia.org/cu is not used because its package init exits the
// process when cuInit fails, which would make Available and the tests'
// skip on a machine without a GPU impossible. Every call is wrapped in a C
// function, so that the headers' versioned names (cuMemAlloc_v2, ...) are
// resolved by the C compiler.

/*
#cgo CFLAGS: -I/usr/local/cuda/include
#cgo LDFLAGS: -L/usr/local/cuda/lib64 -lcublas -lcuda
#include <string.h>
#include <cuda.h>
#include <cublas_v2.h>

static CUresult mg_init(void) { return cuInit(0); }
static CUresult mg_device_count(int *n) { return cuDeviceGetCount(n); }
static CUresult mg_device_get(CUdevice *d, int ordinal) { return cuDeviceGet(d, ordinal); }
static CUresult mg_device_name(CUdevice d, char *buf, int len) { return cuDeviceGetName(buf, len, d); }
static CUresult mg_device_total_mem(CUdevice d, size_t *bytes) { return cuDeviceTotalMem(bytes, d); }

static CUresult mg_device_cc(CUdevice d, int *major, int *minor) {
	CUresult r = cuDeviceGetAttribute(major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d);
	if (r != CUDA_SUCCESS) return r;
	return cuDeviceGetAttribute(minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d);
}

static CUresult mg_ctx_retain(CUcontext *ctx, CUdevice d) { return cuDevicePrimaryCtxRetain(ctx, d); }
static CUresult mg_ctx_release(CUdevice d) { return cuDevicePrimaryCtxRelease(d); }
static CUresult mg_ctx_set(CUcontext ctx) { return cuCtxSetCurrent(ctx); }
static CUresult mg_ctx_sync(void) { return cuCtxSynchronize(); }

static CUresult mg_alloc(CUdeviceptr *p, size_t bytes) { return cuMemAlloc(p, bytes); }
static CUresult mg_free(CUdeviceptr p) { return cuMemFree(p); }

// mg_copy_rows copies height rows of width bytes between the host, rows
// hostPitch bytes apart, and packed rows on the device: to the device when
// up, from it otherwise (leaving the host bytes between rows alone).
static CUresult mg_copy_rows(int up, CUdeviceptr dev, void *host, size_t hostPitch, size_t width, size_t height) {
	if (hostPitch == width) {
		return up ? cuMemcpyHtoD(dev, host, width * height) : cuMemcpyDtoH(host, dev, width * height);
	}
	CUDA_MEMCPY2D p;
	memset(&p, 0, sizeof p);
	if (up) { // host rows to packed device rows
		p.srcMemoryType = CU_MEMORYTYPE_HOST; p.srcHost = host; p.srcPitch = hostPitch;
		p.dstMemoryType = CU_MEMORYTYPE_DEVICE; p.dstDevice = dev; p.dstPitch = width;
	} else { // packed device rows to host rows
		p.srcMemoryType = CU_MEMORYTYPE_DEVICE; p.srcDevice = dev; p.srcPitch = width;
		p.dstMemoryType = CU_MEMORYTYPE_HOST; p.dstHost = host; p.dstPitch = hostPitch;
	}
	p.WidthInBytes = width;
	p.Height = height;
	return cuMemcpy2D(&p);
}

// mg_upload copies height rows of width bytes, srcPitch bytes apart on the
// host, to packed rows on the device.
static CUresult mg_upload(CUdeviceptr dst, const void *src, size_t srcPitch, size_t width, size_t height) {
	return mg_copy_rows(1, dst, (void *)src, srcPitch, width, height);
}

// mg_download copies height packed rows of width bytes from the device to
// rows dstPitch bytes apart on the host.
static CUresult mg_download(void *dst, size_t dstPitch, CUdeviceptr src, size_t width, size_t height) {
	return mg_copy_rows(0, src, dst, dstPitch, width, height);
}

static const char *mg_error_name(CUresult r) {
	const char *s = NULL;
	if (cuGetErrorName(r, &s) != CUDA_SUCCESS || s == NULL) return "unknown CUresult";
	return s;
}

static cublasStatus_t mg_blas_create(cublasHandle_t *h) { return cublasCreate(h); }
static cublasStatus_t mg_blas_destroy(cublasHandle_t h) { return cublasDestroy(h); }

static cublasStatus_t mg_blas_math(cublasHandle_t h, int tf32) {
	return cublasSetMathMode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
}

// mg_sgemm is column-major cublasSgemm on device pointers.
static cublasStatus_t mg_sgemm(cublasHandle_t h, int transA, int transB, int m, int n, int k,
		float alpha, CUdeviceptr a, int lda, CUdeviceptr b, int ldb, float beta, CUdeviceptr c, int ldc) {
	return cublasSgemm(h, transA ? CUBLAS_OP_T : CUBLAS_OP_N, transB ? CUBLAS_OP_T : CUBLAS_OP_N,
		m, n, k, &alpha, (const float *)a, lda, (const float *)b, ldb, &beta, (float *)c, ldc);
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// driverError is a failed CUDA driver API call.
type driverError struct {
	op   string
	code C.CUresult
}

func (e *driverError) Error() string {
	return fmt.Sprintf("cuda: %s: %s (%d)", e.op, C.GoString(C.mg_error_name(e.code)), int(e.code))
}

// check turns a driver API result into an error naming op.
func check(op string, r C.CUresult) error {
	if r == C.CUDA_SUCCESS {
		return nil
	}
	return &driverError{op: op, code: r}
}

// blasError is a failed cuBLAS call.
type blasError struct {
	op     string
	status C.cublasStatus_t
}

func (e *blasError) Error() string {
	name, ok := blasStatusNames[e.status]
	if !ok {
		name = "unknown cublasStatus_t"
	}
	return fmt.Sprintf("cuda: %s: %s (%d)", e.op, name, int(e.status))
}

// blasStatusNames names cuBLAS's error statuses.
var blasStatusNames = map[C.cublasStatus_t]string{
	C.CUBLAS_STATUS_NOT_INITIALIZED: "CUBLAS_STATUS_NOT_INITIALIZED", C.CUBLAS_STATUS_ALLOC_FAILED: "CUBLAS_STATUS_ALLOC_FAILED",
	C.CUBLAS_STATUS_INVALID_VALUE: "CUBLAS_STATUS_INVALID_VALUE", C.CUBLAS_STATUS_ARCH_MISMATCH: "CUBLAS_STATUS_ARCH_MISMATCH",
	C.CUBLAS_STATUS_MAPPING_ERROR: "CUBLAS_STATUS_MAPPING_ERROR", C.CUBLAS_STATUS_EXECUTION_FAILED: "CUBLAS_STATUS_EXECUTION_FAILED",
	C.CUBLAS_STATUS_INTERNAL_ERROR: "CUBLAS_STATUS_INTERNAL_ERROR", C.CUBLAS_STATUS_NOT_SUPPORTED: "CUBLAS_STATUS_NOT_SUPPORTED",
	C.CUBLAS_STATUS_LICENSE_ERROR: "CUBLAS_STATUS_LICENSE_ERROR",
}

// checkBLAS turns a cuBLAS status into an error naming op.
func checkBLAS(op string, s C.cublasStatus_t) error {
	if s == C.CUBLAS_STATUS_SUCCESS {
		return nil
	}
	return &blasError{op: op, status: s}
}

// driverInit initialises the driver API once per process.
func driverInit() error { return check("cuInit", C.mg_init()) }

// deviceCount is the number of CUDA devices (driverInit must have succeeded).
func deviceCount() (int, error) {
	var n C.int
	if err := check("cuDeviceGetCount", C.mg_device_count(&n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

// deviceInfo is what Open learns about a device.
type deviceInfo struct {
	dev          C.CUdevice
	name         string
	totalMem     int64
	major, minor int
}

// queryDevice finds device ordinal and reads its properties.
func queryDevice(ordinal int) (deviceInfo, error) {
	var info deviceInfo
	if err := check("cuDeviceGet", C.mg_device_get(&info.dev, C.int(ordinal))); err != nil {
		return info, err
	}
	var buf [256]C.char
	if err := check("cuDeviceGetName", C.mg_device_name(info.dev, &buf[0], C.int(len(buf)))); err != nil {
		return info, err
	}
	info.name = C.GoString(&buf[0])
	var total C.size_t
	if err := check("cuDeviceTotalMem", C.mg_device_total_mem(info.dev, &total)); err != nil {
		return info, err
	}
	info.totalMem = int64(total)
	var major, minor C.int
	if err := check("cuDeviceGetAttribute", C.mg_device_cc(info.dev, &major, &minor)); err != nil {
		return info, err
	}
	info.major, info.minor = int(major), int(minor)
	return info, nil
}

// devBuf is a device allocation reused while large enough.
type devBuf struct {
	ptr   C.CUdeviceptr
	bytes int64
}

// bufQuantum is the granularity device buffers grow by.
const bufQuantum = 1 << 20

// ensure makes b hold at least bytes (> 0), freeing the old allocation
// before making a larger one so that the peak stays low.
func (b *devBuf) ensure(bytes int64) error {
	if bytes <= b.bytes {
		return nil
	}
	if err := b.free(); err != nil {
		return err
	}
	size := (bytes + bufQuantum - 1) / bufQuantum * bufQuantum
	var p C.CUdeviceptr
	if err := check(fmt.Sprintf("cuMemAlloc(%d bytes)", size), C.mg_alloc(&p, C.size_t(size))); err != nil {
		return err
	}
	b.ptr, b.bytes = p, size
	return nil
}

// free releases b's allocation, if any.
func (b *devBuf) free() error {
	if b.bytes == 0 {
		return nil
	}
	err := check("cuMemFree", C.mg_free(b.ptr))
	b.ptr, b.bytes = 0, 0
	return err
}

// upload copies the rows x cols matrix of s (row stride ld) into b, packed.
// s must hold (rows-1)*ld+cols elements and b rows*cols.
func upload(b *devBuf, s []float32, rows, cols, ld int) error {
	return check("cuMemcpy2D (upload)", C.mg_upload(b.ptr, unsafe.Pointer(&s[0]), C.size_t(ld*4), C.size_t(cols*4), C.size_t(rows)))
}

// download copies the packed rows x cols matrix in b into s (row stride
// ld), leaving the elements between rows alone.
func download(s []float32, ld int, b *devBuf, rows, cols int) error {
	return check("cuMemcpy2D (download)", C.mg_download(unsafe.Pointer(&s[0]), C.size_t(ld*4), b.ptr, C.size_t(cols*4), C.size_t(rows)))
}

// blasHandle is a cuBLAS handle, bound to the context current when made.
type blasHandle struct{ h C.cublasHandle_t }

// newBLAS makes a cuBLAS handle in the current context, with TF32
// tensor-core math when tf32 is set and strict float32 math otherwise.
func newBLAS(tf32 bool) (*blasHandle, error) {
	var h C.cublasHandle_t
	if err := checkBLAS("cublasCreate", C.mg_blas_create(&h)); err != nil {
		return nil, err
	}
	mode := C.int(0)
	if tf32 {
		mode = 1
	}
	if err := checkBLAS("cublasSetMathMode", C.mg_blas_math(h, mode)); err != nil {
		C.mg_blas_destroy(h)
		return nil, err
	}
	return &blasHandle{h: h}, nil
}

// destroy releases the handle.
func (h *blasHandle) destroy() error {
	return checkBLAS("cublasDestroy", C.mg_blas_destroy(h.h))
}

// sgemm is column-major C = alpha*op(A)*op(B) + beta*C on device buffers,
// op(A) m x k, op(B) k x n, C m x n.
func (h *blasHandle) sgemm(transA, transB bool, m, n, k int, alpha float32, a *devBuf, lda int, b *devBuf, ldb int, beta float32, c *devBuf, ldc int) error {
	return checkBLAS("cublasSgemm", C.mg_sgemm(h.h, cBool(transA), cBool(transB), C.int(m), C.int(n), C.int(k),
		C.float(alpha), a.ptr, C.int(lda), b.ptr, C.int(ldb), C.float(beta), c.ptr, C.int(ldc)))
}

func cBool(v bool) C.int {
	if v {
		return 1
	}
	return 0
}

// primaryContext is a device's retained primary context.
type primaryContext struct {
	dev C.CUdevice
	ctx C.CUcontext
}

// retainContext retains dev's primary context and makes it current on the
// calling OS thread (which the caller has locked).
func retainContext(dev C.CUdevice) (*primaryContext, error) {
	pc := &primaryContext{dev: dev}
	if err := check("cuDevicePrimaryCtxRetain", C.mg_ctx_retain(&pc.ctx, dev)); err != nil {
		return nil, err
	}
	if err := check("cuCtxSetCurrent", C.mg_ctx_set(pc.ctx)); err != nil {
		C.mg_ctx_release(dev)
		return nil, err
	}
	return pc, nil
}

// release makes no context current on the calling thread and releases the
// primary context.
func (pc *primaryContext) release() error {
	err := check("cuCtxSetCurrent", C.mg_ctx_set(nil))
	if err2 := check("cuDevicePrimaryCtxRelease", C.mg_ctx_release(pc.dev)); err == nil {
		err = err2
	}
	return err
}

// synchronize waits for the current context's work, reporting errors of
// earlier asynchronous launches.
func synchronize() error { return check("cuCtxSynchronize", C.mg_ctx_sync()) }
