package metrics

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
)

// goldenCase is one entry of testdata/golden/metrics/expected.json.
type goldenCase struct {
	Case int     `json:"case"`
	SAD  float64 `json:"sad"`
	MSE  float64 `json:"mse"`
	MAD  float64 `json:"mad"`
	Grad float64 `json:"grad"`
	Conn float64 `json:"conn"`
}

// loadCase reads pred_i, label_i and trimap_i.
func loadCase(t *testing.T, i int) (pred, gt, trimap []float32, w, h int) {
	t.Helper()
	p := testutil.NPY(t, testutil.Golden("metrics", fmt.Sprintf("pred_%d.npy", i)))
	l := testutil.NPY(t, testutil.Golden("metrics", fmt.Sprintf("label_%d.npy", i)))
	m := testutil.NPY(t, testutil.Golden("metrics", fmt.Sprintf("trimap_%d.npy", i)))
	if len(p.Shape) != 2 {
		t.Fatalf("pred_%d: shape %v, want 2-D", i, p.Shape)
	}
	return p.Float32s(), l.Float32s(), m.Float32s(), p.Shape[1], p.Shape[0]
}

// checkRel fails when got is not within a relative 1e-5 of want.
func checkRel(t *testing.T, name string, got, want float64) {
	t.Helper()
	const tol = 1e-5
	diff := math.Abs(got - want)
	if diff > tol*math.Abs(want) || math.IsNaN(got) {
		t.Errorf("%s = %.10g, want %.10g (rel diff %.3g > %g)", name, got, want, diff/math.Abs(want), tol)
		return
	}
	t.Logf("%s = %.10g, want %.10g (abs diff %.3g, rel %.3g)", name, got, want, diff, diff/math.Max(math.Abs(want), 1e-300))
}

func TestGolden(t *testing.T) {
	var exp struct {
		Cases []goldenCase `json:"cases"`
	}
	testutil.JSON(t, testutil.Golden("metrics", "expected.json"), &exp)
	if len(exp.Cases) == 0 {
		t.Fatal("expected.json: no cases")
	}
	for _, c := range exp.Cases {
		t.Run(fmt.Sprint("case", c.Case), func(t *testing.T) {
			pred, gt, trimap, w, h := loadCase(t, c.Case)
			t.Logf("%dx%d, %d unknown pixels", w, h, Count(trimap, w*h))
			for _, m := range []struct {
				name string
				fn   func(pred, gt, trimap []float32, w, h int) (float64, error)
				want float64
			}{
				{"SAD", SAD, c.SAD},
				{"MSE", MSE, c.MSE},
				{"MAD", MAD, c.MAD},
				{"Grad", Grad, c.Grad},
				{"Conn", Conn, c.Conn},
			} {
				got, err := m.fn(pred, gt, trimap, w, h)
				if err != nil {
					t.Fatalf("%s: %v", m.name, err)
				}
				checkRel(t, m.name, got, m.want)
			}
			all, err := Compute(pred, gt, trimap, w, h)
			if err != nil {
				t.Fatal(err)
			}
			want := Scores{c.SAD, c.MSE, c.MAD, c.Grad, c.Conn}
			for _, f := range []struct {
				name      string
				got, want float64
			}{{"Compute.SAD", all.SAD, want.SAD}, {"Compute.MSE", all.MSE, want.MSE}, {"Compute.MAD", all.MAD, want.MAD}, {"Compute.Grad", all.Grad, want.Grad}, {"Compute.Conn", all.Conn, want.Conn}} {
				checkRel(t, f.name, f.got, f.want)
			}
		})
	}
}

// TestHandComputed checks each metric on tiny images small enough to work
// out by hand.
func TestHandComputed(t *testing.T) {
	// 4x1 image, pred - gt = 51, 0, -102, 255 (0.2, 0, -0.4, 1.0 after /255).
	pred := []float32{51, 0, 0, 255}
	gt := []float32{0, 0, 102, 0}
	tri := []float32{128, 128, 0, 128} // third pixel not counted
	tests := []struct {
		name   string
		fn     func(pred, gt, trimap []float32, w, h int) (float64, error)
		trimap []float32
		want   float64
	}{
		{"SAD whole", SAD, nil, (0.2 + 0.4 + 1.0) / 1000},
		{"SAD trimap", SAD, tri, (0.2 + 1.0) / 1000},
		{"MAD whole", MAD, nil, (0.2 + 0.4 + 1.0) / (4 + 1e-8)},
		{"MAD trimap", MAD, tri, (0.2 + 1.0) / (3 + 1e-8)},
		{"MSE whole", MSE, nil, (0.04 + 0.16 + 1.0) / (4 + 1e-8)},
		{"MSE trimap", MSE, tri, (0.04 + 1.0) / (3 + 1e-8)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.fn(pred, gt, tc.trimap, 4, 1)
			if err != nil {
				t.Fatal(err)
			}
			checkRel(t, tc.name, got, tc.want)
		})
	}
}

// TestIdentical checks that a perfect prediction scores zero everywhere.
func TestIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	w, h := 23, 17
	a := make([]float32, w*h)
	for i := range a {
		a[i] = float32(r.IntN(256))
	}
	s, err := Compute(a, a, nil, w, h)
	if err != nil {
		t.Fatal(err)
	}
	if s != (Scores{}) {
		t.Errorf("Compute(a, a) = %+v, want all zero", s)
	}
}

// TestGradKernel checks the filter against its definition: 9x9 for sigma
// 1.4, unit Frobenius norm, antisymmetric along its columns, zero centre
// column.
func TestGradKernel(t *testing.T) {
	hx, size := gaussDerivKernel(1.4)
	if size != 9 {
		t.Fatalf("size %d, want 9", size)
	}
	var ss float64
	for i := range size {
		for j := range size {
			v := hx[i*size+j]
			ss += v * v
			if m := hx[i*size+size-1-j]; math.Abs(v+m) > 1e-15 {
				t.Errorf("hx[%d][%d] = %g, mirror %g: not antisymmetric", i, j, v, m)
			}
		}
		if hx[i*size+4] != 0 {
			t.Errorf("hx[%d][4] = %g, want 0", i, hx[i*size+4])
		}
	}
	if math.Abs(ss-1) > 1e-12 {
		t.Errorf("sum of squares %g, want 1", ss)
	}
}

// TestGradRamp checks the border mode: a horizontal ramp has a constant
// gradient in the interior, and with edge pixels repeated ("nearest") the
// gradient at the left and right edges is smaller than inside.
func TestGradRamp(t *testing.T) {
	w, h := 20, 12
	im := make([]float32, w*h)
	for y := range h {
		for x := range w {
			im[y*w+x] = float32(x) / 19
		}
	}
	amp := gaussGradient(im, w, h, GradSigma)
	mid := amp[6*w+10]
	if mid <= 0 {
		t.Fatalf("interior gradient %g, want > 0", mid)
	}
	// every row is the same, and the interior is flat.
	for y := range h {
		for x := 4; x < w-4; x++ {
			if d := math.Abs(float64(amp[y*w+x] - mid)); d > 1e-6 {
				t.Errorf("amp[%d][%d] = %g, want %g", y, x, amp[y*w+x], mid)
			}
		}
	}
	if !(amp[6*w] < mid && amp[6*w+w-1] < mid) {
		t.Errorf("edge gradients %g, %g not below interior %g: border mode is not nearest", amp[6*w], amp[6*w+w-1], mid)
	}
	// left and right edges are mirror images.
	if d := math.Abs(float64(amp[6*w] - amp[6*w+w-1])); d > 1e-6 {
		t.Errorf("edge gradients differ: %g vs %g", amp[6*w], amp[6*w+w-1])
	}
}

func TestLabel4(t *testing.T) {
	// 1 1 0 1
	// 0 1 0 1
	// 1 0 0 1
	// 4-connectivity: the diagonal pixel (0,2) is its own region.
	seg := []bool{
		true, true, false, true,
		false, true, false, true,
		true, false, false, true,
	}
	labels := make([]int32, len(seg))
	counts, _ := label4(seg, 4, 3, labels, nil)
	wantLabels := []int32{
		1, 1, 0, 2,
		0, 1, 0, 2,
		3, 0, 0, 2,
	}
	for i := range labels {
		if labels[i] != wantLabels[i] {
			t.Fatalf("labels = %v, want %v", labels, wantLabels)
		}
	}
	wantCounts := []int{5, 3, 3, 1}
	if fmt.Sprint(counts) != fmt.Sprint(wantCounts) {
		t.Errorf("counts = %v, want %v", counts, wantCounts)
	}
	// ties go to the first label, the background included.
	if got := argmax(counts); got != 0 {
		t.Errorf("argmax(%v) = %d, want 0", counts, got)
	}
	if got := argmax([]int{1, 3, 3}); got != 1 {
		t.Errorf("argmax tie = %d, want 1", got)
	}
}

// TestConnSteps checks the thresholds against np.arange(0, 1 + step, step).
func TestConnSteps(t *testing.T) {
	// A prediction equal to gt except one pixel gives a small positive error;
	// the error with a step of 1 (thresholds 0, 1) differs.
	w, h := 6, 5
	gt := make([]float32, w*h)
	for i := range gt {
		gt[i] = float32(i * 255 / (w*h - 1))
	}
	pred := append([]float32(nil), gt...)
	pred[7] = 255
	c1, err := Conn(pred, gt, nil, w, h)
	if err != nil {
		t.Fatal(err)
	}
	if c1 <= 0 {
		t.Errorf("Conn = %g, want > 0", c1)
	}
	if _, err := ConnWithStep(pred, gt, nil, w, h, 0); err == nil {
		t.Error("step 0: no error")
	}
}

func TestErrors(t *testing.T) {
	a := make([]float32, 6)
	tests := []struct {
		name          string
		pred, gt, tri []float32
		w, h          int
	}{
		{"pred short", a[:5], a, nil, 3, 2},
		{"gt short", a, a[:5], nil, 3, 2},
		{"trimap short", a, a, a[:5], 3, 2},
		{"empty", nil, nil, nil, 0, 0},
		{"negative", a, a, nil, -3, -2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Compute(tc.pred, tc.gt, tc.tri, tc.w, tc.h); !errors.Is(err, ErrSize) {
				t.Errorf("Compute: err = %v, want ErrSize", err)
			}
		})
	}
}

func TestMeanAndDetail(t *testing.T) {
	m := Mean([]Scores{{1, 2, 3, 4, 5}, {3, 4, 5, 6, 7}})
	if m != (Scores{2, 3, 4, 5, 6}) {
		t.Errorf("Mean = %+v", m)
	}
	if Mean(nil) != (Scores{}) {
		t.Error("Mean(nil) not zero")
	}
	d := DetailTrimap([]float32{0, 128, 255})
	if fmt.Sprint(d) != "[0 128 128]" {
		t.Errorf("DetailTrimap = %v", d)
	}
	if n := Count(d, 3); n != 2 {
		t.Errorf("Count = %d, want 2", n)
	}
}

func BenchmarkCompute(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	w, h := 256, 256
	p := make([]float32, w*h)
	g := make([]float32, w*h)
	for i := range p {
		p[i] = float32(r.IntN(256))
		g[i] = float32(r.IntN(256))
	}
	testutil.Bench(b, func() error {
		_, err := Compute(p, g, nil, w, h)
		return err
	})
}
