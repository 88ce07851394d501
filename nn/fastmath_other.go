//go:build purego || !amd64

package nn

// isaGo is the only instruction set of this build: plain Go.
const isaGo = 0

// fastMathISAs lists the instruction sets the tests can run here.
func fastMathISAs() []int { return []int{isaGo} }

// expShiftSum sets x[i] = e^(x[i]-mx) and returns the sum of the results.
func expShiftSum(x []float32, mx float32) float32 { return expShiftSumGo(x, mx) }

func expShiftSumISA(_ int, x []float32, mx float32) float32 { return expShiftSumGo(x, mx) }

// relAddMax adds the decomposed relative position terms to a row of
// attention scores, row[k*w+l] = (row[k*w+l] + relh[k]) + relw[l] for the
// h = len(relh) by w = len(relw) keys, and returns the row's maximum.
func relAddMax(row, relh, relw []float32) float32 { return relAddMaxGo(row, relh, relw) }

func relAddMaxISA(_ int, row, relh, relw []float32) float32 { return relAddMaxGo(row, relh, relw) }

// geluBias sets x[i] = GELU(x[i] + bias[i]); bias may be nil.
func geluBias(x, bias []float32) { geluBiasGo(x, bias) }

func geluBiasISA(_ int, x, bias []float32) { geluBiasGo(x, bias) }

// addRows sets dst[i] = a[i] + b[i%len(b)] over the whole rows of a (b is
// broadcast over rows of len(b)); b may be empty (a copy).
func addRows(dst, a, b []float32) { addRowsGo(dst, a, b) }

func addRowsISA(_ int, dst, a, b []float32) { addRowsGo(dst, a, b) }

// scaleInto sets dst[i] = src[i] * f.
func scaleInto(dst, src []float32, f float32) { scaleIntoGo(dst, src, f) }

func scaleIntoISA(_ int, dst, src []float32, f float32) { scaleIntoGo(dst, src, f) }

// layerNormRow normalises one row: dst = (x - mean) / sqrt(var + eps) * w
// + b over the len(x) values (biased variance).
func layerNormRow(dst, x, w, b []float32, eps float32) { layerNormRowGo(dst, x, w, b, eps) }

func layerNormRowISA(_ int, dst, x, w, b []float32, eps float32) { layerNormRowGo(dst, x, w, b, eps) }

// relu sets dst[i] = max(src[i], 0); NaN stays NaN.
func relu(dst, src []float32) { reluGo(dst, src) }

func reluISA(_ int, dst, src []float32) { reluGo(dst, src) }

// tanhUnitRow sets dst = (tanh(src) + 1) / 2.
func tanhUnitRow(dst, src []float32) { tanhUnitRowGo(dst, src) }

func tanhUnitRowISA(_ int, dst, src []float32) { tanhUnitRowGo(dst, src) }

// divMax sets x[i] /= d and returns the largest result (NaNs ignored; -Inf
// when there is none).
func divMax(x []float32, d float32) float32 { return divMaxGo(x, d) }

func divMaxISA(_ int, x []float32, d float32) float32 { return divMaxGo(x, d) }
