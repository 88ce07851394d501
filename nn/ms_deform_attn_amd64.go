//go:build !purego && amd64

package nn

// deformTaps32AVX2 is deformTapsGo for rows of 32 values (AVX2+FMA); every
// off[k]+32 must be within v.
//
//go:noescape
func deformTaps32AVX2(acc, v []float32, off []int, wt []float32)

// deformTaps adds wt[k] * v[off[k] : off[k]+len(acc)] to acc for every tap
// k (len(off) == len(wt), every row within v).
func deformTaps(acc, v []float32, off []int, wt []float32) {
	if len(acc) == 32 && fastMathISA >= isaAVX2 {
		deformTaps32AVX2(acc, v, off, wt)
		return
	}
	deformTapsGo(acc, v, off, wt)
}
