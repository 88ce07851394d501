//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"

	"github.com/mam-go/mam-go/internal/gemmtest"
)

// openOrSkip opens device 0, skipping the test when there is none.
func openOrSkip(t *testing.T, opts ...Option) *Device {
	t.Helper()
	d, err := Open(0, opts...)
	if err != nil {
		t.Skipf("no CUDA device: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// gemmCases are every transpose combination over shapes that are not
// multiples of cuBLAS's tiles, packed and padded, with beta 0 and not;
// sizes grow so that the device buffers are reallocated.
func gemmCases() []gemmtest.Case {
	var cs []gemmtest.Case
	for _, sz := range [][3]int{{1, 1, 1}, {7, 5, 3}, {64, 48, 32}, {130, 67, 301}, {512, 384, 768}} {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				cs = append(cs,
					gemmtest.Case{M: sz[0], N: sz[1], K: sz[2], TransA: tA, TransB: tB, Alpha: 1, Beta: 0, NaNC: true},
					gemmtest.Case{M: sz[0], N: sz[1], K: sz[2], TransA: tA, TransB: tB, Alpha: -0.5, Beta: 1.5, Pad: 3},
				)
			}
		}
	}
	return cs
}

// runCase runs tc on d and checks C against the float64 reference within
// tol of the error scale, and that the padding between C's rows is
// untouched. It returns the largest error relative to the scale.
func runCase(d *Device, rng *rand.Rand, tc gemmtest.Case, tol float64) (float64, error) {
	a, lda, b, ldb, c, ldc := tc.Operands(rng)
	want, scale := gemmtest.Ref(tc, a, lda, b, ldb, c, ldc)
	if !d.Gemm(tc.TransA, tc.TransB, tc.M, tc.N, tc.K, tc.Alpha, a, lda, b, ldb, tc.Beta, c, ldc) {
		return 0, fmt.Errorf("%v: Gemm returned false: %v", tc, d.Err())
	}
	return gemmtest.Check(tc, c, ldc, want, scale, tol)
}

// randFloats returns n values uniform in [-1, 1).
var randFloats = gemmtest.RandFloats

func TestDeviceInfo(t *testing.T) {
	if !Available() {
		t.Skip("no CUDA device")
	}
	d := openOrSkip(t)
	major, minor := d.ComputeCapability()
	t.Logf("%s: %d MiB, compute capability %d.%d", d.Name(), d.TotalMemory()>>20, major, minor)
	if d.Name() == "" || d.TotalMemory() <= 0 || major < 3 {
		t.Errorf("implausible device: name %q, memory %d, compute capability %d.%d", d.Name(), d.TotalMemory(), major, minor)
	}
	if _, err := Open(1 << 20); err == nil {
		t.Error("Open(1<<20) succeeded")
	}
}

// TestGemm checks every transpose against the float64 reference: float32
// within 1e-4 of the error scale, TF32 within 1e-2.
func TestGemm(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []Option
		tol  float64
	}{
		{"float32", nil, 1e-4},
		{"tf32", []Option{WithTF32()}, 1e-2},
	} {
		t.Run(mode.name, func(t *testing.T) {
			d := openOrSkip(t, mode.opts...)
			rng := rand.New(rand.NewSource(1))
			var worst float64
			for _, tc := range gemmCases() {
				t.Run(tc.String(), func(t *testing.T) {
					w, err := runCase(d, rng, tc, mode.tol)
					if err != nil {
						t.Fatal(err)
					}
					worst = max(worst, w)
				})
			}
			t.Logf("%s: max error %.3g of the scale", mode.name, worst)
		})
	}
}

// TestGemmConcurrent runs products from several goroutines at once: the
// worker serialises them, each must still get its own result.
func TestGemmConcurrent(t *testing.T) {
	d := openOrSkip(t)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(100 + g)))
			for i := 0; i < 10; i++ {
				tc := gemmtest.Case{M: 33 + 7*g, N: 65 + i, K: 129, TransA: g%2 == 1, TransB: i%2 == 1, Alpha: 1, Beta: float32(i % 2), Pad: g % 3}
				if _, err := runCase(d, rng, tc, 1e-4); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestGemmDeclines checks that Gemm returns false, leaves C alone and
// reports why for arguments it does not take, and after Close.
func TestGemmDeclines(t *testing.T) {
	d := openOrSkip(t)
	ok := make([]float32, 12)
	for _, tc := range []struct {
		name string
		run  func(c []float32) bool
	}{
		{"k zero", func(c []float32) bool { return d.Gemm(false, false, 2, 2, 0, 1, ok, 1, ok, 2, 0, c, 2) }},
		{"negative m", func(c []float32) bool { return d.Gemm(false, false, -1, 2, 2, 1, ok, 2, ok, 2, 0, c, 2) }},
		{"lda too small", func(c []float32) bool { return d.Gemm(false, false, 2, 2, 3, 1, ok, 2, ok, 2, 0, c, 2) }},
		{"short B", func(c []float32) bool { return d.Gemm(false, true, 2, 5, 3, 1, ok, 3, ok[:10], 3, 0, c, 5) }},
		{"short C", func(c []float32) bool { return d.Gemm(false, false, 3, 4, 2, 1, ok, 2, ok, 4, 0, c[:11], 4) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := make([]float32, 12)
			for i := range c {
				c[i] = float32(i)
			}
			if tc.run(c) {
				t.Fatal("Gemm returned true")
			}
			if d.Err() == nil {
				t.Error("Err() = nil after a declined product")
			}
			for i, v := range c {
				if v != float32(i) {
					t.Fatalf("C[%d] = %g, want it untouched", i, v)
				}
			}
		})
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	c := []float32{7}
	if d.Gemm(false, false, 1, 1, 1, 1, []float32{2}, 1, []float32{3}, 1, 0, c, 1) || c[0] != 7 {
		t.Errorf("Gemm after Close: C = %v", c)
	}
	if !errors.Is(d.Err(), ErrClosed) {
		t.Errorf("Err() after Close = %v, want ErrClosed", d.Err())
	}
}

// BenchmarkGemm times a ViT-B MLP product (4096 tokens, 768 -> 3072),
// copies to and from the device included.
func BenchmarkGemm(b *testing.B) {
	d, err := Open(0)
	if err != nil {
		b.Skipf("no CUDA device: %v", err)
	}
	defer d.Close()
	m, n, k := 4096, 3072, 768
	rng := rand.New(rand.NewSource(1))
	x, w, c := randFloats(rng, m*k), randFloats(rng, n*k), make([]float32, m*n)
	b.ReportAllocs()
	b.SetBytes(int64(m*k+n*k+m*n) * 4)
	runs := 0
	for b.Loop() {
		if !d.Gemm(false, true, m, n, k, 1, x, k, w, k, 0, c, n) {
			b.Fatal(d.Err())
		}
		runs++
	}
	b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(runs)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
