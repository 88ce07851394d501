package mam

import (
	"flag"
	"os"
	"testing"

	"github.com/mam-go/mam-go/nn"
)

// TestMain runs the tests with recycled buffers poisoned (NaN), so that a
// kernel that leaves part of its output unwritten fails the parity tests;
// benchmarks run without it.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		nn.PoisonRecycledBuffers(true)
	}
	os.Exit(m.Run())
}
