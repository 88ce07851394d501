// Package testutil loads golden reference data and compares tensors the way
// llm.c's test_gpt2.c does: a max-abs-diff report naming the first element
// out of tolerance.
package testutil

import (
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/mam-go/mam-go/weights"
)

// Root is the repository root (found from this file's location).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Golden returns the path of a file under testdata/golden.
func Golden(parts ...string) string {
	return filepath.Join(append([]string{Root(), "testdata", "golden"}, parts...)...)
}

// NPY loads a golden .npy file or fails the test.
func NPY(t testing.TB, path string) *weights.Tensor {
	t.Helper()
	x, err := weights.ReadNPYFile(path)
	if err != nil {
		t.Fatalf("golden: %v", err)
	}
	return x
}

// Store loads a golden .npz checkpoint (a path under testdata/golden) or
// fails the test.
func Store(t testing.TB, parts ...string) *weights.Store {
	t.Helper()
	s, err := weights.LoadNPZ(Golden(parts...))
	if err != nil {
		t.Fatalf("golden: %v", err)
	}
	return s
}

// StoreCopy returns a new store over the tensors of s (values shared),
// after edit, when not nil, has changed the map of them: a checkpoint with
// a tensor missing, added or replaced.
func StoreCopy(t testing.TB, s *weights.Store, edit func(m map[string]*weights.Tensor)) *weights.Store {
	t.Helper()
	m := map[string]*weights.Tensor{}
	for _, n := range s.Names() {
		x, err := s.Raw(n)
		if err != nil {
			t.Fatal(err)
		}
		m[n] = x
	}
	if edit != nil {
		edit(m)
	}
	return weights.New("edited "+s.Source(), m)
}

// Image decodes a golden PNG image or fails the test.
func Image(t testing.TB, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("golden: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("golden: %s: %v", path, err)
	}
	return img
}

// JSON decodes a golden .json file into v or fails the test.
func JSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("golden: %s: %v", path, err)
	}
}

// Diff is the result of comparing two tensors.
type Diff struct {
	MaxAbs   float64 // largest |got - want|
	MaxAt    int     // flat index of MaxAbs
	RefMax   float64 // largest |want|
	FirstBad int     // first flat index beyond tolerance, -1 if none
	Bad      int     // count of elements beyond tolerance
}

// Compare returns how got differs from want elementwise, counting elements
// with |got-want| > tol as bad.
func Compare(got, want []float32, tol float64) Diff {
	d := Diff{FirstBad: -1}
	for i := range want {
		if a := math.Abs(float64(want[i])); a > d.RefMax {
			d.RefMax = a
		}
	}
	for i := range want {
		g := float64(math.NaN())
		if i < len(got) {
			g = float64(got[i])
		}
		e := math.Abs(g - float64(want[i]))
		if math.IsNaN(e) {
			e = math.Inf(1)
		}
		if e > d.MaxAbs {
			d.MaxAbs, d.MaxAt = e, i
		}
		if e > tol {
			if d.FirstBad < 0 {
				d.FirstBad = i
			}
			d.Bad++
		}
	}
	return d
}

// Index formats a flat index as a multi-index of shape.
func Index(flat int, shape []int) string {
	idx := make([]int, len(shape))
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] > 0 {
			idx[i] = flat % shape[i]
			flat /= shape[i]
		}
	}
	return fmt.Sprint(idx)
}

// Check compares got (with shape gotShape) to the golden tensor want and
// fails the test when the shapes differ or any element differs by more than
// tol. With relative, tol is scaled by the largest magnitude in want. It
// logs the max abs diff either way.
func Check(t testing.TB, name string, got []float32, gotShape []int, want *weights.Tensor, tol float64, relative bool) Diff {
	t.Helper()
	if !slices.Equal(gotShape, want.Shape) {
		t.Errorf("%s: shape %v, want %v", name, gotShape, want.Shape)
		return Diff{FirstBad: 0}
	}
	w := want.Float32s()
	if len(got) != len(w) {
		t.Errorf("%s: %d values, want %d", name, len(got), len(w))
		return Diff{FirstBad: 0}
	}
	d := Compare(got, w, 0)
	limit := tol
	if relative {
		limit = tol * math.Max(d.RefMax, 1e-12)
	}
	d = Compare(got, w, limit)
	if d.Bad > 0 {
		t.Errorf("%s: max abs diff %.3g at %s (tolerance %.3g); %d of %d beyond, first at %s: got %g want %g",
			name, d.MaxAbs, Index(d.MaxAt, want.Shape), limit, d.Bad, len(w), Index(d.FirstBad, want.Shape), got[d.FirstBad], w[d.FirstBad])
	} else {
		t.Logf("%s: max abs diff %.3g (tolerance %.3g, ref max %.3g)", name, d.MaxAbs, limit, d.RefMax)
	}
	return d
}

// Must turns a constructor's (value, error) into a function that returns
// the value or fails the test: d := testutil.Must(New(store, cfg))(t).
func Must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// Bench times fn (with allocations reported), failing the benchmark on its
// first error. Setup before the call is not timed. It loops over b.N, not
// b.Loop, on purpose: the testing package then calls the benchmark once
// with N = 1 before the measured run, so the measured iterations run warm
// (graphs compiled, weights packed, buffers pooled), as they always have.
func Bench(b *testing.B, fn func() error) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := fn(); err != nil {
			b.Fatal(err)
		}
	}
}

// SameStore checks that got holds exactly the tensors of want: the same
// names, shapes and stored types, and identical values. It returns how
// many of them are integer tensors.
func SameStore(t testing.TB, got, want *weights.Store) (ints int) {
	t.Helper()
	if !slices.Equal(got.Names(), want.Names()) {
		t.Fatalf("names differ:\n got  %v\n want %v", got.Names(), want.Names())
	}
	for _, n := range want.Names() {
		g, _ := got.Raw(n)
		w, _ := want.Raw(n)
		switch {
		case !slices.Equal(g.Shape, w.Shape) || g.Stored != w.Stored:
			t.Errorf("%s: %v %s, want %v %s", n, g.Shape, g.Stored, w.Shape, w.Stored)
		case w.IsInt():
			ints++
			if !slices.Equal(g.I64, w.I64) {
				t.Errorf("%s: %v, want %v", n, g.I64, w.I64)
			}
		default:
			if d := Check(t, n, g.F32, g.Shape, w, 0, false); d.MaxAbs != 0 {
				t.Errorf("%s: not identical", n)
			}
		}
	}
	return ints
}
