//go:build !purego && amd64

package nn

// cpuid executes CPUID with EAX=leaf, ECX=sub.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// xgetbv0 reads XCR0, the register-state components the OS saves.
func xgetbv0() (eax, edx uint32)

//go:noescape
func packT8AVX(dst, src []float32, offs *[8]int, kc4, stride int)

// cpuInfo is what this CPU and OS support.
var cpuInfo = detectCPU()

// hasPackT8 reports whether packT8 can run (the CPU and OS support AVX).
var hasPackT8 = cpuInfo.AVX

// packT8 sets dst[p*stride+q] = src[offs[q]+p] for q < 8, p < kc4 (a
// multiple of 4). The caller checks the bounds.
func packT8(dst, src []float32, offs *[8]int, kc4, stride int) {
	packT8AVX(dst, src, offs, kc4, stride)
}

//go:noescape
func packT6AVX(dst, src []float32, offs *[6]int, kc4 int)

// packT6 sets dst[p*6+q] = src[offs[q]+p] for q < 6, p < kc4 (a multiple
// of 4), writing nothing past step kc4-1. The caller checks the bounds.
func packT6(dst, src []float32, offs *[6]int, kc4 int) {
	packT6AVX(dst, src, offs, kc4)
}

//go:noescape
func gemmKernel6x16AVX2(kc int, a, b, c []float32, ldc int, alpha, beta float32)

//go:noescape
func gemmKernel6x16AVX2PF(kc int, a, b, c []float32, ldc int, alpha, beta float32)

//go:noescape
func gemmKernel6x16AVX2Ep(kc int, a, b, c []float32, ldc int, alpha, beta float32, bias *float32, relu int)

//go:noescape
func gemmKernel14x32AVX512(kc int, a, b, c []float32, ldc int, alpha, beta float32)

//go:noescape
func gemmKernel1x16AVX2(kc int, a, b, c []float32, ldc int, alpha, beta float32)

//go:noescape
func gemmKernel2x16AVX2(kc int, a, b, c []float32, ldc int, alpha, beta float32)

//go:noescape
func gemmKernel3x16AVX2(kc int, a, b, c []float32, ldc int, alpha, beta float32)

//go:noescape
func gemmKernel4x16AVX2(kc int, a, b, c []float32, ldc int, alpha, beta float32)

//go:noescape
func gemmKernel5x16AVX2(kc int, a, b, c []float32, ldc int, alpha, beta float32)

//go:noescape
func gemmKernel1x16AVX2Ep(kc int, a, b, c []float32, ldc int, alpha, beta float32, bias *float32, relu int)

//go:noescape
func gemmKernel2x16AVX2Ep(kc int, a, b, c []float32, ldc int, alpha, beta float32, bias *float32, relu int)

//go:noescape
func gemmKernel3x16AVX2Ep(kc int, a, b, c []float32, ldc int, alpha, beta float32, bias *float32, relu int)

//go:noescape
func gemmKernel4x16AVX2Ep(kc int, a, b, c []float32, ldc int, alpha, beta float32, bias *float32, relu int)

//go:noescape
func gemmKernel5x16AVX2Ep(kc int, a, b, c []float32, ldc int, alpha, beta float32, bias *float32, relu int)

// gemmAVX2 is the 6x16 AVX2+FMA micro-kernel (12 ymm accumulators), with
// kernels of 1 to 5 rows for the last rows of C.
var gemmAVX2 = &gemmKernel{
	name: "avx2-6x16", mr: 6, nr: 16,
	kc: 512, mc: 144, nc: 3072,
	fn: gemmKernel6x16AVX2, fnPF: gemmKernel6x16AVX2PF, fnEp: gemmKernel6x16AVX2Ep,
	edge: []func(kc int, a, b, c []float32, ldc int, alpha, beta float32){
		nil, gemmKernel1x16AVX2, gemmKernel2x16AVX2, gemmKernel3x16AVX2, gemmKernel4x16AVX2, gemmKernel5x16AVX2,
	},
	edgeEp: []func(kc int, a, b, c []float32, ldc int, alpha, beta float32, bias *float32, relu int){
		nil, gemmKernel1x16AVX2Ep, gemmKernel2x16AVX2Ep, gemmKernel3x16AVX2Ep, gemmKernel4x16AVX2Ep, gemmKernel5x16AVX2Ep,
	},
}

// gemmAVX512 is the 14x32 AVX-512F micro-kernel (28 zmm accumulators).
var gemmAVX512 = &gemmKernel{
	name: "avx512-14x32", mr: 14, nr: 32,
	kc: 512, mc: 140, nc: 3072,
	fn: gemmKernel14x32AVX512,
}

// gemmKernels lists the kernels this CPU can run, fastest first.
var gemmKernels = detectGemmKernels()

// gemmDefault is the kernel Gemm uses.
var gemmDefault = gemmKernels[0]

// detectGemmKernels lists the kernels cpuInfo allows. AVX-512 comes first:
// on this project's AMD Zen 4 (512-bit FMAs split in two) it is as fast as
// AVX2 and steadier at large depths; on Intel cores with two 512-bit FMA
// units it can be twice as fast.
func detectGemmKernels() []*gemmKernel {
	f := cpuInfo
	var ks []*gemmKernel
	if f.AVX512F {
		ks = append(ks, gemmAVX512)
	}
	if f.AVX2 && f.FMA {
		ks = append(ks, gemmAVX2)
	}
	return append(ks, gemmGo)
}

// detectCPU reads the x86 feature bits the kernels need, including whether
// the OS saves the ymm/zmm state (XCR0).
func detectCPU() cpuFeatures {
	var f cpuFeatures
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return f
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const (
		fmaBit     = 1 << 12
		osxsaveBit = 1 << 27
		avxBit     = 1 << 28
	)
	if ecx1&osxsaveBit == 0 || ecx1&avxBit == 0 {
		return f
	}
	xcr0, _ := xgetbv0()
	osYMM := xcr0&0x6 == 0x6   // SSE and AVX state
	osZMM := xcr0&0xe6 == 0xe6 // plus opmask, ZMM_Hi256, Hi16_ZMM
	_, ebx7, _, _ := cpuid(7, 0)
	f.AVX = osYMM
	f.FMA = osYMM && ecx1&fmaBit != 0
	f.AVX2 = osYMM && ebx7&(1<<5) != 0
	f.AVX512F = osZMM && ebx7&(1<<16) != 0
	return f
}
