//go:build purego || !amd64

package nn

// deformTaps adds wt[k] * v[off[k] : off[k]+len(acc)] to acc for every tap
// k (len(off) == len(wt), every row within v).
func deformTaps(acc, v []float32, off []int, wt []float32) { deformTapsGo(acc, v, off, wt) }

// deformFast reports whether msDeformAttnAVX2 takes a layout: never on
// this build.
func deformFast(shapes [][2]int, heads, hd, points, nvalue int) bool { return false }

func msDeformAttnAVX2(dst, value []float32, shapes [][2]int, starts []int, heads, hd int, loc, attn []float32, nq, points int) {
}

// msDeformGather sets gathered[q, h, :] to the weighted sum of the memory
// rows query q's head h samples (the taps of MSDeformAttnInto over rows
// of dimIn values) and wsum[q, h] to the sum of their weights.
func msDeformGather(gathered, wsum, memory []float32, dimIn int, shapes [][2]int, starts []int, heads int, loc, attn []float32, nq, points int) {
	msDeformGatherGo(gathered, wsum, memory, dimIn, shapes, starts, heads, loc, attn, nq, points)
}
