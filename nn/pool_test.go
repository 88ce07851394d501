package nn

import "testing"

func TestBufPool(t *testing.T) {
	p := &bufPool{maxBytes: 4 * 20}
	a := p.get(6)
	for i := range a {
		a[i] = 1
	}
	p.put(a)
	if p.held != 24 {
		t.Fatalf("held %d bytes, want 24", p.held)
	}
	b := p.get(6)
	if &b[0] != &a[0] {
		t.Fatal("buffer not reused")
	}
	for i, v := range b {
		if v != 0 {
			t.Fatalf("reused buffer not zeroed at %d", i)
		}
	}
	p.put(b)
	p.put(make([]float32, 16)) // over the 80-byte cap: dropped
	if p.held != 24 || len(p.free) != 1 {
		t.Fatalf("cap not honoured: held %d, %d buffers", p.held, len(p.free))
	}
	// A smaller request takes the buffer (at most twice its size), whole
	// again when it comes back; a much smaller one does not.
	if c := p.get(2); len(c) != 2 || cap(c) == 6 {
		t.Fatalf("get(2) gave %d values of a %d buffer, want a fresh one", len(c), cap(c))
	}
	c := p.get(5)
	if len(c) != 5 || &c[0] != &a[0] || p.held != 0 {
		t.Fatalf("get(5): %d values, reused %v, held %d", len(c), &c[0] == &a[0], p.held)
	}
	c[5:6][0] = 7 // the slack past len is the pool's, zeroed on the next get
	p.put(c)
	if p.held != 24 {
		t.Fatalf("held %d bytes after put, want 24", p.held)
	}
	p.put(make([]float32, 3))
	p.put(make([]float32, 4))
	for i := 1; i < len(p.free); i++ {
		if len(p.free[i-1]) > len(p.free[i]) {
			t.Fatalf("free list not sorted: %d before %d", len(p.free[i-1]), len(p.free[i]))
		}
	}
	if d := p.get(6); d[5] != 0 {
		t.Fatal("slack not zeroed")
	}
}
