package gdino

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// TestLoadWeightsTiny loads the golden checkpoint as the released one is
// laid out ({"model": state_dict}, "module." prefixes, a shared storage).
func TestLoadWeightsTiny(t *testing.T) {
	s := bertTinyStore(t)
	names := s.Names()
	if len(names) != 380 {
		t.Errorf("%d tensors, want 380", len(names))
	}
	for _, n := range names {
		if strings.HasPrefix(n, "module.") {
			t.Fatalf("%q: prefix not stripped", n)
		}
	}
	for _, n := range []string{"label_enc.weight", "bert.embeddings.position_ids", "feat_map.weight", "transformer.tgt_embed.weight"} {
		if !s.Has(n) {
			t.Errorf("%q missing", n)
		}
	}
	// bbox_embed.<i> and transformer.decoder.bbox_embed.<i> are one storage
	// in the file: both names load, with the same values.
	shared := 0
	for _, n := range names {
		if !strings.HasPrefix(n, "bbox_embed.") {
			continue
		}
		a, err := s.Raw(n)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Raw("transformer.decoder." + n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.Shape, b.Shape) || !slices.Equal(a.F32, b.F32) {
			t.Errorf("%q and its transformer.decoder twin differ", n)
		}
		shared++
	}
	if want := 6 * Tiny().DecLayers; shared != want {
		t.Errorf("%d shared bbox_embed tensors, want %d", shared, want)
	}
	// int64 buffers load as integers.
	if pid, err := s.Raw("bert.embeddings.position_ids"); err != nil || !pid.IsInt() || len(pid.I64) != 512 || pid.I64[511] != 511 {
		t.Errorf("position_ids: %v", err)
	}
}

// TestLoadWeightsSchema checks every tensor the text encoder fetches (name
// and shape, as the constructors ask for them) against the checkpoint, and
// that ignoreKnownUnused marks exactly the names the model ignores.
func TestLoadWeightsSchema(t *testing.T) {
	cfg := Tiny()
	s := bertTinyStore(t)
	// The schema the constructors ask for, drawn at random.
	rp := nn.RandomParams(1, nil)
	newTextEncoder(rp, cfg)
	schema := rp.Store()
	fetched := schema.Names()
	if len(fetched) != 5+16*cfg.BertLayers+2 {
		t.Errorf("text encoder fetches %d tensors: %v", len(fetched), fetched)
	}
	for _, n := range fetched {
		want, _ := schema.Shape(n)
		got, ok := s.Shape(n)
		if !ok || !slices.Equal(got, want) {
			t.Errorf("%q: checkpoint shape %v (present %v), the model asks for %v", n, got, ok, want)
		}
	}
	// The same constructors on the checkpoint use every bert.* and feat_map.*
	// tensor but the ignored ones.
	p := nn.NewParams(weights.New("copy", bertStoreCopy(t, s)))
	newTextEncoder(p, cfg)
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	before := p.Unused()
	ignoreKnownUnused(p)
	after := p.Unused()
	var ignored []string
	for _, n := range before {
		if !slices.Contains(after, n) {
			ignored = append(ignored, n)
		}
	}
	wantIgnored := []string{"bert.embeddings.position_ids", "bert.pooler.dense.bias", "bert.pooler.dense.weight", "label_enc.weight"}
	for i, d := range cfg.SwinDepths {
		for j := 0; j < d; j++ {
			wantIgnored = append(wantIgnored, fmt.Sprintf("backbone.0.layers.%d.blocks.%d.attn.relative_position_index", i, j))
		}
	}
	slices.Sort(wantIgnored)
	slices.Sort(ignored)
	if !slices.Equal(ignored, wantIgnored) {
		t.Errorf("ignoreKnownUnused marked %v, want %v", ignored, wantIgnored)
	}
	for _, n := range after {
		if strings.HasPrefix(n, "bert.") || strings.HasPrefix(n, "feat_map.") {
			t.Errorf("%q unused", n)
		}
	}
	// Random parameters: nothing to ignore, no panic.
	ignoreKnownUnused(nn.RandomParams(1, nil))
}

// bertStoreCopy copies s's tensors (not their values) into a fresh map, so
// that marking names used does not touch the shared golden store.
func bertStoreCopy(t *testing.T, s *weights.Store) map[string]*weights.Tensor {
	t.Helper()
	m := map[string]*weights.Tensor{}
	for _, n := range s.Names() {
		r, err := s.Raw(n)
		if err != nil {
			t.Fatal(err)
		}
		m[n] = r
	}
	return m
}

// TestLoadWeightsWrongModel checks that another model's checkpoint is a
// clear error naming a missing tensor.
func TestLoadWeightsWrongModel(t *testing.T) {
	path := testutil.Golden("tiny", "weights", "sam.pth")
	_, err := LoadWeights(path)
	if err == nil || !errors.Is(err, weights.ErrMissing) || !strings.Contains(err.Error(), "bert.embeddings.word_embeddings.weight") {
		t.Errorf("LoadWeights(sam.pth): %v, want a missing-tensor error naming bert.embeddings.word_embeddings.weight", err)
	}
	// The constructors say the same for a store that lacks the tensors.
	s, err := weights.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	p := nn.NewParams(s)
	newTextEncoder(p, Tiny())
	if err := p.Err(); !errors.Is(err, weights.ErrMissing) || !strings.Contains(err.Error(), "bert.embeddings.word_embeddings.weight") {
		t.Errorf("text encoder on sam.pth: %v", err)
	}
}

// TestLoadWeightsBadFiles checks that truncated, empty and absent files are
// errors, not panics; and that a .npz of the same tensors loads.
func TestLoadWeightsBadFiles(t *testing.T) {
	data, err := os.ReadFile(testutil.Golden("gdino_tiny", "weights", "gdino.pth"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, n := range []int{0, 1, 100, len(data) / 3, len(data) / 2, len(data) - 22, len(data) - 1} {
		path := filepath.Join(dir, "cut.pth")
		if err := os.WriteFile(path, data[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadWeights(path); err == nil {
			t.Errorf("%d of %d bytes: no error", n, len(data))
		} else if !strings.HasPrefix(err.Error(), "gdino: load: ") {
			t.Errorf("%d bytes: error %q lacks context", n, err)
		}
	}
	if _, err := LoadWeights(filepath.Join(dir, "absent.pth")); err == nil {
		t.Error("absent file: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := LoadWeightsContext(ctx, testutil.Golden("gdino_tiny", "weights", "gdino.pth")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled load: %v", err)
	}
	npz := filepath.Join(dir, "gdino.npz")
	if err := weights.WriteNPZ(npz, bertTinyStore(t)); err != nil {
		t.Fatal(err)
	}
	s, err := LoadWeights(npz)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Names(), bertTinyStore(t).Names(); !slices.Equal(got, want) {
		t.Errorf(".npz holds %d names, the .pth %d", len(got), len(want))
	}
}
