package weights_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/sam"
	"github.com/mam-go/mam-go/weights"
)

// TestGoldenPTHMatchesNPZ loads the golden tiny checkpoints, written by
// torch.save in the released formats, and checks them against numpy's copy
// of the same tensors: names, shapes, stored types (int64 kept) and values,
// which must be identical.
func TestGoldenPTHMatchesNPZ(t *testing.T) {
	cases := []struct {
		pth, npz string
		meta     map[string]any
		ints     int // int64 tensors (num_batches_tracked)
	}{
		{"sam.pth", "sam.npz", map[string]any{}, 0},
		{"mam.pth", "mam.npz", map[string]any{"iter": int64(0), "loss": 0.0}, 23},
	}
	for _, tc := range cases {
		t.Run(tc.pth, func(t *testing.T) {
			c, err := weights.OpenCheckpoint(testutil.Golden("tiny", "weights", tc.pth))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Format() != weights.FormatPTH {
				t.Errorf("format %s", c.Format())
			}
			for k, v := range tc.meta {
				if got := c.Meta()[k]; got != v {
					t.Errorf("meta[%q] = %v (%T), want %v", k, got, got, v)
				}
			}
			got, err := c.Store()
			if err != nil {
				t.Fatal(err)
			}
			ref, err := weights.Open(testutil.Golden("tiny", "weights", tc.npz))
			if err != nil {
				t.Fatal(err)
			}
			ints := testutil.SameStore(t, got, ref)
			if ints != tc.ints {
				t.Errorf("%d int64 tensors, want %d", ints, tc.ints)
			}
		})
	}
}

func dimsOf(c sam.Config) weights.SAMDims {
	return weights.SAMDims{ImageSize: c.ImageSize, Patch: c.PatchSize, C: c.EncoderDim, Depth: c.EncoderDepth,
		Heads: c.EncoderHeads, Window: c.WindowSize, Global: c.GlobalAttn, D: c.PromptDim, MaskIn: c.MaskInChans,
		DecMLP: c.DecoderMLP, IoUHidden: c.IoUHidden, DecDepth: c.DecoderDepth}
}

// TestGoldenNamesForDetectConfig checks that the tiny sam.pth holds exactly
// the names and shapes the reference modules define (in state_dict order),
// that sam.DetectConfig recognises it, and that state dicts with the
// released models' shapes are recognised as ViT-B/L/H.
func TestGoldenNamesForDetectConfig(t *testing.T) {
	c, err := weights.OpenCheckpoint(testutil.Golden("tiny", "weights", "sam.pth"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg, err := sam.LoadConfigJSON(testutil.Golden("tiny", "weights", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := weights.SAMShapes(dimsOf(cfg))
	names := c.Names()
	if len(names) != len(want) {
		t.Fatalf("%d tensors, the reference modules define %d", len(names), len(want))
	}
	for i, w := range want {
		info, _ := c.Info(names[i])
		if info.Name != w.Name || !slices.Equal(info.Shape, w.Shape) || info.DType != weights.Float32 {
			t.Errorf("tensor %d: %s %v %s, want %s %v float32", i, info.Name, info.Shape, info.DType, w.Name, w.Shape)
		}
	}
	s, err := c.Store()
	if err != nil {
		t.Fatal(err)
	}
	got, err := sam.DetectConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dimsOf(got), dimsOf(cfg)) {
		t.Errorf("DetectConfig = %+v, want %+v", dimsOf(got), dimsOf(cfg))
	}

	for _, preset := range []sam.Config{sam.ViTB(), sam.ViTL(), sam.ViTH()} {
		tensors := map[string]*weights.Tensor{}
		for _, ti := range weights.SAMShapes(dimsOf(preset)) {
			tensors[ti.Name] = &weights.Tensor{Shape: ti.Shape, Stored: weights.Float32}
		}
		got, err := sam.DetectConfig(weights.New(preset.Name, tensors))
		if err != nil {
			t.Errorf("%s: %v", preset.Name, err)
			continue
		}
		if got.Name != preset.Name || !reflect.DeepEqual(dimsOf(got), dimsOf(preset)) {
			t.Errorf("%s: detected %s %+v", preset.Name, got.Name, dimsOf(got))
		}
	}
}

// TestOpenMAM checks that the M2M weights load by their module names.
func TestOpenMAM(t *testing.T) {
	s, err := weights.OpenMAM(testutil.Golden("tiny", "weights", "mam.pth"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		shape []int
	}{
		{"layer2.0.conv1.module.weight_bar", []int{36, 36, 4, 4}},
		{"refine_OS1.3.bias", []int{1}},
		{"bn1.num_batches_tracked", []int{}},
	}
	for _, tc := range cases {
		sh, ok := s.Shape(tc.name)
		if !ok || !slices.Equal(sh, tc.shape) {
			t.Errorf("%s: shape %v (present %v), want %v", tc.name, sh, ok, tc.shape)
		}
	}
	if s.Len() != 184 {
		t.Errorf("%d tensors, want 184", s.Len())
	}
}

// TestOpenGroundingDINO checks the layout of the released
// groundingdino_swint_ogc.pth on the golden tiny copy: a torch.save of
// {"model": state_dict} whose names all start with "module.", int64
// buffers, and one storage shared by two groups of names.
func TestOpenGroundingDINO(t *testing.T) {
	c, err := weights.OpenCheckpoint(testutil.Golden("gdino_tiny", "weights", "gdino.pth"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := c.Names()
	if c.Format() != weights.FormatPTH || len(names) != 380 || len(c.Meta()) != 0 {
		t.Errorf("format %s, %d tensors, meta %v: want pth, 380, none", c.Format(), len(names), c.Meta())
	}
	for _, n := range names {
		if strings.HasPrefix(n, "module.") {
			t.Fatalf("%q: module. prefix kept", n)
		}
	}
	if info, ok := c.Info("bert.embeddings.position_ids"); !ok || info.DType != weights.Int64 || !slices.Equal(info.Shape, []int{1, 512}) {
		t.Errorf("position_ids: %+v (present %v)", info, ok)
	}
	a, errA := c.Load("bbox_embed.1.layers.2.weight")
	b, errB := c.Load("transformer.decoder.bbox_embed.1.layers.2.weight")
	if errA != nil || errB != nil || !slices.Equal(a.Shape, []int{4, 256}) || !slices.Equal(a.F32, b.F32) {
		t.Errorf("shared bbox_embed: %v %v", errA, errB)
	}
}
