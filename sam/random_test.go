package sam

import "testing"

// The random state dict has exactly the golden checkpoint's names and
// shapes at the tiny size, and builds a model at every preset size.
func TestRandomWeightsNames(t *testing.T) {
	golden := tinySAMStore(t)
	r := RandomWeights(Tiny(), 1)
	gn, rn := golden.Names(), r.Names()
	if len(gn) != len(rn) {
		t.Fatalf("%d names, golden has %d", len(rn), len(gn))
	}
	for i, n := range gn {
		if rn[i] != n {
			t.Fatalf("name %d: %q, golden %q", i, rn[i], n)
		}
		a, _ := golden.Shape(n)
		b, _ := r.Shape(n)
		if len(a) != len(b) {
			t.Fatalf("%s: shape %v, golden %v", n, b, a)
		}
		for j := range a {
			if a[j] != b[j] {
				t.Fatalf("%s: shape %v, golden %v", n, b, a)
			}
		}
	}
	for _, cfg := range []Config{Tiny(), ViTB()} {
		if _, err := New(RandomWeights(cfg, 2), cfg); err != nil {
			t.Fatalf("%s: %v", cfg.Name, err)
		}
	}
}
