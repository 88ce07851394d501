package nn

import (
	"flag"
	"os"
	"testing"
)

// TestMain runs the tests with recycled buffers poisoned (NaN), so that a
// kernel that leaves part of its output unwritten fails the parity tests;
// benchmarks run without it.
// (testutil.Main does the same for the other packages; nn's own tests
// cannot import it.)
func TestMain(m *testing.M) {
	flag.Parse()
	PoisonRecycledBuffers(flag.Lookup("test.bench").Value.String() == "")
	os.Exit(m.Run())
}
