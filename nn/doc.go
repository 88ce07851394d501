// Package nn is the base the models are built on: graphs of float32 ops
// over fast kernels, and parameters fetched by state-dict name.
//
// A model builds a Graph: inputs bound at each run (Graph.Input),
// parameters bound once when the graph is built (Graph.Param, or a
// Weight's Node), and ops (Graph.Linear, Graph.LayerNorm, Graph.Conv2d,
// Graph.MHA, ...; Graph.Op for a computation nn has no op for). Building
// errors are recorded and returned by Compile, so model code chains ops
// and checks once. The Machine Compile returns runs the graph per call
// (Machine.Exec, Machine.Run), recycling the buffers of dead
// intermediates within a run and across runs. Outputs are read with
// Values. gorgonia is the graph engine, inside this package only: model
// packages see Graph, Node, Machine, Tensor and []float32.
//
// Parameters come from Params, navigated like the state dict (candle's
// VarBuilder): p.Sub("blocks").Index(3).Weight("attn.qkv.weight", 3*c, c).
// Every tensor is fetched with the shape the model requires; NewParams
// reads a checkpoint (weights.Store), RandomParams draws seeded random
// values for every name asked for, so a model's constructors are its only
// description of the state-dict schema (Params.Store returns the random
// checkpoint they drew). Linear, LayerNorm and Conv2d are the torch.nn
// modules as parameter structs with a Forward method.
//
// Every op is a plain-Go kernel over contiguous float32 slices, exported
// as an XxxInto or XxxRows function where it is useful on its own, tested
// against the reference formula, and wrapped as a graph op. The heavy
// kernels (GEMM, exp, GELU, Winograd transforms) have AVX-512 and AVX2
// assembly picked at run time, with plain-Go fallbacks (build tag purego).
//
// Where a kernel goes: a kernel or a fusion of torch ops that any model
// could use (Linear+GELU, conv+bias+residual+LeakyReLU, attention with
// relative positions, a conv head) lives here, in the file of the op it
// extends (linear.go, conv_ops.go, conv_head.go, attention.go, ...), named
// for what it computes. A fusion of one model's modules (SAM's two-way
// cross attention, its mask product) lives in that model's package, in
// fused.go, behind a call shaped like the PyTorch module it replaces,
// built from this package's exported kernels (Gemm, PackB, SoftmaxRows,
// ParallelFor, Buffer).
//
// Files: graph.go (Graph, Node, Machine), tensor.go, params.go (Params,
// Weight), module.go (Linear, LayerNorm, Conv2d); linear.go, norm.go,
// elementwise.go, shape.go, mha.go, attention.go, resize.go; conv_engine.go
// (direct and transposed convolutions as implicit GEMMs), conv_ops.go
// (their graph ops), conv_head.go, winograd.go, region.go, weight_cache.go;
// gemm*.go (GEMM, packing, the assembly kernels and their generator,
// the backend hook), fastmath*.go, pool.go, parallel.go.
package nn
