package nn

import (
	"fmt"
	"runtime"
	"sync"
)

// PackedB is a B operand of Gemm packed once into the micro-kernel's
// panels, for products that reuse it (layer weights): GemmPacked then
// skips the packing, which dominates products with few rows. It keeps a
// reference to the source, which must not change while it is used.
type PackedB struct {
	kern   *gemmKernel
	transB bool
	k, n   int
	b      []float32 // the source, for a GEMM backend
	ldb    int
	blocks [][]float32 // packed blocks in the order of gemmCall.run's loop nest
}

// PackB packs op(B) (k x n; B is n x k when transB) with row stride ldb.
// It panics on inconsistent arguments, as Gemm does.
func PackB(transB bool, k, n int, b []float32, ldb int) *PackedB {
	return packBFor(gemmDefault, transB, k, n, b, ldb)
}

func packBFor(kern *gemmKernel, transB bool, k, n int, b []float32, ldb int) *PackedB {
	if k < 0 || n < 0 {
		panic("nn: PackB: negative size")
	}
	var mem []float32
	return packBInto(kern, alignedFloats(&mem, packedBLen(kern, k, n)), transB, k, n, b, ldb)
}

// PackedBLen is how many floats PackBInto writes for op(B) of k x n.
func PackedBLen(k, n int) int { return packedBLen(gemmDefault, k, n) }

func packedBLen(kern *gemmKernel, k, n int) int {
	total := 0
	(&PackedB{kern: kern, k: k, n: n}).forBlocks(func(_, nc, _, kc int) {
		total += (nc + kern.nr - 1) / kern.nr * kern.nr * kc
	})
	return total
}

// PackBInto is PackB writing the packed blocks into dst (at least
// PackedBLen(k, n) floats, 64-byte aligned as Go's large allocations are)
// instead of fresh memory: the packing of an operand computed at run time,
// shared by several products. PackedBView rebuilds the result from dst.
func PackBInto(dst []float32, transB bool, k, n int, b []float32, ldb int) *PackedB {
	return packBInto(gemmDefault, dst, transB, k, n, b, ldb)
}

func packBInto(kern *gemmKernel, dst []float32, transB bool, k, n int, b []float32, ldb int) *PackedB {
	if len(dst) < packedBLen(kern, k, n) {
		panic("nn: PackBInto: destination too short")
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMatrix("B", b, br, bc, ldb)
	p := packedBLayout(kern, dst, transB, k, n)
	p.b, p.ldb = b, ldb
	g := &gemmCall{kern: kern, transB: transB, n: n, k: k, b: b, ldb: ldb}
	i := 0
	p.forBlocks(func(jc, nc, pc, kc int) {
		g.jc, g.nc, g.pc, g.kc = jc, nc, pc, kc
		g.nPanels = (nc + kern.nr - 1) / kern.nr
		g.packChunk = g.nPanels
		g.bp = p.blocks[i]
		g.packBUnit(0)
		i++
	})
	return p
}

// PackedBView returns the PackedB that PackBInto(buf, transB, k, n, ...)
// made, for products with it (GemmPacked); it has no source for a GEMM
// backend, so it always runs on the CPU.
func PackedBView(buf []float32, transB bool, k, n int) *PackedB {
	if len(buf) < PackedBLen(k, n) {
		panic("nn: PackedBView: buffer too short")
	}
	return packedBLayout(gemmDefault, buf, transB, k, n)
}

// packedBLayout cuts buf into the blocks of op(B) k x n, in the order of
// gemmCall.run's loop nest.
func packedBLayout(kern *gemmKernel, buf []float32, transB bool, k, n int) *PackedB {
	p := &PackedB{kern: kern, transB: transB, k: k, n: n}
	off := 0
	p.forBlocks(func(_, nc, _, kc int) {
		size := (nc + kern.nr - 1) / kern.nr * kern.nr * kc
		p.blocks = append(p.blocks, buf[off:off+size])
		off += size
	})
	return p
}

// forBlocks calls f for each (N block, K block) in the loop nest's order.
func (p *PackedB) forBlocks(f func(jc, nc, pc, kc int)) {
	if p.k <= 0 || p.n <= 0 {
		return
	}
	ncMax := blockSize(p.n, p.kern.nc, p.kern.nr)
	kcMax := blockSize(p.k, p.kern.kc, 1)
	for jc := 0; jc < p.n; jc += ncMax {
		for pc := 0; pc < p.k; pc += kcMax {
			f(jc, min(ncMax, p.n-jc), pc, min(kcMax, p.k-pc))
		}
	}
}

// GemmPacked is Gemm with a packed B: C = alpha*op(A)*op(B) + beta*C with
// op(A) m x k (A is k x m when transA, row stride lda) and C m x n.
func GemmPacked(transA bool, m int, alpha float32, a []float32, lda int, pb *PackedB, beta float32, c []float32, ldc int) {
	if pb.b != nil && gemmOffload(transA, pb.transB, m, pb.n, pb.k, alpha, a, lda, pb.b, pb.ldb, beta, c, ldc) {
		return
	}
	gemmPre(pb.kern, runtime.GOMAXPROCS(0), pb, transA, pb.transB, m, pb.n, pb.k, alpha, a, lda, pb.b, pb.ldb, beta, c, ldc)
}

// GemmPackedBias is GemmPacked with beta 0 and alpha 1 followed by a bias
// and an optional ReLU: C = op(A)*op(B) + bias (bias of n values, added to
// every row; nil: none), then C = max(C, 0) when relu. Both are applied to
// each tile of C as it leaves the kernel, while it is in cache, instead of
// in passes over C.
func GemmPackedBias(transA bool, m int, a []float32, lda int, pb *PackedB, bias []float32, relu bool, c []float32, ldc int) {
	if bias != nil && len(bias) < pb.n {
		panic(fmt.Sprintf("nn: GemmPackedBias: %d bias values for %d columns", len(bias), pb.n))
	}
	ep := &gemmEpilogue{bias: bias, relu: relu}
	if pb.b != nil && gemmOffload(transA, pb.transB, m, pb.n, pb.k, 1, a, lda, pb.b, pb.ldb, 0, c, ldc) {
		ep.apply(c, ldc, m, pb.n, 0)
		return
	}
	gemmEp(pb.kern, runtime.GOMAXPROCS(0), pb, ep, transA, pb.transB, m, pb.n, pb.k, 1, a, lda, pb.b, pb.ldb, 0, c, ldc)
}

// PackCache keeps the packing of one weight between runs of a graph op,
// keyed by the weight's storage: it repacks when a different slice comes.
// It is safe for concurrent use.
type PackCache struct {
	mu   sync.Mutex
	key  weightKey
	pb   *PackedB
	seen bool // B was asked once: pack from the second use on
}

// B returns w packed as a Gemm B operand (PackB's arguments), from the
// cache when w is the slice it was last packed from.
func (c *PackCache) B(transB bool, k, n int, w []float32, ldw int) *PackedB {
	if c == nil {
		return PackB(transB, k, n, w, ldw)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.packed(transB, k, n, w, ldw)
}

// reusedB is B from the second call on; the first call packs nothing and
// returns nil (the caller multiplies unpacked): a graph run once, as the
// per-caption graphs of a detector are, never pays for a packed copy of
// its weights.
func (c *PackCache) reusedB(transB bool, k, n int, w []float32, ldw int) *PackedB {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.seen {
		c.seen = true
		return nil
	}
	return c.packed(transB, k, n, w, ldw)
}

// packed is B's cache lookup; c.mu must be held.
func (c *PackCache) packed(transB bool, k, n int, w []float32, ldw int) *PackedB {
	var key weightKey
	if len(w) > 0 {
		key = weightKey{&w[0], len(w)}
	}
	if c.pb == nil || c.key != key || c.pb.transB != transB || c.pb.k != k || c.pb.n != n || c.pb.ldb != ldw || c.pb.kern != gemmDefault {
		c.key, c.pb = key, PackB(transB, k, n, w, ldw)
	}
	return c.pb
}

// Linear is LinearRows (dst = x @ w^T + b, b may be nil) with w's packing
// kept in c: for products of a few rows by a layer's weight.
func (c *PackCache) Linear(dst, x []float32, rows, in int, w []float32, out int, b []float32) {
	linearRows(c, dst, x, rows, in, w, out, b)
}
