package mam

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

type goldenCase struct {
	Name      string      `json:"name"`
	Box       []float64   `json:"box"`
	Points    [][]float64 `json:"points"`
	Labels    []int       `json:"labels"`
	Multimask *bool       `json:"multimask"`
	MaskFrom  string      `json:"mask_from"`
	Best      int         `json:"best"`
}

func (c goldenCase) prompt() Prompt {
	var p Prompt
	for i, pt := range c.Points {
		p.Points = append(p.Points, Point{X: pt[0], Y: pt[1], Label: c.Labels[i]})
	}
	if len(c.Box) == 4 {
		p.Box = &Box{X0: c.Box[0], Y0: c.Box[1], X1: c.Box[2], Y1: c.Box[3]}
	}
	return p
}

// tinyStores loads the golden tiny SAM and MAM checkpoints.
func tinyStores(t testing.TB) (samStore, mamStore *weights.Store) {
	return testutil.Store(t, "tiny", "weights", "sam.npz"), testutil.Store(t, "tiny", "weights", "mam.npz")
}

func tinyModel(t testing.TB) *Model {
	return testutil.Must(New(tinyStores(t)))(t)
}

// TestMatteGolden runs the whole pipeline from image.png and each case's
// prompt, as MAM does (multimask, best IoU), and compares every dumped
// stage and the refined matte of each mode with the reference.
func TestMatteGolden(t *testing.T) {
	m := tinyModel(t)
	for _, imgName := range []string{"dog_240", "demo_120"} {
		var info struct{ Cases []string }
		testutil.JSON(t, testutil.Golden("tiny", imgName, "image.json"), &info)
		img := testutil.Image(t, testutil.Golden("tiny", imgName, "image.png"))
		sess, err := m.NewSession(context.Background(), img)
		if err != nil {
			t.Fatal(err)
		}
		for _, cname := range info.Cases {
			dir := testutil.Golden("tiny", imgName, cname)
			var c goldenCase
			testutil.JSON(t, filepath.Join(dir, "case.json"), &c)
			if c.MaskFrom != "" || (c.Multimask != nil && !*c.Multimask) {
				continue // MAM always decodes a plain prompt with multimask output
			}
			for _, mode := range []Mode{PostProcess, MaskGuide, Plain} {
				t.Run(imgName+"/"+cname+"/"+string(mode), func(t *testing.T) {
					got := map[string]*nn.Tensor{}
					res, err := sess.Matte(context.Background(), c.prompt(), WithMode(mode), WithDump(func(name string, shape []int, data []float32) { got[name] = nn.NewTensor(slices.Clone(data), shape...) }))
					if err != nil {
						t.Fatal(err)
					}
					for _, st := range []struct {
						name string
						tol  float64
						rel  bool
					}{
						{"image_embeddings", 1e-4, true},
						{"low_res_masks", 1e-4, true},
						{"masks", 1e-4, true},
						{"alpha_os1", 1e-4, false},
						{"alpha_os4", 1e-4, false},
						{"alpha_os8", 1e-4, false},
					} {
						path := filepath.Join(dir, st.name+".npy")
						if st.name == "image_embeddings" {
							path = testutil.Golden("tiny", imgName, "image_embeddings.npy")
						}
						want := testutil.NPY(t, path)
						x := got[st.name]
						if x == nil {
							t.Fatalf("stage %s not dumped", st.name)
						}
						testutil.Check(t, st.name, x.Data, x.Shape, want, st.tol, st.rel)
					}
					for _, name := range []string{"guide_mask", "post_mask"} {
						want := testutil.NPY(t, filepath.Join(dir, name+".npy"))
						x := got[name]
						if d := testutil.Compare(x.Data, want.F32, 0.5); d.Bad > 0 {
							t.Errorf("%s: %d of %d pixels differ", name, d.Bad, len(want.F32))
						}
					}
					want := testutil.NPY(t, filepath.Join(dir, "alpha_"+string(mode)+".npy"))
					testutil.Check(t, "alpha_"+string(mode), res.Alpha, []int{res.Height, res.Width}, want, 1e-4, false)
					if res.Mode != mode || len(res.Mask) != res.Width*res.Height {
						t.Errorf("result: mode %q, mask %d values", res.Mode, len(res.Mask))
					}
				})
			}
		}
	}
}

func TestMatteAllInstances(t *testing.T) {
	m := tinyModel(t)
	img := testutil.Image(t, testutil.Golden("tiny", "dog_240", "image.png"))
	ps := []Prompt{
		{Box: &Box{X0: 52.8, Y0: 28.8, X1: 187.2, Y1: 137.6}},
		{Points: []Point{{X: 120, Y: 80, Label: 1}}},
	}
	rs, err := m.MatteAll(context.Background(), img, ps, WithMode(MaskGuide))
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"box", "point"} {
		want := testutil.NPY(t, testutil.Golden("tiny", "dog_240", name, "alpha_maskguide.npy"))
		testutil.Check(t, name, rs[i].Alpha, []int{rs[i].Height, rs[i].Width}, want, 1e-4, false)
	}
}

func TestMatteBadInput(t *testing.T) {
	m := tinyModel(t)
	img := testutil.Image(t, testutil.Golden("tiny", "dog_240", "image.png"))
	ctx := context.Background()
	cases := []struct {
		name string
		img  image.Image
		p    Prompt
		opt  []MatteOption
	}{
		{"no prompt", img, Prompt{}, nil},
		{"NaN point", img, Prompt{Points: []Point{{X: math.NaN(), Y: 1, Label: 1}}}, nil},
		{"Inf box", img, Prompt{Box: &Box{X0: 0, Y0: 0, X1: math.Inf(1), Y1: 5}}, nil},
		{"bad label", img, Prompt{Points: []Point{{X: 1, Y: 1, Label: 3}}}, nil},
		{"box outside image", img, Prompt{Box: &Box{X0: 500, Y0: 500, X1: 600, Y1: 600}}, nil},
		{"empty image", image.NewRGBA(image.Rect(0, 0, 0, 10)), Prompt{Points: []Point{{X: 1, Y: 1, Label: 1}}}, nil},
		{"bad mode", img, Prompt{Points: []Point{{X: 1, Y: 1, Label: 1}}}, []MatteOption{WithMode("fancy")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := m.Matte(ctx, c.img, c.p, c.opt...); err == nil {
				t.Fatal("no error")
			} else {
				t.Log(err)
			}
		})
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Matte(cctx, img, Prompt{Points: []Point{{X: 1, Y: 1, Label: 1}}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: got %v", err)
	}
}

// With the hypernetworks' last layers zeroed every mask logit is 0, so
// SAM's mask is empty: the matte must be all zero in every mode.
func TestMatteEmptyMask(t *testing.T) {
	ss, ms := tinyStores(t)
	for i := 0; i < 4; i++ {
		for _, n := range []string{"weight", "bias"} {
			raw, err := ss.Raw(fmt.Sprintf("mask_decoder.output_hypernetworks_mlps.%d.layers.2.%s", i, n))
			if err != nil {
				t.Fatal(err)
			}
			clear(raw.F32)
		}
	}
	m, err := New(ss, ms)
	if err != nil {
		t.Fatal(err)
	}
	img := testutil.Image(t, testutil.Golden("tiny", "dog_240", "image.png"))
	for _, mode := range []Mode{PostProcess, MaskGuide, Plain} {
		res, err := m.Matte(context.Background(), img, Prompt{Points: []Point{{X: 120, Y: 80, Label: 1}}}, WithMode(mode))
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		for i, a := range res.Alpha {
			if a != 0 || res.Mask[i] != 0 {
				t.Fatalf("%s: pixel %d: alpha %v, mask %d", mode, i, a, res.Mask[i])
			}
		}
	}
}

// TestMatteRegionEqualsDump checks that a Matte that computes M2M only on
// the image's region (the default) gives bit for bit the alpha of one that
// computes and dumps the whole mattes, in every mode, on images whose
// padded input cuts rows (landscape) and columns (portrait).
func TestMatteRegionEqualsDump(t *testing.T) {
	m := tinyModel(t)
	src := testutil.Image(t, testutil.Golden("tiny", "dog_240", "image.png"))
	b := src.Bounds()
	portrait := image.NewRGBA(image.Rect(0, 0, b.Dy(), b.Dx()))
	for y := 0; y < b.Dx(); y++ {
		for x := 0; x < b.Dy(); x++ {
			portrait.Set(x, y, src.At(b.Min.X+y, b.Min.Y+x))
		}
	}
	for _, img := range []image.Image{src, portrait} {
		sess, err := m.NewSession(context.Background(), img)
		if err != nil {
			t.Fatal(err)
		}
		w, h := img.Bounds().Dx(), img.Bounds().Dy()
		p := Prompt{Box: &Box{X0: float64(w) / 5, Y0: float64(h) / 5, X1: float64(w) * 4 / 5, Y1: float64(h) * 4 / 5}}
		for _, mode := range []Mode{PostProcess, MaskGuide, Plain} {
			region, err := sess.Matte(context.Background(), p, WithMode(mode))
			if err != nil {
				t.Fatal(err)
			}
			whole, err := sess.Matte(context.Background(), p, WithMode(mode), WithDump(func(string, []int, []float32) {}))
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range whole.Alpha {
				if region.Alpha[i] != v {
					t.Fatalf("%dx%d %s: alpha %d = %g, %g with whole mattes", w, h, mode, i, region.Alpha[i], v)
				}
			}
		}
	}
}
