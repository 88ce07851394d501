package nn

import (
	"fmt"
	"math"
	"math/rand"
	"runtime"
	"testing"

	"github.com/mam-go/mam-go/internal/gemmtest"
)

// randFloats returns n values uniform in [-1, 1).
var randFloats = gemmtest.RandFloats

func gemmCases() []gemmtest.Case {
	var cs []gemmtest.Case
	sizes := [][3]int{
		{0, 5, 7}, {5, 0, 7}, {4, 5, 0}, {1, 1, 1}, {3, 17, 5}, {17, 3, 65},
		{14, 32, 256}, {6, 16, 4}, {65, 257, 17}, {257, 65, 300}, {29, 33, 513},
		{141, 95, 31}, {196, 64, 196}, {196, 196, 64}, {300, 1, 70}, {1, 300, 70},
	}
	scalars := [][2]float32{{1, 0}, {1, 1}, {0.5, -2}, {-1.5, 0.25}, {0, 3}, {0, 0}}
	for si, sz := range sizes {
		for t := 0; t < 4; t++ {
			ab := scalars[(si+t)%len(scalars)]
			cs = append(cs, gemmtest.Case{
				M: sz[0], N: sz[1], K: sz[2],
				TransA: t&1 != 0, TransB: t&2 != 0,
				Alpha: ab[0], Beta: ab[1],
				Pad: (si + t) % 3 * 5, NaNC: ab[1] == 0,
			})
		}
	}
	// Every alpha/beta pair on one odd shape, NaN in C for beta 0.
	for _, ab := range scalars {
		cs = append(cs, gemmtest.Case{M: 37, N: 41, K: 43, Alpha: ab[0], Beta: ab[1], Pad: 3, NaNC: ab[1] == 0})
	}
	return cs
}

// runGemmCase runs tc with kern on threads goroutines and checks it against
// the float64 reference and that C's padding is untouched.
func runGemmCase(t *testing.T, rng *rand.Rand, kern *gemmKernel, threads int, tc gemmtest.Case) {
	t.Helper()
	runGemmCasePacked(t, rng, kern, threads, tc, false, nil)
}

// runGemmCasePacked is runGemmCase, with B packed beforehand (PackB) when
// packed is set and the epilogue ep applied when it is not nil (its bias,
// if any, is drawn here).
func runGemmCasePacked(t *testing.T, rng *rand.Rand, kern *gemmKernel, threads int, tc gemmtest.Case, packed bool, ep *gemmEpilogue) {
	t.Helper()
	a, lda, b, ldb, c, ldc := tc.Operands(rng)
	// C is followed by a guard of six rows that must stay untouched.
	cg := append(c, gemmtest.RandFloats(rng, 6*ldc)...)
	c, guard := cg[:len(c)], cg[len(c):]
	guard0 := append([]float32(nil), guard...)
	want, scale := gemmtest.Ref(tc, a, lda, b, ldb, c, ldc)
	if ep != nil {
		if ep.bias != nil {
			ep.bias = randFloats(rng, tc.N+1)
		}
		for i, w := range want {
			if ep.bias != nil {
				b := float64(ep.bias[i%max(tc.N, 1)])
				w += b
				scale[i] += math.Abs(b)
			}
			if ep.relu && w < 0 {
				w = 0
			}
			want[i] = w
		}
	}
	switch {
	case ep != nil:
		var pb *PackedB
		if packed {
			pb = packBFor(kern, tc.TransB, tc.K, tc.N, b, ldb)
		}
		gemmEp(kern, threads, pb, ep, tc.TransA, tc.TransB, tc.M, tc.N, tc.K, tc.Alpha, a, lda, b, ldb, tc.Beta, c, ldc)
	case packed:
		pb := packBFor(kern, tc.TransB, tc.K, tc.N, b, ldb)
		gemmPre(kern, threads, pb, tc.TransA, tc.TransB, tc.M, tc.N, tc.K, tc.Alpha, a, lda, b, ldb, tc.Beta, c, ldc)
	default:
		gemmWith(kern, threads, tc.TransA, tc.TransB, tc.M, tc.N, tc.K, tc.Alpha, a, lda, b, ldb, tc.Beta, c, ldc)
	}
	for i := range guard {
		if guard[i] != guard0[i] {
			t.Fatalf("%v: wrote past C, at %d of the guard", tc, i)
		}
	}
	if _, err := gemmtest.Check(tc, c, ldc, want, scale, 2e-6*float64(max(tc.K, 1))); err != nil {
		t.Fatal(err)
	}
}

func TestGemm(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, kern := range gemmKernels {
		for _, threads := range []int{1, 3} {
			for _, tc := range gemmCases() {
				t.Run(fmt.Sprintf("%s/t%d/%v", kern.name, threads, tc), func(t *testing.T) {
					runGemmCase(t, rng, kern, threads, tc)
				})
			}
		}
	}
}

// TestGemmPacked runs every case with B packed beforehand, on the default
// blocking and on small blocks (several N and K blocks in the packing).
func TestGemmPacked(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	for _, base := range gemmKernels {
		small := *base
		small.kc, small.mc, small.nc = 7, 3*small.mr, 2*small.nr
		for _, kern := range []*gemmKernel{base, &small} {
			for _, tc := range gemmCases() {
				t.Run(fmt.Sprintf("%s/kc%d/%v", kern.name, kern.kc, tc), func(t *testing.T) {
					runGemmCasePacked(t, rng, kern, 2, tc, true, nil)
				})
			}
		}
	}
	// The public entry point, and PackCache: repacked only for new weights.
	a, b := randFloats(rng, 9*40), randFloats(rng, 30*40)
	var pc PackCache
	p1 := pc.B(true, 40, 30, b, 40)
	if pc.B(true, 40, 30, b, 40) != p1 {
		t.Error("PackCache repacked the same weight")
	}
	b2 := append([]float32(nil), b...)
	if pc.B(true, 40, 30, b2, 40) == p1 {
		t.Error("PackCache kept the packing of another slice")
	}
	// PackBInto and PackedBView: the same products from a caller's buffer.
	for _, tb := range []bool{false, true} {
		k, n := 600, 3500 // two N blocks, two K blocks
		bb := randFloats(rng, k*n)
		ld := n
		if tb {
			ld = k
		}
		buf := make([]float32, PackedBLen(k, n))
		PackBInto(buf, tb, k, n, bb, ld)
		aa := randFloats(rng, 5*k)
		got, want := make([]float32, 5*n), make([]float32, 5*n)
		GemmPacked(false, 5, 1, aa, k, PackedBView(buf, tb, k, n), 0, got, n)
		Gemm(false, tb, 5, n, k, 1, aa, k, bb, ld, 0, want, n)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("transB %v: PackBInto product C[%d] = %g, Gemm %g", tb, i, got[i], want[i])
			}
		}
	}
	got, want := make([]float32, 9*30), make([]float32, 9*30)
	GemmPacked(false, 9, 1, a, 40, pc.B(true, 40, 30, b2, 40), 0, got, 30)
	Gemm(false, true, 9, 30, 40, 1, a, 40, b, 40, 0, want, 30)
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("GemmPacked C[%d] = %g, Gemm %g", i, got[i], want[i])
		}
	}
}

// TestGemmEpilogue runs every case with a bias and/or a ReLU applied by
// the kernels' epilogue, on the default blocking and on small blocks (the
// epilogue only after the last K block), packed and not.
func TestGemmEpilogue(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	for _, base := range gemmKernels {
		small := *base
		small.kc, small.mc, small.nc = 7, 3*small.mr, 2*small.nr
		for _, kern := range []*gemmKernel{base, &small} {
			for i, tc := range gemmCases() {
				ep := gemmEpilogue{relu: i%3 != 1}
				if i%3 != 2 {
					ep.bias = []float32{}
				}
				t.Run(fmt.Sprintf("%s/kc%d/%v/bias%v_relu%v", kern.name, kern.kc, tc, ep.bias != nil, ep.relu), func(t *testing.T) {
					runGemmCasePacked(t, rng, kern, 1+i%2, tc, i%4 < 2, &ep)
				})
			}
		}
	}
	// The public entry point: a ReLU that keeps NaN, and a short bias.
	const m, n, k = 20, 40, 30
	a, b := randFloats(rng, m*k), randFloats(rng, n*k)
	bias := randFloats(rng, n)
	a[0] = float32(math.NaN())
	got, want := make([]float32, m*n), make([]float32, m*n)
	pb := PackB(true, k, n, b, k)
	GemmPackedBias(false, m, a, k, pb, bias, true, got, n)
	Gemm(false, true, m, n, k, 1, a, k, b, k, 0, want, n)
	for i := range want {
		w := want[i] + bias[i%n]
		if w < 0 {
			w = 0
		}
		if !(got[i] == w || w != w && got[i] != got[i]) {
			t.Fatalf("GemmPackedBias C[%d] = %g, want %g", i, got[i], w)
		}
	}
	got2 := make([]float32, m*n)
	GemmBias(false, true, m, n, k, a, k, b, k, bias, true, got2, n)
	for i := range got {
		if !(got2[i] == got[i] || got[i] != got[i] && got2[i] != got2[i]) {
			t.Fatalf("GemmBias C[%d] = %g, GemmPackedBias %g", i, got2[i], got[i])
		}
	}
	for name, f := range map[string]func(){
		"GemmPackedBias": func() { GemmPackedBias(false, m, a, k, pb, bias[:n-1], false, got, n) },
		"GemmBias":       func() { GemmBias(false, true, m, n, k, a, k, b, k, bias[:n-1], false, got, n) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s took a short bias", name)
				}
			}()
			f()
		}()
	}
}

// TestGemmBlocking forces several M, N and K blocks (small cache blocks) so
// that the beta-then-accumulate path, edge tiles inside blocks and the
// parallel split are all exercised on modest sizes.
func TestGemmBlocking(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, base := range gemmKernels {
		kern := *base
		kern.kc, kern.mc, kern.nc = 7, 3*kern.mr, 2*kern.nr
		for _, threads := range []int{1, 2, 4} {
			for _, tc := range []gemmtest.Case{
				{M: 100, N: 90, K: 50, Alpha: 1, Beta: 0, NaNC: true},
				{M: 100, N: 90, K: 50, TransA: true, Alpha: 0.5, Beta: 1, Pad: 2},
				{M: 61, N: 130, K: 23, TransB: true, Alpha: -1, Beta: 0.5, Pad: 1},
				{M: 130, N: 61, K: 29, TransA: true, TransB: true, Alpha: 2, Beta: 0, Pad: 4, NaNC: true},
			} {
				t.Run(fmt.Sprintf("%s/t%d/%v", kern.name, threads, tc), func(t *testing.T) {
					runGemmCase(t, rng, &kern, threads, tc)
				})
			}
		}
	}
}

// TestGemmPublic checks the exported entry point on a size large enough to
// run in parallel, with the kernel chosen for this CPU.
func TestGemmPublic(t *testing.T) {
	tc := gemmtest.Case{M: 300, N: 200, K: 150, TransB: true, Alpha: 1, NaNC: true}
	a, lda, b, ldb, c, ldc := tc.Operands(rand.New(rand.NewSource(3)))
	want, scale := gemmtest.Ref(tc, a, lda, b, ldb, c, ldc)
	Gemm(false, true, tc.M, tc.N, tc.K, 1, a, lda, b, ldb, 0, c, ldc)
	if _, err := gemmtest.Check(tc, c, ldc, want, scale, 2e-6*float64(tc.K)); err != nil {
		t.Fatalf("kernel %s: %v", gemmDefault.name, err)
	}
}

func TestGemmBadArgs(t *testing.T) {
	ok := make([]float32, 12)
	for _, tc := range []struct {
		name string
		run  func()
	}{
		{"negative m", func() { Gemm(false, false, -1, 2, 2, 1, ok, 2, ok, 2, 0, ok, 2) }},
		{"lda too small", func() { Gemm(false, false, 2, 2, 3, 1, ok, 2, ok, 2, 0, ok, 2) }},
		{"short B", func() { Gemm(false, true, 2, 5, 3, 1, ok, 3, ok[:10], 3, 0, ok, 5) }},
		{"short C", func() { Gemm(false, false, 3, 4, 2, 1, ok, 2, ok, 4, 0, ok[:11], 4) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tc.run()
		})
	}
}

// TestGemmNoAlloc checks that a steady-state call, parallel included,
// allocates nothing.
func TestGemmNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	m, n, k := 256, 256, 128
	rng := rand.New(rand.NewSource(4))
	a, b, c := randFloats(rng, m*k), randFloats(rng, k*n), make([]float32, m*n)
	Gemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	allocs := testing.AllocsPerRun(20, func() {
		Gemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	})
	if allocs > 0 {
		t.Fatalf("Gemm allocates %v times per call (GOMAXPROCS %d)", allocs, runtime.GOMAXPROCS(0))
	}
}

func BenchmarkGemm(b *testing.B) {
	for _, bc := range []struct {
		name           string
		m, n, k        int
		transA, transB bool
	}{
		{"qkv_4096x2304x768", 4096, 2304, 768, false, true},
		{"mlp1_4096x3072x768", 4096, 3072, 768, false, true},
		{"mlp2_4096x768x3072", 4096, 768, 3072, false, true},
		{"proj_4096x768x768", 4096, 768, 768, false, true},
		{"winQK_196x196x64", 196, 196, 64, false, true},
		{"winAV_196x64x196", 196, 64, 196, false, false},
		{"globQK_4096x4096x64", 4096, 4096, 64, false, true},
		{"globAV_4096x64x4096", 4096, 64, 4096, false, false},
		// Global attention as RelPosAttentionInto runs it: 64 query rows
		// per task.
		{"globQK_64x4096x64", 64, 4096, 64, false, true},
		{"globAV_64x64x4096", 64, 64, 4096, false, false},
		{"mid_512x512x512", 512, 512, 512, false, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rng := rand.New(rand.NewSource(5))
			a := randFloats(rng, bc.m*bc.k)
			bm := randFloats(rng, bc.k*bc.n)
			c := make([]float32, bc.m*bc.n)
			lda, ldb := bc.k, bc.n
			if bc.transA {
				lda = bc.m
			}
			if bc.transB {
				ldb = bc.k
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				Gemm(bc.transA, bc.transB, bc.m, bc.n, bc.k, 1, a, lda, bm, ldb, 0, c, bc.n)
			}
			flops := 2 * float64(bc.m) * float64(bc.n) * float64(bc.k) * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkGemmKernels compares the kernels this CPU can run on one thread
// (the first is the one Gemm uses), on the encoder's qkv shape.
func BenchmarkGemmKernels(b *testing.B) {
	const m, n, k = 4096, 2304, 768
	rng := rand.New(rand.NewSource(6))
	a, bm, c := randFloats(rng, m*k), randFloats(rng, n*k), make([]float32, m*n)
	for _, kern := range gemmKernels {
		if kern == gemmGo {
			continue // too slow to be worth the wait
		}
		b.Run(kern.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				gemmWith(kern, 1, false, true, m, n, k, 1, a, k, bm, k, 0, c, n)
			}
			b.ReportMetric(2*m*n*k*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// TestGemmConcurrent runs parallel-sized products from several goroutines
// at once (as attention over heads does), sharing the helper pool.
func TestGemmConcurrent(t *testing.T) {
	const callers = 4
	tc := gemmtest.Case{M: 150, N: 140, K: 130, Alpha: 1, NaNC: true}
	type job struct {
		a, b, c       []float32
		lda, ldb, ldc int
		want, scale   []float64
	}
	rng := rand.New(rand.NewSource(7))
	jobs := make([]job, callers)
	for i := range jobs {
		j := &jobs[i]
		j.a, j.lda, j.b, j.ldb, j.c, j.ldc = tc.Operands(rng)
		j.want, j.scale = gemmtest.Ref(tc, j.a, j.lda, j.b, j.ldb, j.c, j.ldc)
	}
	done := make(chan struct{})
	for i := range jobs {
		go func(j job) {
			defer func() { done <- struct{}{} }()
			for r := 0; r < 5; r++ {
				gemmWith(gemmDefault, 2, false, false, tc.M, tc.N, tc.K, 1, j.a, j.lda, j.b, j.ldb, 0, j.c, j.ldc)
			}
		}(jobs[i])
	}
	for range jobs {
		<-done
	}
	for i, j := range jobs {
		if _, err := gemmtest.Check(tc, j.c, j.ldc, j.want, j.scale, 2e-6*float64(tc.K)); err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
}

// TestPackTransposed checks the panel packer (the assembly transposers
// where there are some) against its definition, for the AVX2 kernel's six
// rows, eight and sixteen, fewer rows than the stride, and depths with and
// without a tail of steps, and that it writes nothing past the panel but
// the spill packTransposed allows.
func TestPackTransposed(t *testing.T) {
	rng := rand.New(rand.NewSource(14))
	for _, c := range []struct{ stride, rows int }{{6, 6}, {6, 4}, {8, 8}, {16, 16}, {16, 13}, {14, 14}} {
		for _, kc := range []int{1, 3, 4, 7, 8, 33, 512} {
			const ld, base = 600, 17
			src := randFloats(rng, base+c.rows*ld+kc)
			dst := make([]float32, kc*c.stride+8+c.stride)
			for i := range dst {
				dst[i] = 42
			}
			packTransposed(dst[:kc*c.stride+8], c.stride, src, base, ld, c.rows, kc)
			for p := 0; p < kc; p++ {
				for r := 0; r < c.stride; r++ {
					want := float32(0)
					if r < c.rows {
						want = src[base+r*ld+p]
					}
					if got := dst[p*c.stride+r]; got != want {
						t.Fatalf("stride %d rows %d kc %d: step %d row %d = %v, want %v", c.stride, c.rows, kc, p, r, got, want)
					}
				}
			}
			for i := kc*c.stride + 8; i < len(dst); i++ {
				if dst[i] != 42 {
					t.Fatalf("stride %d rows %d kc %d: wrote past the spill at %d", c.stride, c.rows, kc, i)
				}
			}
		}
	}
}
