//go:build purego || !amd64

package nn

// gemmDefault is the kernel Gemm uses: plain Go on this build.
var gemmDefault = gemmGo

// gemmKernels lists the kernels this CPU can run, fastest first.
var gemmKernels = []*gemmKernel{gemmGo}

// hasPackT8 reports whether packT8 has an assembly implementation.
const hasPackT8 = false

// packT8 is never called on this build (hasPackT8 is false).
func packT8(dst, src []float32, offs *[8]int, kc4, stride int) {}

// packT6 is never called on this build (hasPackT8 is false).
func packT6(dst, src []float32, offs *[6]int, kc4 int) {}
