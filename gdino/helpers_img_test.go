package gdino

import (
	"context"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// loadTinyStore opens the golden tiny checkpoint as the model reads it:
// the state dict of {"model": ...} with the "module." prefix stripped
// (weights.Open does both; a store still holding "module." names is
// rebuilt without them).
func loadTinyStore(t testing.TB) *weights.Store {
	t.Helper()
	s, err := weights.Open(testutil.Golden("gdino_tiny", "weights", "gdino.pth"))
	if err != nil {
		t.Fatal(err)
	}
	names := s.Names()
	if len(names) == 0 || !strings.HasPrefix(names[0], "module.") {
		return s
	}
	m := make(map[string]*weights.Tensor, len(names))
	for _, n := range names {
		r, err := s.Raw(n)
		if err != nil {
			t.Fatal(err)
		}
		m[strings.TrimPrefix(n, "module.")] = r
	}
	return weights.New(s.Source(), m)
}

// imgGolden loads a caption-independent golden tensor of cat_dog_240.
func imgGolden(t testing.TB, name string) *weights.Tensor {
	t.Helper()
	return testutil.NPY(t, testutil.Golden("gdino_tiny", "cat_dog_240", name+".npy"))
}

// imgRun compiles g and runs it on the named inputs.
func imgRun(t testing.TB, g *nn.Graph, inputs map[string][]float32) {
	t.Helper()
	m, err := g.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(context.Background(), inputs); err != nil {
		t.Fatal(err)
	}
}
