package m2m

import (
	"context"
	"errors"
	"github.com/mam-go/mam-go/nn"
	"slices"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/weights"
)

func dense(t testing.TB, path string) *nn.Tensor {
	t.Helper()
	x := testutil.NPY(t, path)
	return nn.NewTensor(x.Float32s(), x.Shape...)
}

func tinyDecoder(t testing.TB) *Decoder {
	return testutil.Must(New(testutil.Store(t, "tiny", "weights", "mam.npz"), Tiny()))(t)
}

// goldenImage loads the golden image embeddings and normalised input of a
// golden image.
func goldenImage(t testing.TB, name string) (feat, input *nn.Tensor) {
	return dense(t, testutil.Golden("tiny", name, "image_embeddings.npy")), dense(t, testutil.Golden("tiny", name, "input.npy"))
}

func TestDetectConfig(t *testing.T) {
	s := testutil.Store(t, "tiny", "weights", "mam.npz")
	c, err := DetectConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	if c != Tiny() {
		t.Errorf("detected %+v, want %+v", c, Tiny())
	}
	if len(s.Unused()) != s.Len() {
		t.Error("DetectConfig marked tensors used")
	}
	empty := weights.New("empty", map[string]*weights.Tensor{})
	if _, err := DetectConfig(empty); err == nil {
		t.Error("empty store: no error")
	}
}

func TestForwardGolden(t *testing.T) {
	d := tinyDecoder(t)
	for _, img := range []string{"dog_240", "demo_120"} {
		var info struct {
			Cases []string `json:"cases"`
		}
		testutil.JSON(t, testutil.Golden("tiny", img, "image.json"), &info)
		if len(info.Cases) == 0 {
			t.Fatalf("%s: no cases", img)
		}
		feat, input := goldenImage(t, img)
		for _, cs := range info.Cases {
			t.Run(img+"/"+cs, func(t *testing.T) {
				mask := dense(t, testutil.Golden("tiny", img, cs, "guide_mask.npy"))
				out, err := d.Forward(context.Background(), feat, input, mask)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range []struct {
					name string
					got  *nn.Tensor
				}{{"alpha_os1", out.OS1}, {"alpha_os4", out.OS4}, {"alpha_os8", out.OS8}} {
					want := testutil.NPY(t, testutil.Golden("tiny", img, cs, o.name+".npy"))
					testutil.Check(t, o.name, o.got.Data, o.got.Shape, want, 1e-4, false)
				}
			})
		}
	}
}

// TestForwardRegion checks that ForwardRegion's mattes equal Forward's bit
// for bit inside the region, at even and odd sizes cutting rows, columns
// or both, and are zero outside it.
func TestForwardRegion(t *testing.T) {
	d := tinyDecoder(t)
	feat, input := goldenImage(t, "dog_240")
	mask := dense(t, testutil.Golden("tiny", "dog_240", "box", "guide_mask.npy"))
	full, err := d.Forward(context.Background(), feat, input, mask)
	if err != nil {
		t.Fatal(err)
	}
	s := full.OS1.Shape
	h, w := s[2], s[3]
	for _, r := range [][2]int{{h * 3 / 4, 0}, {0, w/2 + 1}, {h/3 + 1, w/2 - 1}, {1, 1}, {h, w}, {h + 5, 0}} {
		got, err := d.ForwardRegion(context.Background(), feat, input, mask, r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		rows, cols := h, w
		if r[0] > 0 {
			rows = min(h, r[0])
		}
		if r[1] > 0 {
			cols = min(w, r[1])
		}
		for _, o := range []struct {
			name      string
			got, want *nn.Tensor
		}{{"os1", got.OS1, full.OS1}, {"os4", got.OS4, full.OS4}, {"os8", got.OS8, full.OS8}} {
			g, f := o.got.Data, o.want.Data
			for i := range g {
				y, x := i/w, i%w
				want := f[i]
				if y >= rows || x >= cols {
					want = 0
				}
				if g[i] != want {
					t.Fatalf("region %v: %s (%d, %d) = %g, want %g", r, o.name, y, x, g[i], want)
				}
			}
		}
	}
	if _, err := d.ForwardRegion(context.Background(), feat, input, mask, -1, 0); err == nil {
		t.Error("negative region: no error")
	}
}

// TestForwardOutputsKept checks that the mattes of one Forward are not
// touched by the next one (outputs are fresh tensors, not copies).
func TestForwardOutputsKept(t *testing.T) {
	d := tinyDecoder(t)
	feat, input := goldenImage(t, "dog_240")
	m1 := dense(t, testutil.Golden("tiny", "dog_240", "box", "guide_mask.npy"))
	m2 := dense(t, testutil.Golden("tiny", "dog_240", "point", "guide_mask.npy"))
	first, err := d.Forward(context.Background(), feat, input, m1)
	if err != nil {
		t.Fatal(err)
	}
	keep := append([]float32(nil), first.OS1.Data...)
	second, err := d.Forward(context.Background(), feat, input, m2)
	if err != nil {
		t.Fatal(err)
	}
	same := true
	for i, v := range first.OS1.Data {
		if v != keep[i] {
			t.Fatalf("first output changed at %d by the second Forward", i)
		}
		same = same && v == second.OS1.Data[i]
	}
	if same {
		t.Fatal("two different masks gave the same matte")
	}
}

func TestNewErrors(t *testing.T) {
	base := testutil.Store(t, "tiny", "weights", "mam.npz")
	cases := []struct {
		name string
		edit func(m map[string]*weights.Tensor)
		cfg  Config
		want string
	}{
		{"missing", func(m map[string]*weights.Tensor) { delete(m, "layer3.1.conv2.module.weight_u") }, Tiny(), "layer3.1.conv2.module.weight_u"},
		{"missing bn", func(m map[string]*weights.Tensor) { delete(m, "refine_OS4.1.running_var") }, Tiny(), "refine_OS4.1.running_var"},
		{"shape", func(m map[string]*weights.Tensor) {
			m["layer2.0.upsample.1.module.weight_bar"] = &weights.Tensor{Shape: []int{128, 35, 1, 1}, F32: make([]float32, 128*35)}
		}, Tiny(), "layer2.0.upsample.1.module.weight_bar"},
		{"extra", func(m map[string]*weights.Tensor) {
			m["layer5.0.bn1.weight"] = &weights.Tensor{Shape: []int{4}, F32: make([]float32, 4)}
		}, Tiny(), "layer5.0.bn1.weight"},
		{"wrong config", nil, Default(), "layer2.0.conv1.module.weight_bar"},
		{"bad config", nil, Config{FeatDim: 32, MidPlanes: 32, KernelSize: 3}, "blocks"},
		{"zero sigma", func(m map[string]*weights.Tensor) {
			m["conv1.module.weight_u"] = &weights.Tensor{Shape: []int{32}, F32: make([]float32, 32)}
		}, Tiny(), "sigma"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(testutil.StoreCopy(t, base, c.edit), c.cfg)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not name %q", err, c.want)
			}
		})
	}
}

func TestForwardErrors(t *testing.T) {
	d := tinyDecoder(t)
	mk := func(shape ...int) *nn.Tensor {
		n := 1
		for _, s := range shape {
			n *= s
		}
		return nn.NewTensor(make([]float32, n), shape...)
	}
	feat, img, mask := mk(1, 32, 4, 4), mk(1, 3, 64, 64), mk(1, 1, 16, 16)
	cases := []struct {
		name            string
		feat, img, mask *nn.Tensor
	}{
		{"nil", nil, img, mask},
		{"feat channels", mk(1, 31, 4, 4), img, mask},
		{"img channels", feat, mk(1, 4, 64, 64), mask},
		{"mask rank", feat, img, mk(1, 16, 16)},
		{"batch", feat, mk(2, 3, 64, 64), mask},
		{"not square", mk(1, 32, 4, 5), img, mask},
		{"short data", feat, &nn.Tensor{Shape: []int{1, 3, 64, 64}, Data: make([]float32, 12)}, mask},
	}
	for _, c := range cases {
		if _, err := d.Forward(context.Background(), c.feat, c.img, c.mask); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	out, err := d.Forward(context.Background(), feat, img, mask)
	if err != nil {
		t.Fatal(err)
	}
	if s := out.OS1.Shape; !slices.Equal(s, []int{1, 1, 64, 64}) {
		t.Errorf("os1 shape %v", s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Forward(ctx, feat, img, mask); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
}
