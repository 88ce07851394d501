package mam

import "github.com/mam-go/mam-go/nn"

// Device is an accelerator that can take the large matrix products of the
// model off the CPU. *cuda.Device (package github.com/mam-go/mam-go/cuda,
// built with the cuda tag) is one:
//
//	d, err := cuda.Open(0)
//	if err != nil { ... } // no GPU, or built without -tags cuda: stay on the CPU
//	defer d.Close()
//	mam.SetDevice(d)
//	defer mam.SetDevice(nil)
type Device interface {
	// Name names the device, for logs.
	Name() string
	// Gemm computes a row-major float32 product with nn.Gemm's arguments
	// and returns true, or returns false, leaving C unchanged, to have the
	// CPU compute it (nn.GemmBackend).
	Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) bool
}

// deviceMinFLOPs is the smallest product (2*m*n*k) sent to a Device. Every
// product is copied to the device and back, so below about 300x300x300 the
// copies cost more than the CPU's multiply; the value is an estimate for a
// PCIe GPU next to a 16-core CPU, to be tuned on real hardware. Tests
// lower it to route the tiny model's products too.
var deviceMinFLOPs int64 = 1 << 26

// SetDevice routes the large matrix products (the Linear layers of the
// image encoder, mainly) of every model in the process to d, falling back
// to the CPU for any product d declines; nil puts everything back on the
// CPU. It is process-wide (nn.SetGemmBackend): d serves every Model, those
// loaded before and after, until the next SetDevice. Put the CPU back
// before closing d; a closed device declines every product, so forgetting
// to only costs the fallback.
//
// Only the GEMMs run on the device today, copied to and from it per call;
// see package cuda for what is still on the CPU.
func SetDevice(d Device) {
	if d == nil {
		nn.SetGemmBackend(nil, 0)
		return
	}
	nn.SetGemmBackend(d.Gemm, deviceMinFLOPs)
}
