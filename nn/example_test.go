package nn_test

import (
	"context"
	"fmt"
	"log"

	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// mlp is a module as model packages write one: a struct of parameters
// fetched by its constructor, and a forward method that adds it to a graph.
type mlp struct {
	fc1, fc2 nn.Linear
}

func newMLP(p *nn.Params, in, hidden, out int) mlp {
	return mlp{fc1: nn.NewLinear(p.Sub("fc1"), in, hidden), fc2: nn.NewLinear(p.Sub("fc2"), hidden, out)}
}

// forward: x (N, in) -> (N, out).
func (m mlp) forward(g *nn.Graph, x *nn.Node) *nn.Node {
	return m.fc2.Forward(g, m.fc1.ForwardGELU(g, x))
}

// Build a model from random parameters, run it, and read the state dict
// its constructor asked for.
func ExampleGraph() {
	p := nn.RandomParams(1, nil)
	m := newMLP(p.Sub("mlp"), 4, 8, 2)
	if err := p.Err(); err != nil {
		log.Fatal(err)
	}

	g := nn.NewGraph()
	x := g.Input("x", 3, 4)
	y := m.forward(g, x)
	machine, err := g.Compile()
	if err != nil {
		log.Fatal(err)
	}
	if err := machine.Exec(context.Background(), map[string][]float32{"x": make([]float32, 12)}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("output", y.Shape(), len(nn.Values(y)), "values")
	fmt.Println(p.Store().Names())
	// Output:
	// output [3 2] 6 values
	// [mlp.fc1.bias mlp.fc1.weight mlp.fc2.bias mlp.fc2.weight]
}

// Fetch parameters from a checkpoint by state-dict name, each with the
// shape the model requires; mistakes are collected and reported once.
func ExampleParams() {
	store := weights.New("example", map[string]*weights.Tensor{
		"blocks.0.norm.weight": {Shape: []int{4}, Stored: weights.Float32, F32: []float32{1, 1, 1, 1}},
		"blocks.0.norm.bias":   {Shape: []int{4}, Stored: weights.Float32, F32: make([]float32, 4)},
		"blocks.1.norm.weight": {Shape: []int{8}, Stored: weights.Float32, F32: make([]float32, 8)},
	})
	p := nn.NewParams(store)
	norm := nn.NewLayerNorm(p.Sub("blocks").Index(0).Sub("norm"), 4, 1e-5)
	fmt.Println(norm.Weight.Name, norm.Weight.Shape, p.Err())

	p.Sub("blocks").Index(1).Weight("norm.weight", 4)
	fmt.Println(p.Err() != nil, p.CheckUnused() == nil)
	// Output:
	// blocks.0.norm.weight [4] <nil>
	// true true
}
