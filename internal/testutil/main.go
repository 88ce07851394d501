package testutil

import (
	"flag"
	"os"
	"testing"

	"github.com/mam-go/mam-go/nn"
)

// Main runs a package's tests with recycled buffers poisoned (NaN, see
// nn.PoisonRecycledBuffers), so that a kernel that leaves part of its
// output unwritten fails the parity tests; benchmarks run without it.
// Call it from TestMain.
func Main(m *testing.M) {
	flag.Parse()
	nn.PoisonRecycledBuffers(!Benchmarking())
	os.Exit(m.Run())
}

// Benchmarking reports whether the test binary was asked to run
// benchmarks (-test.bench).
func Benchmarking() bool {
	f := flag.Lookup("test.bench")
	return f != nil && f.Value.String() != ""
}
