package mam

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/mam-go/mam-go/cuda"
	"github.com/mam-go/mam-go/internal/gemmtest"
	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
)

// *cuda.Device must plug into SetDevice, with or without the cuda tag.
var _ Device = (*cuda.Device)(nil)

// refDevice is a Device that computes on the CPU with a float64 reference
// loop, declining the products decline picks.
type refDevice struct {
	decline        func(call int64) bool
	calls, handled atomic.Int64
}

func (d *refDevice) Name() string { return "reference" }

func (d *refDevice) Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) bool {
	if d.decline(d.calls.Add(1)) {
		return false
	}
	d.handled.Add(1)
	gemmtest.Compute(gemmtest.Case{M: m, N: n, K: k, TransA: transA, TransB: transB, Alpha: alpha, Beta: beta}, a, lda, b, ldb, c, ldc)
	return true
}

// TestSetDevice runs the tiny golden pipeline with its GEMMs on a device
// (every one, or every other one with the rest declined to the CPU) and
// checks the embedding and the matte against the reference.
func TestSetDevice(t *testing.T) {
	saved := deviceMinFLOPs
	deviceMinFLOPs = 0
	t.Cleanup(func() {
		deviceMinFLOPs = saved
		nn.SetGemmBackend(nil, 0)
	})
	ss, ms := tinyStores(t)
	img := testutil.Image(t, testutil.Golden("tiny", "dog_240", "image.png"))
	dir := testutil.Golden("tiny", "dog_240", "box")
	var c goldenCase
	testutil.JSON(t, filepath.Join(dir, "case.json"), &c)
	for _, tc := range []struct {
		name    string
		decline func(call int64) bool
		all     bool // the device takes every product
	}{
		{"all on device", func(int64) bool { return false }, true},
		{"every other declined", func(call int64) bool { return call%2 == 0 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := &refDevice{decline: tc.decline}
			m, err := New(ss, ms)
			if err != nil {
				t.Fatal(err)
			}
			SetDevice(dev)
			defer SetDevice(nil)
			var emb *nn.Tensor
			dump := WithDump(func(name string, shape []int, data []float32) {
				if name == "image_embeddings" {
					emb = nn.NewTensor(data, shape...)
				}
			})
			res, err := m.Matte(context.Background(), img, c.prompt(), WithMode(MaskGuide), dump)
			if err != nil {
				t.Fatal(err)
			}
			if h := dev.handled.Load(); h == 0 || (h == dev.calls.Load()) != tc.all {
				t.Fatalf("device handled %d of %d products", dev.handled.Load(), dev.calls.Load())
			}
			t.Logf("device handled %d of %d products", dev.handled.Load(), dev.calls.Load())
			if emb == nil {
				t.Fatal("image_embeddings not dumped")
			}
			testutil.Check(t, "image_embeddings", emb.Data, emb.Shape, testutil.NPY(t, testutil.Golden("tiny", "dog_240", "image_embeddings.npy")), 1e-4, true)
			testutil.Check(t, "alpha_maskguide", res.Alpha, []int{res.Height, res.Width}, testutil.NPY(t, filepath.Join(dir, "alpha_maskguide.npy")), 1e-4, false)
		})
	}
	// SetDevice(nil) puts the CPU back: a device installed before is no
	// longer called.
	dev := &refDevice{decline: func(int64) bool { return false }}
	SetDevice(dev)
	SetDevice(nil)
	a := make([]float32, 64*64)
	nn.Gemm(false, false, 64, 64, 64, 1, a, 64, a, 64, 0, make([]float32, 64*64), 64)
	if n := dev.calls.Load(); n != 0 {
		t.Errorf("device called %d times after SetDevice(nil)", n)
	}
}
