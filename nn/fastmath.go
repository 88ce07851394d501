package nn

import "math"

// Fast float32 kernels for the hot loops of attention, MLPs and norms: an
// exp for softmax, an erf-based GELU, the decomposed position terms, a
// LayerNorm row, broadcast adds and scaling. Each has a plain-Go version
// (here: used under the purego tag, on other architectures and on CPUs
// without the vector extensions) and an AVX-512F version
// (fastmath_amd64.s) computing the same formulas sixteen lanes at a time;
// exp, the position terms and GELU also have an AVX2+FMA version
// (fastmath_avx2_amd64.s, eight lanes). fastmath_amd64.go picks one from
// the CPU's features.
//
// exp32 is Cephes' expf: x = n*ln2 + r with |r| <= ln2/2 (ln2 split in two
// parts for an exact reduction), e^r = 1 + r + r^2*P(r) with P of degree 5,
// then scaled by 2^n. Its relative error is below 2e-7 on [-87.3, 88].
//
// gelu32 is x*Phi(x) with Phi(x) = erfc(-x/sqrt2)/2, and erfc(z) for z >= 0
// from the Chebyshev fit erfc(z) = t*exp(-z^2 + P(t)), t = 1/(1+z/2)
// (Numerical Recipes' erfcc, fractional error below 1.2e-7 everywhere), and
// erfc(-z) = 2 - erfc(z). Because the fit is relative, GELU stays accurate
// far into the negative tail where x*Phi(x) is tiny.

// Bounds of exp32's argument: e^-87.33 is the smallest normal float32 and
// round(88*log2(e)) = 127 keeps 2^n finite.
const (
	expLo = -87.33654
	expHi = 88.0
)

// Cephes expf constants: ln2 = expC1 + expC2 (expC1 exact in 9 bits, so
// n*expC1 is exact), and the coefficients of P.
const (
	expLog2e = 1.44269504088896341
	expC1    = 0.693359375
	expC2    = -2.12194440e-4
	expP0    = 1.9875691500e-4
	expP1    = 1.3981999507e-3
	expP2    = 8.3334519073e-3
	expP3    = 4.1665795894e-2
	expP4    = 1.6666665459e-1
	expP5    = 5.0000001201e-1
)

// The erfc fit is erfc(z) = t*exp(-z*z + sum a_i t^i) with the
// coefficients a0..a9 in gelu32.

// expRound is 1.5*2^23: adding it to a float32 of magnitude below 2^22
// rounds it to an integer (to nearest, ties to even), which then sits in
// the low bits of the sum.
const expRound = 12582912.0

// exp32 is e^x in float32 (see the file comment). NaN gives NaN.
func exp32(x float32) float32 {
	if x < expLo { // false for NaN
		x = expLo
	}
	if x > expHi {
		x = expHi
	}
	// n = round(x / ln2), r = x - n*ln2
	t := x*expLog2e + expRound
	n := t - expRound
	r := x - n*expC1
	r -= n * expC2
	p := ((((expP0*r+expP1)*r+expP2)*r+expP3)*r+expP4)*r + expP5
	y := p*(r*r) + r + 1
	// 2^n for n in [-126, 127]: n+127 in the exponent bits
	k := math.Float32bits(t) - math.Float32bits(expRound)
	return y * math.Float32frombits((k+127)<<23)
}

// gelu32 is the exact (erf) GELU in float32 (see the file comment).
func gelu32(x float32) float32 {
	u := x * (-math.Sqrt2 / 2) // Phi(x) = erfc(u)/2
	z := u
	if z < 0 {
		z = -z
	}
	t := 1 / (1 + 0.5*z)
	const (
		a0, a1, a2, a3, a4 = -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806
		a5, a6, a7, a8, a9 = 0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277
	)
	p := ((((((((a9*t+a8)*t+a7)*t+a6)*t+a5)*t+a4)*t+a3)*t+a2)*t + a1) * t
	h := 0.5 * t * exp32((p+a0)-z*z) // erfc(|u|)/2
	if u < 0 {
		h = 1 - h
	}
	return x * h
}

// expShiftSumGo sets x[i] = e^(x[i]-mx) and returns the sum of the results.
func expShiftSumGo(x []float32, mx float32) float32 {
	var sum float32
	for i, v := range x {
		e := exp32(v - mx)
		x[i] = e
		sum += e
	}
	return sum
}

// relAddMaxGo adds the decomposed relative position terms to a row of
// attention scores over an h x w grid of keys, row[k*w+l] = (row[k*w+l] +
// relh[k]) + relw[l] with h = len(relh) and w = len(relw), and returns the
// row's maximum.
func relAddMaxGo(row, relh, relw []float32) float32 {
	w := len(relw)
	mx := float32(math.Inf(-1))
	for k, rk := range relh {
		seg := row[k*w : k*w+w]
		for l, rl := range relw {
			v := (seg[l] + rk) + rl
			seg[l] = v
			if v > mx {
				mx = v
			}
		}
	}
	return mx
}

// geluBiasGo sets x[i] = GELU(x[i] + bias[i]); bias may be nil (no bias).
func geluBiasGo(x, bias []float32) {
	if bias == nil {
		for i, v := range x {
			x[i] = gelu32(v)
		}
		return
	}
	bias = bias[:len(x)]
	for i, v := range x {
		x[i] = gelu32(v + bias[i])
	}
}

// addRowsGo sets dst[i] = a[i] + b[i%len(b)] (b is a row broadcast over
// the rows of a, len(a) a multiple of len(b)); b may be nil.
func addRowsGo(dst, a, b []float32) {
	if len(b) == 0 {
		copy(dst, a)
		return
	}
	n := len(b)
	for r := 0; r+n <= len(a); r += n {
		d, s := dst[r:r+n], a[r:r+n]
		for i, v := range b {
			d[i] = s[i] + v
		}
	}
}

// divMaxGo sets x[i] /= d and returns the largest result (NaNs ignored;
// -Inf when there is none).
func divMaxGo(x []float32, d float32) float32 {
	mx := float32(math.Inf(-1))
	for i, v := range x {
		v /= d
		x[i] = v
		if v > mx {
			mx = v
		}
	}
	return mx
}

// reluGo sets dst[i] = max(src[i], 0) (NaN stays NaN); the builtin max
// compiles without a branch, which random signs would mispredict.
func reluGo(dst, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = max(v, 0)
	}
}

// scaleIntoGo sets dst[i] = src[i] * f.
func scaleIntoGo(dst, src []float32, f float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = v * f
	}
}

// layerNormRowGo normalises one row: dst = (x - mean) / sqrt(var + eps) *
// w + b over the len(x) values (biased variance), with float64 sums.
func layerNormRowGo(dst, x, w, b []float32, eps float32) {
	d := len(x)
	if d == 0 {
		return
	}
	var mean float64
	for _, v := range x {
		mean += float64(v)
	}
	mean /= float64(d)
	var vs float64
	for _, v := range x {
		dv := float64(v) - mean
		vs += dv * dv
	}
	inv := 1 / math.Sqrt(vs/float64(d)+float64(eps))
	dst, w, b = dst[:d], w[:d], b[:d]
	for i, v := range x {
		dst[i] = float32((float64(v)-mean)*inv)*w[i] + b[i]
	}
}

// tanhUnitRowGo sets dst = (tanh(src) + 1) / 2, computed as the equal
// 1 / (1 + e^(-2 src)) (within an ulp or two of float32).
func tanhUnitRowGo(dst, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		if v < -44 { // e^(-2v) beyond exp32's clamp: the result is below 1e-38
			dst[i] = 0
			continue
		}
		dst[i] = 1 / (1 + exp32(-2*v))
	}
}
