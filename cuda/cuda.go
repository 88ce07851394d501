// Package cuda runs mam-go's matrix products on an NVIDIA GPU.
//
// It is compiled in with the build tag `cuda` (cgo, the CUDA driver API and
// cuBLAS: cuda.h and cublas_v2.h to build, libcuda and libcublas to link and
// run). Without the tag every entry point reports ErrNotCompiled, and the
// rest of mam-go stays pure Go.
//
// # What runs on the GPU
//
// This is the first step of the issue "CUDA", which asks for the whole
// pipeline on the GPU; it is not there yet. Today a Device computes the
// large GEMMs of the CPU graphs: installed as nn's GEMM backend
// (nn.SetGemmBackend, or mam.SetDevice), every nn.Gemm product above a
// size threshold (the Linear layers of the image encoder: qkv, proj and the
// MLP, and the other large Linear products) is copied to the device, run by
// cublasSgemm (float32, or TF32 tensor cores with WithTF32) and copied back,
// per call. Everything else stays on the CPU: convolutions, the fused
// windowed/global attention, normalisations, activations, resizes and the
// refinement.
//
// Not done yet, in the order they would pay off:
//   - weights resident on the device (today each product uploads its
//     weight matrix again);
//   - per-op kernels (attention, layer norm, GELU, convolutions, resizes)
//     compiled at run time through NVRTC, so that activations stay on the
//     device between ops instead of crossing PCIe for every GEMM;
//   - the image embedding kept on the device between the prompts of a
//     session (prompt encoder, mask decoder and M2M on the GPU);
//   - pinned host buffers and streams to overlap copies with compute.
//
// The driver API's contexts are per OS thread: a Device owns one goroutine
// locked to its OS thread, on which the device's primary context is current,
// and runs every driver and cuBLAS call there, one at a time. Device buffers
// (A, B and C of a product) are kept between calls and only grown.
//
// The code under the cuda tag compiles and is vetted here, but it has not
// run on a GPU yet: its tests (go test -tags cuda ./cuda/) skip when no
// device can be opened and must be run on a machine with one.
//
// Only this package may be built with -tags cuda: gorgonia.org/gorgonia
// uses the same tag for its own CUDA engine, which needs cuDNN, so the
// packages that import it (nn, and so sam, m2m and mam) do not compile with it.
// That is why this package imports neither gorgonia nor nn, and why its
// Device plugs into nn through plain Go functions.
package cuda

import "errors"

// ErrNotCompiled is returned when the package was built without the cuda tag.
var ErrNotCompiled = errors.New("cuda: CUDA support is not compiled in (build with -tags cuda)")

// ErrClosed is returned for work asked of a closed Device.
var ErrClosed = errors.New("cuda: device is closed")

// Option configures Open.
type Option func(*config)

type config struct {
	tf32 bool
}

// WithTF32 lets cuBLAS use TF32 tensor-core math (compute capability 8.0
// and up) for the float32 products: about 1e-3 relative error instead of
// float32's 1e-6, for several times the throughput.
func WithTF32() Option { return func(c *config) { c.tf32 = true } }
