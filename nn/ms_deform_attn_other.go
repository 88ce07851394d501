//go:build purego || !amd64

package nn

// deformTaps adds wt[k] * v[off[k] : off[k]+len(acc)] to acc for every tap
// k (len(off) == len(wt), every row within v).
func deformTaps(acc, v []float32, off []int, wt []float32) { deformTapsGo(acc, v, off, wt) }
