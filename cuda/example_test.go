package cuda_test

import (
	"fmt"

	"github.com/mam-go/mam-go/cuda"
)

// Open the first GPU, or stay on the CPU when there is none (or the
// program was built without -tags cuda). A Device plugs into mam with
// mam.SetDevice(d), and into nn with nn.SetGemmBackend(d.Gemm, minFLOPs).
func ExampleOpen() {
	d, err := cuda.Open(0, cuda.WithTF32())
	if err != nil {
		fmt.Println("no GPU: the CPU does the work")
		return
	}
	defer d.Close()
	major, minor := d.ComputeCapability()
	fmt.Printf("%s, %d MiB, compute capability %d.%d\n", d.Name(), d.TotalMemory()>>20, major, minor)
}
