package sam

import (
	"errors"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

func tinyModel(t testing.TB) *Model {
	return testutil.Must(New(tinySAMStore(t), Tiny()))(t)
}

// withExtra returns a copy of the tiny SAM store with one more tensor.
func withExtra(t *testing.T, name string) *weights.Store {
	return testutil.StoreCopy(t, tinySAMStore(t), func(m map[string]*weights.Tensor) {
		m[name] = &weights.Tensor{Shape: []int{2}, Stored: weights.Float32, F32: []float32{1, 2}}
	})
}

func TestNew(t *testing.T) {
	m := tinyModel(t)
	if m.Encoder == nil || m.Prompt == nil || m.Decoder == nil || m.Name != "tiny" {
		t.Fatalf("incomplete model %+v", m)
	}
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) *weights.Store
		cfg   func() Config
		is    error  // errors.Is target, or nil
		want  string // substring of the message
	}{
		{"extra tensor", func(t *testing.T) *weights.Store { return withExtra(t, "mask_decoder.extra_head.weight") }, Tiny, nil, "mask_decoder.extra_head.weight"},
		{"vit_b config on tiny weights", tinySAMStoreT, ViTB, weights.ErrShape, "vit_b"},
		{"missing module", func(t *testing.T) *weights.Store { return weights.New("empty", map[string]*weights.Tensor{}) }, Tiny, weights.ErrMissing, "tiny"},
		{"nil store", func(*testing.T) *weights.Store { return nil }, Tiny, nil, "nil weights store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.store(t), tc.cfg())
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func tinySAMStoreT(t *testing.T) *weights.Store { return tinySAMStore(t) }

// TestPostprocessMasksGolden upsamples the golden low-res logits of every
// case to the original size.
func TestPostprocessMasksGolden(t *testing.T) {
	cfg := Tiny()
	forEachDecCase(t, func(t *testing.T, r decCaseRun) {
		low := denseOf(testutil.NPY(t, r.file("low_res_masks.npy")))
		h, w := r.info.Orig[0], r.info.Orig[1]
		newh, neww := PreprocessShape(h, w, cfg.ImageSize)
		if newh != r.info.Resized[0] || neww != r.info.Resized[1] {
			t.Fatalf("resized %dx%d, golden %v", newh, neww, r.info.Resized)
		}
		got, err := cfg.PostprocessMasks(low, newh, neww, h, w)
		if err != nil {
			t.Fatal(err)
		}
		testutil.Check(t, "masks", got.Data, got.Shape, testutil.NPY(t, r.file("masks.npy")), decRelTol, true)
	})
}

func TestPostprocessMasksErrors(t *testing.T) {
	cfg := Tiny()
	low := nn.NewTensor(nil, 1, 3, 64, 64)
	for _, tc := range []struct {
		name             string
		newh, neww, h, w int
		masks3d          bool
		want             string
	}{
		{"zero original", 100, 256, 0, 10, false, "empty"},
		{"input larger than S", 300, 256, 10, 10, false, "outside"},
		{"zero input", 0, 256, 10, 10, false, "outside"},
		{"3-d masks", 256, 256, 10, 10, true, "want (1, K, H, W)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := low
			if tc.masks3d {
				m = nn.NewTensor(nil, 3, 64, 64)
			}
			if _, err := cfg.PostprocessMasks(m, tc.newh, tc.neww, tc.h, tc.w); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
