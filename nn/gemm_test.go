package nn

import (
	"fmt"
	"math"
	"math/rand"
	"runtime"
	"testing"
)

// refGemm is the naive float64 reference for Gemm (beta == 0 ignores C).
func refGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				ai, bi := i*lda+p, p*ldb+j
				if transA {
					ai = p*lda + i
				}
				if transB {
					bi = j*ldb + p
				}
				av, bv := a[ai], b[bi]
				s += float64(av) * float64(bv)
			}
			v := float64(alpha) * s
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
			}
			out[i*n+j] = v
		}
	}
	return out
}

func randFloats(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

// gemmCase is one Gemm problem; pad is added to every row stride.
type gemmCase struct {
	m, n, k        int
	transA, transB bool
	alpha, beta    float32
	pad            int
	nanC           bool // fill C with NaN (with beta == 0 it must vanish)
}

func (tc gemmCase) String() string {
	return fmt.Sprintf("m%d_n%d_k%d_tA%v_tB%v_a%g_b%g_pad%d_nan%v", tc.m, tc.n, tc.k, tc.transA, tc.transB, tc.alpha, tc.beta, tc.pad, tc.nanC)
}

func gemmCases() []gemmCase {
	var cs []gemmCase
	sizes := [][3]int{
		{0, 5, 7}, {5, 0, 7}, {4, 5, 0}, {1, 1, 1}, {3, 17, 5}, {17, 3, 65},
		{14, 32, 256}, {6, 16, 4}, {65, 257, 17}, {257, 65, 300}, {29, 33, 513},
		{141, 95, 31}, {196, 64, 196}, {196, 196, 64}, {300, 1, 70}, {1, 300, 70},
	}
	scalars := [][2]float32{{1, 0}, {1, 1}, {0.5, -2}, {-1.5, 0.25}, {0, 3}, {0, 0}}
	for si, sz := range sizes {
		for t := 0; t < 4; t++ {
			ab := scalars[(si+t)%len(scalars)]
			cs = append(cs, gemmCase{
				m: sz[0], n: sz[1], k: sz[2],
				transA: t&1 != 0, transB: t&2 != 0,
				alpha: ab[0], beta: ab[1],
				pad: (si + t) % 3 * 5, nanC: ab[1] == 0,
			})
		}
	}
	// Every alpha/beta pair on one odd shape, NaN in C for beta 0.
	for _, ab := range scalars {
		cs = append(cs, gemmCase{m: 37, n: 41, k: 43, alpha: ab[0], beta: ab[1], pad: 3, nanC: ab[1] == 0})
	}
	return cs
}

// runGemmCase runs tc with kern on threads goroutines and checks it against
// the float64 reference and that C's padding is untouched.
func runGemmCase(t *testing.T, rng *rand.Rand, kern *gemmKernel, threads int, tc gemmCase) {
	t.Helper()
	runGemmCasePacked(t, rng, kern, threads, tc, false, nil)
}

// runGemmCasePacked is runGemmCase, with B packed beforehand (PackB) when
// packed is set and the epilogue ep applied when it is not nil (its bias,
// if any, is drawn here).
func runGemmCasePacked(t *testing.T, rng *rand.Rand, kern *gemmKernel, threads int, tc gemmCase, packed bool, ep *gemmEpilogue) {
	t.Helper()
	ar, ac := tc.m, tc.k
	if tc.transA {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tc.transB {
		br, bc = tc.n, tc.k
	}
	lda, ldb, ldc := ac+tc.pad, bc+tc.pad, tc.n+tc.pad
	a := randFloats(rng, max(ar*lda, 1))
	b := randFloats(rng, max(br*ldb, 1))
	// C is followed by a guard of six rows that must stay untouched.
	cg := randFloats(rng, max(tc.m*ldc, 1)+6*ldc)
	c, guard := cg[:max(tc.m*ldc, 1)], cg[max(tc.m*ldc, 1):]
	guard0 := append([]float32(nil), guard...)
	const sentinel = 12345
	for i := 0; i < tc.m; i++ {
		for j := tc.n; j < ldc; j++ {
			c[i*ldc+j] = sentinel
		}
		if tc.nanC {
			for j := 0; j < tc.n; j++ {
				c[i*ldc+j] = float32(math.NaN())
			}
		}
	}
	want := refGemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	if ep != nil {
		if ep.bias != nil {
			ep.bias = randFloats(rng, tc.n+1)
		}
		for i, w := range want {
			if ep.bias != nil {
				w += float64(ep.bias[i%max(tc.n, 1)])
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
			pb = packBFor(kern, tc.transB, tc.k, tc.n, b, ldb)
		}
		gemmEp(kern, threads, pb, ep, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	case packed:
		pb := packBFor(kern, tc.transB, tc.k, tc.n, b, ldb)
		gemmPre(kern, threads, pb, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	default:
		gemmWith(kern, threads, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	}
	for i := range guard {
		if guard[i] != guard0[i] {
			t.Fatalf("wrote past C, at %d of the guard", i)
		}
	}
	tol := 1e-5 * float64(max(tc.k, 1))
	for i := 0; i < tc.m; i++ {
		for j := 0; j < ldc; j++ {
			got := float64(c[i*ldc+j])
			if j >= tc.n {
				if got != sentinel {
					t.Fatalf("C[%d,%d] (padding) = %g, was overwritten", i, j, got)
				}
				continue
			}
			w := want[i*tc.n+j]
			if d := math.Abs(got - w); !(d <= tol*math.Max(1, math.Abs(w))) {
				t.Fatalf("C[%d,%d] = %g, want %g (diff %g > tol %g)", i, j, got, w, d, tol)
			}
		}
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
			for _, tc := range []gemmCase{
				{m: 100, n: 90, k: 50, alpha: 1, beta: 0, nanC: true},
				{m: 100, n: 90, k: 50, transA: true, alpha: 0.5, beta: 1, pad: 2},
				{m: 61, n: 130, k: 23, transB: true, alpha: -1, beta: 0.5, pad: 1},
				{m: 130, n: 61, k: 29, transA: true, transB: true, alpha: 2, beta: 0, pad: 4, nanC: true},
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
	rng := rand.New(rand.NewSource(3))
	m, n, k := 300, 200, 150
	a, b := randFloats(rng, m*k), randFloats(rng, n*k)
	c := make([]float32, m*n)
	for i := range c {
		c[i] = float32(math.NaN())
	}
	Gemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
	want := refGemm(false, true, m, n, k, 1, a, k, b, k, 0, nil, n)
	for i, w := range want {
		if d := math.Abs(float64(c[i]) - w); !(d <= 1e-5*float64(k)) {
			t.Fatalf("C[%d] = %g, want %g (kernel %s)", i, c[i], w, gemmDefault.name)
		}
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
	const m, n, k, callers = 150, 140, 130, 4
	type job struct{ a, b, c []float32 }
	rng := rand.New(rand.NewSource(7))
	jobs := make([]job, callers)
	for i := range jobs {
		jobs[i] = job{randFloats(rng, m*k), randFloats(rng, k*n), make([]float32, m*n)}
	}
	done := make(chan struct{})
	for i := range jobs {
		go func(j job) {
			defer func() { done <- struct{}{} }()
			for r := 0; r < 5; r++ {
				gemmWith(gemmDefault, 2, false, false, m, n, k, 1, j.a, k, j.b, n, 0, j.c, n)
			}
		}(jobs[i])
	}
	for range jobs {
		<-done
	}
	for i, j := range jobs {
		want := refGemm(false, false, m, n, k, 1, j.a, k, j.b, n, 0, nil, n)
		for e, w := range want {
			if d := math.Abs(float64(j.c[e]) - w); !(d <= 1e-5*k) {
				t.Fatalf("caller %d: C[%d] = %g, want %g", i, e, j.c[e], w)
			}
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
