package nn

// Region is the top-left corner of an op's output that is needed: rows [0,
// Rows) and columns [0, Cols); a zero (or larger) side means all of it.
// An op given a region computes every value inside it exactly as it would
// without one, and may leave the values outside it zero or unfinished, so
// a region must cover every output that a later op reads. It lets a graph
// skip the padding around an image that no final output depends on.
type Region struct{ Rows, Cols int }

// limits returns the region's sides clipped to an h x w output.
func (r Region) limits(h, w int) (rows, cols int) {
	rows, cols = h, w
	if r.Rows > 0 {
		rows = min(rows, r.Rows)
	}
	if r.Cols > 0 {
		cols = min(cols, r.Cols)
	}
	return rows, cols
}

// Grow returns r widened by dr rows and dc columns (a side of 0, all,
// stays 0).
func (r Region) Grow(dr, dc int) Region {
	if r.Rows > 0 {
		r.Rows += dr
	}
	if r.Cols > 0 {
		r.Cols += dc
	}
	return r
}
