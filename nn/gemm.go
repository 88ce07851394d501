package nn

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

//go:generate go run gemm_asmgen.go

// Gemm computes C = alpha*op(A)*op(B) + beta*C for row-major float32
// matrices, where op(A) is m x k (A is k x m when transA), op(B) is k x n
// (B is n x k when transB) and C is m x n. lda, ldb, ldc are row strides.
// When beta is 0, C is overwritten without being read (NaNs in C vanish).
//
// The product runs on a cache-blocked, packed, register-blocked kernel
// (AVX-512 or AVX2+FMA assembly where the CPU has it, plain Go otherwise),
// split across GOMAXPROCS goroutines when it is large enough. Products of
// the size SetGemmBackend names go to the installed backend (a GPU) first.
//
// Gemm cannot return an error (its BLAS-like signature is shared), so
// arguments that would make it read or write out of bounds (negative sizes,
// strides below the row width, slices too short) panic with a message naming
// the argument, before any memory is touched.
func Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if gemmOffload(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) { // a GPU, see SetGemmBackend
		return
	}
	gemmWith(gemmDefault, runtime.GOMAXPROCS(0), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// GemmBias is Gemm with alpha 1 and beta 0 followed by a bias and an
// optional ReLU: C = op(A)*op(B) + bias (bias of n values, added to every
// row; nil: none), then C = max(C, 0) when relu (NaN stays NaN). Both are
// applied to each tile of C as it leaves the kernel, while it is in
// cache, instead of in passes over C.
func GemmBias(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, bias []float32, relu bool, c []float32, ldc int) {
	if bias != nil && len(bias) < n {
		panic(fmt.Sprintf("nn: GemmBias: %d bias values for %d columns", len(bias), n))
	}
	ep := &gemmEpilogue{bias: bias, relu: relu}
	if gemmOffload(transA, transB, m, n, k, 1, a, lda, b, ldb, 0, c, ldc) {
		ep.apply(c, ldc, m, n, 0)
		return
	}
	gemmEp(gemmDefault, runtime.GOMAXPROCS(0), nil, ep, transA, transB, m, n, k, 1, a, lda, b, ldb, 0, c, ldc)
}

// gemmKernel is a register-blocked micro-kernel with its cache blocking.
// fn computes the full mr x nr tile c[i*ldc+j] = alpha*sum_p a[p*mr+i] *
// b[p*nr+j] + beta*c[i*ldc+j] from kc packed steps; it must not read c when
// beta is 0, and the caller guarantees every slice is long enough.
type gemmKernel struct {
	name   string
	mr, nr int // register tile
	kc     int // most depth of a packed block: C is updated once per kc
	mc     int // most rows of a packed A block (kept in L2)
	nc     int // most columns of a packed B block (kept in L3), multiple of nr
	fn     func(kc int, a, b, c []float32, ldc int, alpha, beta float32)
	// fnPF, when not nil, is fn prefetching C first when beta is not 0:
	// for the first depth block of a C the caller filled (it may be far
	// in memory).
	fnPF func(kc int, a, b, c []float32, ldc int, alpha, beta float32)
	// fnEp, when not nil, is fn followed by the epilogue of gemmEpilogue
	// on the tile: bias[j] added on every row (bias nil: none), then the
	// ReLU when relu is not 0.
	fnEp func(kc int, a, b, c []float32, ldc int, alpha, beta float32, bias *float32, relu int)
	// edge[r] and edgeEp[r], where not nil, are fn and fnEp for the
	// first r < mr rows of an A panel (the last rows of C): they write
	// only those rows.
	edge   []func(kc int, a, b, c []float32, ldc int, alpha, beta float32)
	edgeEp []func(kc int, a, b, c []float32, ldc int, alpha, beta float32, bias *float32, relu int)
}

// gemmEpilogue is what a product applies to C after its last depth block,
// tile by tile while the tile is in cache: C[i][j] += bias[j] (bias nil:
// none), then C = max(C, 0) when relu.
type gemmEpilogue struct {
	bias []float32 // at least n values, or nil
	relu bool
}

// apply runs the epilogue over rows x cols of c (row stride ldc) at column
// j0 of the product.
func (ep *gemmEpilogue) apply(c []float32, ldc, rows, cols, j0 int) {
	for i := 0; i < rows; i++ {
		row := c[i*ldc : i*ldc+cols]
		if ep.bias != nil {
			addRows(row, row, ep.bias[j0:j0+cols])
		}
		if ep.relu {
			relu(row, row)
		}
	}
}

// gemmParallelMin is the multiply-add count below which Gemm stays on the
// calling goroutine: waking helpers costs more than it saves there.
const gemmParallelMin = 1 << 21

// gemmBusy counts Gemm calls in progress.
var gemmBusy atomic.Int32

// gemmPackChunk is the most B micro-panels one packing unit handles.
const gemmPackChunk = 8

// Phases of a parallel step.
const (
	phasePackB = iota
	phaseCompute
)

// gemmCall is the state of one Gemm call, shared by the goroutines working
// on it. It is pooled (with its packed B buffer) between calls.
type gemmCall struct {
	kern           *gemmKernel
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int

	// Current (jc, pc) block of the loop nest.
	jc, nc, pc, kc int
	betaEff        float32 // beta for the first k block, then 1
	mPanels        int     // A micro-panels (of mr rows) in M
	mBlocks        int     // M blocks, each a run of micro-panels
	mc             int     // rows in the largest M block
	nPanels        int     // B micro-panels in this block
	nSplit         int     // parts each M block's panels are split into
	packChunk      int     // B micro-panels per packing unit
	bp             []float32
	bpMem          []float32
	pre            *PackedB      // B packed beforehand, or nil
	preBlock       int           // index of the current block in pre
	ep             *gemmEpilogue // applied on the last depth block, or nil
	epv            gemmEpilogue  // what ep points to

	// Parallel phase: units are taken from next until units is reached.
	phase, units int
	next         atomic.Int64

	mu     sync.Mutex   // guards gen and open
	gen    uint64       // bumped for every parallel phase; stale helpers see a mismatch
	open   bool         // helpers may still join
	active atomic.Int64 // helpers inside the phase
	waiter waiter       // the caller waiting for active to drop to zero
}

// gemmScratch is one participant's packed A block and edge tile.
type gemmScratch struct {
	ap, apMem     []float32
	tile, tileMem []float32
}

var (
	gemmCallPool    = sync.Pool{New: func() any { return new(gemmCall) }}
	gemmScratchPool = sync.Pool{New: func() any { return new(gemmScratch) }}
)

// alignedFloats returns a 64-byte aligned slice of n floats, reusing *mem
// when it is large enough.
func alignedFloats(mem *[]float32, n int) []float32 {
	const pad = 16 // floats in 64 bytes
	if cap(*mem) < n+pad {
		*mem = make([]float32, n+pad)
	}
	s := (*mem)[:cap(*mem)]
	off := int(uintptr(unsafe.Pointer(&s[0]))&63) / 4
	if off != 0 {
		off = pad - off
	}
	return s[off : off+n : off+n]
}

// gemmWith is Gemm on a given kernel and thread count.
func gemmWith(kern *gemmKernel, threads int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemmPre(kern, threads, nil, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemmPre is gemmWith taking B's packed blocks from pre when it is not nil
// (packed for kern, n, k).
func gemmPre(kern *gemmKernel, threads int, pre *PackedB, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemmEp(kern, threads, pre, nil, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemmEp is gemmPre with the epilogue ep (nil: none) applied to C after
// the product (len(ep.bias) >= n is the caller's to check).
func gemmEp(kern *gemmKernel, threads int, pre *PackedB, ep *gemmEpilogue, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("nn: Gemm: negative size m=%d n=%d k=%d", m, n, k))
	}
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, pre == nil) // a packed B was checked when packed
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleRows(c, m, n, ldc, beta)
		if ep != nil {
			ep.apply(c, ldc, m, n, 0)
		}
		return
	}
	if int64(m)*int64(n)*int64(k) < gemmParallelMin {
		threads = 1
	}
	// Calls already running (callers parallel over heads, say) take a
	// thread each: only the rest is offered to helpers.
	busy := int(gemmBusy.Add(1))
	defer gemmBusy.Add(-1)
	threads = max(1, threads-busy+1)

	g := gemmCallPool.Get().(*gemmCall)
	g.kern = kern
	g.transA, g.transB = transA, transB
	g.m, g.n, g.k = m, n, k
	g.alpha, g.beta = alpha, beta
	g.a, g.b, g.c = a, b, c
	g.lda, g.ldb, g.ldc = lda, ldb, ldc
	g.pre = pre
	g.ep = nil
	if ep != nil {
		g.epv = *ep
		g.ep = &g.epv
	}
	g.run(threads)
	g.a, g.b, g.c, g.pre, g.ep, g.epv = nil, nil, nil, nil, nil, gemmEpilogue{}
	g.bp = nil
	gemmCallPool.Put(g)
}

// checkGemm panics unless a, b (when checkB) and c hold Gemm's operands.
func checkGemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, checkB bool) {
	ar, ac := m, k // A as stored
	if transA {
		ar, ac = k, m
	}
	checkMatrix("A", a, ar, ac, lda)
	if checkB {
		if transB {
			checkMatrix("B", b, n, k, ldb)
		} else {
			checkMatrix("B", b, k, n, ldb)
		}
	}
	checkMatrix("C", c, m, n, ldc)
}

// checkMatrix panics unless s holds a rows x cols matrix with row stride ld.
func checkMatrix(name string, s []float32, rows, cols, ld int) {
	if rows == 0 || cols == 0 {
		return
	}
	if ld < cols {
		panic(fmt.Sprintf("nn: Gemm: ld%s=%d is less than the %d columns of %s", name, ld, cols, name))
	}
	if len(s) < (rows-1)*ld+cols {
		panic(fmt.Sprintf("nn: Gemm: %s has %d elements, needs %d for %dx%d with stride %d", name, len(s), (rows-1)*ld+cols, rows, cols, ld))
	}
}

// scaleRows sets C = beta*C (C = 0 when beta is 0, whatever C held).
func scaleRows(c []float32, m, n, ldc int, beta float32) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}

// blockSize splits total into ceil(total/max) balanced blocks, rounded up to
// a multiple of unit.
func blockSize(total, maxBlock, unit int) int {
	blocks := (total + maxBlock - 1) / maxBlock
	size := (total + blocks - 1) / blocks
	return (size + unit - 1) / unit * unit
}

// run is the GotoBLAS/BLIS loop nest: for each NC block of columns and KC
// block of depth, pack B (in parallel), then compute every MC block of rows
// (in parallel, each participant packing its own A block).
func (g *gemmCall) run(threads int) {
	kern := g.kern
	mr, nr := kern.mr, kern.nr
	ncMax := blockSize(g.n, kern.nc, nr)
	kcMax := blockSize(g.k, kern.kc, 1)
	// M blocks are balanced runs of A micro-panels, at most kern.mc rows.
	// Aim for 3 units per thread or more (a multiple of threads), so that
	// a late or slow helper costs little: first with more M blocks (which
	// share the packed B), then, when M is too short for one block per
	// thread, by splitting the B panels (each part packs the same A block).
	target := 1
	if threads > 1 {
		target = 3 * threads
	}
	g.mPanels = (g.m + mr - 1) / mr
	g.mBlocks = max((g.m+kern.mc-1)/kern.mc, target)
	g.mBlocks = (g.mBlocks + threads - 1) / threads * threads
	g.mBlocks = min(g.mBlocks, g.mPanels)
	g.mc = (g.mPanels + g.mBlocks - 1) / g.mBlocks * mr // largest block
	g.preBlock = 0
	for jc := 0; jc < g.n; jc += ncMax {
		g.jc, g.nc = jc, min(ncMax, g.n-jc)
		g.nPanels = (g.nc + nr - 1) / nr
		g.packChunk = max(1, min(gemmPackChunk, g.nPanels/target))
		g.nSplit = 1
		if g.mBlocks < threads {
			g.nSplit = min(g.nPanels, (target+g.mBlocks-1)/g.mBlocks)
		}
		for pc := 0; pc < g.k; pc += kcMax {
			g.pc, g.kc = pc, min(kcMax, g.k-pc)
			g.betaEff = 1
			if pc == 0 {
				g.betaEff = g.beta
			}
			if g.pre != nil {
				g.bp = g.pre.blocks[g.preBlock]
				g.preBlock++
			} else {
				g.bp = alignedFloats(&g.bpMem, g.nPanels*g.kc*nr)
				g.parallel(phasePackB, (g.nPanels+g.packChunk-1)/g.packChunk, threads)
			}
			g.parallel(phaseCompute, g.mBlocks*g.nSplit, threads)
		}
	}
}

// Helper goroutines take parallel phases from gemmQueue. Waking a parked
// goroutine can take hundreds of microseconds on a virtual machine, so
// helpers poll the queue for gemmSpin after each phase before parking, and
// the caller polls for its helpers to finish: back-to-back phases and calls
// then hand over in well under a microsecond.
var (
	gemmQueue     = make(chan gemmMsg, 64)
	gemmWorkersMu sync.Mutex
	gemmWorkers   atomic.Int32
)

// gemmSpin is how long an idle helper polls for work before parking.
const gemmSpin = 200 * time.Microsecond

// gemmMsg offers phase gen of g, or the ParallelFor task t, to a helper.
type gemmMsg struct {
	g   *gemmCall
	gen uint64
	t   *parTask
}

// ensureGemmWorkers starts helper goroutines until there are n of them.
func ensureGemmWorkers(n int) {
	if int(gemmWorkers.Load()) >= n {
		return
	}
	gemmWorkersMu.Lock()
	defer gemmWorkersMu.Unlock()
	for int(gemmWorkers.Load()) < n {
		go gemmWorker()
		gemmWorkers.Add(1)
	}
}

// gemmWorker helps with parallel phases for the life of the process.
func gemmWorker() {
	for {
		msg, ok := pollGemmQueue()
		if !ok {
			msg = <-gemmQueue
		}
		msg.run()
	}
}

// run helps with the work msg offers.
func (msg gemmMsg) run() {
	if msg.t != nil {
		msg.t.help()
		return
	}
	msg.g.help(msg.gen)
}

// pollGemmQueue polls gemmQueue for up to gemmSpin, yielding the processor
// now and then so that spinning never starves other goroutines.
func pollGemmQueue() (gemmMsg, bool) {
	var start time.Time
	for i := 0; ; i++ {
		select {
		case msg := <-gemmQueue:
			return msg, true
		default:
		}
		if i%64 == 63 {
			if start.IsZero() {
				start = time.Now()
			} else if time.Since(start) > gemmSpin {
				return gemmMsg{}, false
			}
			runtime.Gosched()
		}
	}
}

// help joins phase gen of g if it is still open.
func (g *gemmCall) help(gen uint64) {
	g.mu.Lock()
	if !g.open || g.gen != gen {
		g.mu.Unlock()
		return
	}
	g.active.Add(1)
	g.mu.Unlock()
	g.runUnits()
	if g.active.Add(-1) == 0 {
		g.waiter.wake()
	}
}

// parallel runs units of a phase on the calling goroutine and on up to
// threads-1 helpers; it returns when every unit is done.
func (g *gemmCall) parallel(phase, units, threads int) {
	helpers := min(threads, units) - 1
	if helpers <= 0 {
		g.phase, g.units = phase, units
		g.next.Store(0)
		g.runUnits()
		return
	}
	ensureGemmWorkers(helpers)
	g.mu.Lock()
	g.gen++
	gen := g.gen
	g.phase, g.units = phase, units
	g.next.Store(0)
	g.open = true
	g.mu.Unlock()
	for i := 0; i < helpers; i++ {
		select {
		case gemmQueue <- gemmMsg{g: g, gen: gen}:
		default: // helpers are saturated: do the work here
		}
	}
	g.runUnits()
	g.mu.Lock()
	g.open = false // no helper joins from now on
	g.mu.Unlock()
	// Helpers still inside are finishing their last unit: wait for them.
	waitFor(&g.active, &g.waiter, false)
}

// runUnits takes units of the current phase until there are none left.
func (g *gemmCall) runUnits() {
	var s *gemmScratch
	for {
		u := int(g.next.Add(1) - 1)
		if u >= g.units {
			break
		}
		switch g.phase {
		case phasePackB:
			g.packBUnit(u)
		case phaseCompute:
			if s == nil {
				s = gemmScratchPool.Get().(*gemmScratch)
				s.ap = alignedFloats(&s.apMem, g.mc*g.kc+16)
				s.tile = alignedFloats(&s.tileMem, g.kern.mr*g.kern.nr)
			}
			g.computeUnit(u, s)
		}
	}
	if s != nil {
		gemmScratchPool.Put(s)
	}
}

// packBUnit packs B micro-panels [u*packChunk, ...) of the current
// block: panel jp holds op(B)[pc+p][jc+jp*nr+jj] at bp[jp*kc*nr+p*nr+jj],
// zero past column n.
func (g *gemmCall) packBUnit(u int) {
	nr, kc := g.kern.nr, g.kc
	for jp := u * g.packChunk; jp < min((u+1)*g.packChunk, g.nPanels); jp++ {
		j0 := g.jc + jp*nr
		cols := min(nr, g.n-j0)
		dst := g.bp[jp*kc*nr : (jp+1)*kc*nr]
		if g.transB {
			// B is n x k: column jj of the panel is row j0+jj of B.
			packTransposed(dst, nr, g.b, j0*g.ldb+g.pc, g.ldb, cols, kc)
			continue
		}
		// B is k x n: step p of the panel is a piece of row pc+p of B.
		for p := 0; p < kc; p++ {
			row := dst[p*nr : p*nr+nr]
			n := copy(row, g.b[(g.pc+p)*g.ldb+j0:(g.pc+p)*g.ldb+j0+cols])
			clear(row[n:])
		}
	}
}

// packA packs rows [i0, i0+rows) of op(A) over the current depth block into
// ap: panel ip holds op(A)[i0+ip*mr+ii][pc+p] at ap[ip*kc*mr+p*mr+ii], zero
// past the last row.
func (g *gemmCall) packA(ap []float32, i0, rows int) {
	mr, kc := g.kern.mr, g.kc
	for ip := 0; ip*mr < rows; ip++ {
		r0 := i0 + ip*mr
		rs := min(mr, i0+rows-r0)
		dst := ap[ip*kc*mr : (ip+1)*kc*mr]
		if g.transA {
			// A is k x m: step p of the panel is a piece of row pc+p of A.
			for p := 0; p < kc; p++ {
				row := dst[p*mr : p*mr+mr]
				src := g.a[(g.pc+p)*g.lda+r0:]
				n := copy(row, src[:rs])
				clear(row[n:])
			}
			continue
		}
		// A is m x k: row ii of the panel is row r0+ii of A. The rest of
		// ap is slack the transposing packer may scribble on.
		packTransposed(ap[ip*kc*mr:], mr, g.a, r0*g.lda+g.pc, g.lda, rs, kc)
	}
}

// packTransposed sets dst[p*stride+r] = src[base+r*ld+p] for r < rows and
// p < kc, and zeroes lanes [rows, stride) of every step. Full panels go
// through the assembly 8-row transposer where there is one; it may write up
// to 8 floats past step kc-1 of dst (within len(dst)), so panels must be
// packed in order, each overwriting its predecessor's spill.
func packTransposed(dst []float32, stride int, src []float32, base, ld, rows, kc int) {
	p0 := 0
	if hasPackT8 && rows == 6 && stride == 6 && kc >= 4 {
		// The AVX2 kernel's A panels: six rows, no lane to spare.
		kc4 := kc &^ 3
		if len(dst) >= kc4*6 {
			_ = src[base+5*ld+kc-1] // every row read is in bounds
			offs := [6]int{base, base + ld, base + 2*ld, base + 3*ld, base + 4*ld, base + 5*ld}
			packT6(dst, src, &offs, kc4)
			p0 = kc4
		}
	} else if hasPackT8 && rows == stride && kc >= 4 {
		kc4 := kc &^ 3
		last := (rows - 1) / 8 * 8
		if len(dst) >= (kc4-1)*stride+last+8 {
			_ = src[base+(rows-1)*ld+kc-1] // every row read is in bounds
			var offs [8]int
			// Last group first: its junk lanes spill into the next step's
			// first lanes, which the groups after it overwrite.
			for g0 := last; g0 >= 0; g0 -= 8 {
				for q := range offs {
					offs[q] = base + min(g0+q, rows-1)*ld
				}
				packT8(dst[g0:], src, &offs, kc4, stride)
			}
			p0 = kc4
		}
	}
	if p0 == kc {
		return
	}
	if rows < stride {
		for p := p0; p < kc; p++ {
			clear(dst[p*stride+rows : (p+1)*stride])
		}
	}
	r := 0
	for ; r+4 <= rows; r += 4 {
		o := base + r*ld
		s0 := src[o+p0 : o+kc]
		s1 := src[o+ld+p0 : o+ld+kc]
		s2 := src[o+2*ld+p0 : o+2*ld+kc]
		s3 := src[o+3*ld+p0 : o+3*ld+kc]
		s1, s2, s3 = s1[:len(s0)], s2[:len(s0)], s3[:len(s0)]
		for i := range s0 {
			q := (p0+i)*stride + r
			d := dst[q : q+4 : q+4]
			d[0], d[1], d[2], d[3] = s0[i], s1[i], s2[i], s3[i]
		}
	}
	for ; r < rows; r++ {
		o := base + r*ld
		for i, v := range src[o+p0 : o+kc] {
			dst[(p0+i)*stride+r] = v
		}
	}
}

// computeUnit packs M block u/nSplit and multiplies it by its share of the
// B panels, updating C.
func (g *gemmCall) computeUnit(u int, s *gemmScratch) {
	kern := g.kern
	mr, nr, kc := kern.mr, kern.nr, g.kc
	ib, js := u/g.nSplit, u%g.nSplit
	i0 := ib * g.mPanels / g.mBlocks * mr
	rows := min((ib+1)*g.mPanels/g.mBlocks*mr, g.m) - i0
	p0, p1 := js*g.nPanels/g.nSplit, (js+1)*g.nPanels/g.nSplit
	if p0 == p1 {
		return
	}
	g.packA(s.ap, i0, rows)
	c, ldc := g.c, g.ldc
	fn := kern.fn
	if g.pc == 0 && g.betaEff != 0 && kern.fnPF != nil {
		fn = kern.fnPF
	}
	var ep *gemmEpilogue
	if g.pc+kc == g.k {
		ep = g.ep // the last depth block
	}
	for jp := p0; jp < p1; jp++ {
		j := g.jc + jp*nr
		cols := min(nr, g.n-j)
		bpan := g.bp[jp*kc*nr : (jp+1)*kc*nr]
		var bias *float32
		relu := 0
		if ep != nil {
			if ep.bias != nil && cols == nr {
				bias = &ep.bias[j]
			}
			if ep.relu {
				relu = 1
			}
		}
		for ip := 0; ip*mr < rows; ip++ {
			i := i0 + ip*mr
			rs := min(mr, g.m-i)
			apan := s.ap[ip*kc*mr : (ip+1)*kc*mr]
			if rs == mr && cols == nr {
				switch {
				case ep == nil:
					fn(kc, apan, bpan, c[i*ldc+j:], ldc, g.alpha, g.betaEff)
				case kern.fnEp != nil:
					kern.fnEp(kc, apan, bpan, c[i*ldc+j:], ldc, g.alpha, g.betaEff, bias, relu)
				default:
					kern.fn(kc, apan, bpan, c[i*ldc+j:], ldc, g.alpha, g.betaEff)
					ep.apply(c[i*ldc+j:], ldc, mr, nr, j)
				}
				continue
			}
			if cols == nr && rs < len(kern.edge) && kern.edge[rs] != nil {
				// The last rows of C, by a kernel of as many rows.
				cc := c[i*ldc+j : (i+rs-1)*ldc+j+nr]
				switch {
				case ep == nil:
					kern.edge[rs](kc, apan, bpan, cc, ldc, g.alpha, g.betaEff)
				case kern.edgeEp[rs] != nil:
					kern.edgeEp[rs](kc, apan, bpan, cc, ldc, g.alpha, g.betaEff, bias, relu)
				default:
					kern.edge[rs](kc, apan, bpan, cc, ldc, g.alpha, g.betaEff)
					ep.apply(cc, ldc, rs, nr, j)
				}
				continue
			}
			// Edge tile: compute it whole into the scratch tile, then
			// merge the part inside C.
			kern.fn(kc, apan, bpan, s.tile, nr, g.alpha, 0)
			for ii := 0; ii < rs; ii++ {
				dst := c[(i+ii)*ldc+j : (i+ii)*ldc+j+cols]
				src := s.tile[ii*nr : ii*nr+cols]
				if g.betaEff == 0 {
					copy(dst, src)
				} else {
					for jj, v := range src {
						dst[jj] = v + g.betaEff*dst[jj]
					}
				}
			}
			if ep != nil {
				ep.apply(c[i*ldc+j:], ldc, rs, cols, j)
			}
		}
	}
}
