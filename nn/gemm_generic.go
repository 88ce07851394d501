package nn

// gemmGo is the plain-Go micro-kernel: used under the purego build tag, on
// CPUs without AVX2+FMA and on architectures without assembly kernels.
var gemmGo = &gemmKernel{
	name: "go4x4", mr: 4, nr: 4,
	kc: 256, mc: 128, nc: 2048,
	fn: gemmKernelGo,
}

// gemmKernelGo computes a 4x4 tile: C = alpha*A*B + beta*C over kc packed
// steps (a: kc x 4, b: kc x 4), with C not read when beta is 0.
func gemmKernelGo(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	var acc [4][4]float32
	a = a[:kc*4]
	b = b[:kc*4]
	for p := 0; p < kc; p++ {
		ap := (*[4]float32)(a[p*4 : p*4+4])
		bp := (*[4]float32)(b[p*4 : p*4+4])
		for i, ai := range ap {
			r := &acc[i]
			r[0] += ai * bp[0]
			r[1] += ai * bp[1]
			r[2] += ai * bp[2]
			r[3] += ai * bp[3]
		}
	}
	for i := range acc {
		storeRow4((*[4]float32)(c[i*ldc:i*ldc+4]), &acc[i], alpha, beta)
	}
}

// storeRow4 writes alpha*v + beta*row into row (row not read when beta is
// 0).
func storeRow4(row, v *[4]float32, alpha, beta float32) {
	for j, x := range v {
		if beta == 0 {
			row[j] = alpha * x
		} else {
			row[j] = alpha*x + beta*row[j]
		}
	}
}
