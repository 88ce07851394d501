//go:build !purego && amd64

package nn

//go:noescape
func expShiftSumAVX512(x []float32, mx float32) float32

//go:noescape
func relAddMaxAVX512(row, relh, relw []float32) float32

//go:noescape
func geluBiasAVX512(x, bias []float32)

//go:noescape
func addRowsAVX512(dst, a, b []float32)

//go:noescape
func scaleIntoAVX512(dst, src []float32, f float32)

//go:noescape
func layerNormAVX512(dst, x, w, b []float32, eps float32)

//go:noescape
func expShiftSumAVX2(x []float32, mx float32) float32

//go:noescape
func relAddMaxAVX2(row, relh, relw []float32) float32

//go:noescape
func geluBiasAVX2(x, bias []float32)

//go:noescape
func addRowsAVX2(dst, a, b []float32)

//go:noescape
func scaleIntoAVX2(dst, src []float32, f float32)

//go:noescape
func layerNormAVX2(dst, x, w, b []float32, eps float32)

//go:noescape
func reluAVX2(dst, src []float32)

//go:noescape
func divMaxAVX2(x []float32, d float32) float32

// Instruction sets of the kernels in fastmath_amd64.s (AVX-512F) and
// fastmath_avx2_amd64.s (AVX2+FMA: all but tanhUnitRow).
const (
	isaGo = iota
	isaAVX2
	isaAVX512
)

// fastMathISA is the best instruction set this CPU and OS support.
var fastMathISA = detectFastMathISA()

func detectFastMathISA() int {
	switch {
	case cpuInfo.AVX512F:
		return isaAVX512
	case cpuInfo.AVX2 && cpuInfo.FMA:
		return isaAVX2
	}
	return isaGo
}

// fastMathISAs lists the instruction sets the tests can run here.
func fastMathISAs() []int {
	isas := []int{isaGo}
	if fastMathISA >= isaAVX2 {
		isas = append(isas, isaAVX2)
	}
	if fastMathISA >= isaAVX512 {
		isas = append(isas, isaAVX512)
	}
	return isas
}

// expShiftSum sets x[i] = e^(x[i]-mx) and returns the sum of the results.
func expShiftSum(x []float32, mx float32) float32 { return expShiftSumISA(fastMathISA, x, mx) }

func expShiftSumISA(isa int, x []float32, mx float32) float32 {
	switch isa {
	case isaAVX512:
		return expShiftSumAVX512(x, mx)
	case isaAVX2:
		return expShiftSumAVX2(x, mx)
	}
	return expShiftSumGo(x, mx)
}

// relAddMax adds the decomposed relative position terms to a row of
// attention scores, row[k*w+l] = (row[k*w+l] + relh[k]) + relw[l] for the
// h = len(relh) by w = len(relw) keys, and returns the row's maximum.
func relAddMax(row, relh, relw []float32) float32 { return relAddMaxISA(fastMathISA, row, relh, relw) }

func relAddMaxISA(isa int, row, relh, relw []float32) float32 {
	if isa != isaGo && len(relh) > 0 && len(relw) > 0 {
		_ = row[len(relh)*len(relw)-1]
		if isa == isaAVX512 {
			return relAddMaxAVX512(row, relh, relw)
		}
		return relAddMaxAVX2(row, relh, relw)
	}
	return relAddMaxGo(row, relh, relw)
}

// geluBias sets x[i] = GELU(x[i] + bias[i]); bias may be nil.
func geluBias(x, bias []float32) { geluBiasISA(fastMathISA, x, bias) }

func geluBiasISA(isa int, x, bias []float32) {
	if bias != nil {
		bias = bias[:len(x)]
	}
	switch isa {
	case isaAVX512:
		geluBiasAVX512(x, bias)
	case isaAVX2:
		geluBiasAVX2(x, bias)
	default:
		geluBiasGo(x, bias)
	}
}

// addRows sets dst[i] = a[i] + b[i%len(b)] over the whole rows of a (b is
// broadcast over rows of len(b)); b may be empty (a copy).
func addRows(dst, a, b []float32) { addRowsISA(fastMathISA, dst, a, b) }

func addRowsISA(isa int, dst, a, b []float32) {
	if isa != isaGo && len(b) > 0 && len(a) >= len(b) {
		_ = dst[len(a)/len(b)*len(b)-1]
		if isa == isaAVX512 {
			addRowsAVX512(dst, a, b)
		} else {
			addRowsAVX2(dst, a, b)
		}
		return
	}
	addRowsGo(dst, a, b)
}

//go:noescape
func tanhUnitAVX512(dst, src []float32)

// tanhUnitRow sets dst = (tanh(src) + 1) / 2 (see tanhUnitRowGo).
func tanhUnitRow(dst, src []float32) { tanhUnitRowISA(fastMathISA, dst, src) }

func tanhUnitRowISA(isa int, dst, src []float32) {
	if isa == isaAVX512 && len(src) > 0 {
		_ = dst[len(src)-1]
		tanhUnitAVX512(dst, src)
		return
	}
	tanhUnitRowGo(dst, src)
}

// scaleInto sets dst[i] = src[i] * f.
func scaleInto(dst, src []float32, f float32) { scaleIntoISA(fastMathISA, dst, src, f) }

func scaleIntoISA(isa int, dst, src []float32, f float32) {
	if isa != isaGo && len(src) > 0 {
		_ = dst[len(src)-1]
		if isa == isaAVX512 {
			scaleIntoAVX512(dst, src, f)
		} else {
			scaleIntoAVX2(dst, src, f)
		}
		return
	}
	scaleIntoGo(dst, src, f)
}

// layerNormRow normalises one row: dst = (x - mean) / sqrt(var + eps) * w
// + b over the len(x) values (biased variance).
func layerNormRow(dst, x, w, b []float32, eps float32) {
	layerNormRowISA(fastMathISA, dst, x, w, b, eps)
}

func layerNormRowISA(isa int, dst, x, w, b []float32, eps float32) {
	if isa != isaGo && len(x) > 0 {
		_, _, _ = dst[len(x)-1], w[len(x)-1], b[len(x)-1]
		if isa == isaAVX512 {
			layerNormAVX512(dst, x, w, b, eps)
		} else {
			layerNormAVX2(dst, x, w, b, eps)
		}
		return
	}
	layerNormRowGo(dst, x, w, b, eps)
}

// relu sets dst[i] = max(src[i], 0); NaN stays NaN.
func relu(dst, src []float32) { reluISA(fastMathISA, dst, src) }

func reluISA(isa int, dst, src []float32) {
	if isa != isaGo && len(src) > 0 {
		_ = dst[len(src)-1]
		reluAVX2(dst, src) // AVX2 is all the AVX-512 builds need here
		return
	}
	reluGo(dst, src)
}

// divMax sets x[i] /= d and returns the largest result (NaNs ignored; -Inf
// when there is none).
func divMax(x []float32, d float32) float32 { return divMaxISA(fastMathISA, x, d) }

func divMaxISA(isa int, x []float32, d float32) float32 {
	if isa != isaGo && len(x) > 0 {
		return divMaxAVX2(x, d) // AVX2 is all the AVX-512 builds need here
	}
	return divMaxGo(x, d)
}
