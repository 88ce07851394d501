package sam

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// Tolerances of golden/README.md.
const (
	decRelTol = 1e-4 // logits and embeddings, relative to the tensor's max magnitude
	decAbsTol = 1e-4 // everything else
)

// decImageInfo is a golden image.json.
type decImageInfo struct {
	Orig    [2]int   `json:"orig"`    // (h, w)
	Resized [2]int   `json:"resized"` // (newh, neww)
	Cases   []string `json:"cases"`
}

// decCase is a golden case.json: the prompt in original pixels and in
// the resized frame.
type decCase struct {
	Name          string       `json:"name"`
	Points        [][2]float64 `json:"points"`
	Labels        []int        `json:"labels"`
	Box           []float64    `json:"box"`
	PointsResized [][2]float64 `json:"points_resized"`
	BoxResized    []float64    `json:"box_resized"`
	Multimask     *bool        `json:"multimask"`
	MaskFrom      string       `json:"mask_from"`
	Best          int          `json:"best"`
}

func (c decCase) multimask() bool { return c.Multimask == nil || *c.Multimask }

// resizedPrompt is the case's prompt in the input frame.
func (c decCase) resizedPrompt() ([]Point, *Box) {
	var pts []Point
	for i, p := range c.PointsResized {
		pts = append(pts, Point{X: p[0], Y: p[1], Label: c.Labels[i]})
	}
	var box *Box
	if len(c.BoxResized) == 4 {
		box = &Box{c.BoxResized[0], c.BoxResized[1], c.BoxResized[2], c.BoxResized[3]}
	}
	return pts, box
}

// originalPrompt is the case's prompt in original pixels.
func (c decCase) originalPrompt() ([]Point, *Box) {
	var pts []Point
	for i, p := range c.Points {
		pts = append(pts, Point{X: p[0], Y: p[1], Label: c.Labels[i]})
	}
	var box *Box
	if len(c.Box) == 4 {
		box = &Box{c.Box[0], c.Box[1], c.Box[2], c.Box[3]}
	}
	return pts, box
}

var decImages = []string{"dog_240", "demo_120"}

// decCaseRun is one prompt case of one golden image.
type decCaseRun struct {
	image string
	info  decImageInfo
	c     decCase
	dir   string // the case directory
}

func (r decCaseRun) file(name string) string { return filepath.Join(r.dir, name) }

// imageFile is a file of the case's image directory.
func (r decCaseRun) imageFile(name string) string { return testutil.Golden("tiny", r.image, name) }

// maskInput loads the case's mask prompt, or returns nil.
func (r decCaseRun) maskInput(t testing.TB) *nn.Tensor {
	if r.c.MaskFrom == "" {
		return nil
	}
	return denseOf(testutil.NPY(t, r.file("mask_input.npy")))
}

// forEachDecCase runs fn as a subtest for every golden prompt case, and fails
// when there are none (so the tests cannot pass vacuously).
func forEachDecCase(t *testing.T, fn func(t *testing.T, r decCaseRun)) {
	t.Helper()
	n := 0
	for _, img := range decImages {
		var info decImageInfo
		testutil.JSON(t, testutil.Golden("tiny", img, "image.json"), &info)
		for _, name := range info.Cases {
			dir := testutil.Golden("tiny", img, name)
			var c decCase
			testutil.JSON(t, filepath.Join(dir, "case.json"), &c)
			n++
			t.Run(img+"/"+name, func(t *testing.T) { fn(t, decCaseRun{img, info, c, dir}) })
		}
	}
	if n < 8 {
		t.Fatalf("only %d golden cases found", n)
	}
}

// tinySAMStore loads the golden tiny SAM weights.
func tinySAMStore(t testing.TB) *weights.Store {
	t.Helper()
	s, err := weights.LoadNPZ(testutil.Golden("tiny", "weights", "sam.npz"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dense converts a golden float32 tensor to a dense tensor (sharing data).
func denseOf(w *weights.Tensor) *nn.Tensor {
	return nn.NewTensor(w.Float32s(), w.Shape...)
}

func tinyPromptEncoder(t testing.TB) *PromptEncoder {
	t.Helper()
	pe, err := NewPromptEncoder(tinySAMStore(t).Sub("prompt_encoder"), Tiny())
	if err != nil {
		t.Fatal(err)
	}
	return pe
}

func TestDensePE(t *testing.T) {
	pe := tinyPromptEncoder(t)
	for _, img := range decImages {
		t.Run(img, func(t *testing.T) {
			got := pe.DensePE()
			testutil.Check(t, "dense_pe", got.Data, got.Shape, testutil.NPY(t, testutil.Golden("tiny", img, "dense_pe.npy")), decAbsTol, false)
		})
	}
}

func TestPromptEncoderGolden(t *testing.T) {
	pe := tinyPromptEncoder(t)
	forEachDecCase(t, func(t *testing.T, r decCaseRun) {
		pts, box := r.c.resizedPrompt()
		sparse, dns, err := pe.Forward(context.Background(), pts, box, r.maskInput(t))
		if err != nil {
			t.Fatal(err)
		}
		testutil.Check(t, "sparse", sparse.Data, sparse.Shape, testutil.NPY(t, r.file("sparse.npy")), decRelTol, true)
		testutil.Check(t, "dense", dns.Data, dns.Shape, testutil.NPY(t, r.file("dense.npy")), decRelTol, true)
	})
}

// TestPromptEncoderTokens checks the token layout: padding only without a
// box, labels picking their embeddings, and the mask-only prompt.
func TestPromptEncoderTokens(t *testing.T) {
	pe := tinyPromptEncoder(t)
	dim := pe.cfg.PromptDim
	box := &Box{10, 20, 100, 120}
	for _, tc := range []struct {
		name   string
		points []Point
		box    *Box
		want   []string // expected embedding kind of each token
	}{
		{"one point", []Point{{50, 60, 1}}, nil, []string{"pos", "pad"}},
		{"neg and pos", []Point{{50, 60, 0}, {70, 80, 1}}, nil, []string{"neg", "pos", "pad"}},
		{"box", nil, box, []string{"tl", "br"}},
		{"point and box", []Point{{50, 60, 0}}, box, []string{"neg", "tl", "br"}},
		{"explicit padding", []Point{{50, 60, -1}}, box, []string{"pad", "tl", "br"}},
		{"mask only", nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sparse, _, err := pe.Forward(context.Background(), tc.points, tc.box, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.want) == 0 {
				if sparse != nil {
					t.Fatalf("sparse %v, want nil", sparse.Shape)
				}
				return
			}
			if want := []int{1, len(tc.want), dim}; !slices.Equal(sparse.Shape, want) {
				t.Fatalf("sparse shape %v, want %v", sparse.Shape, want)
			}
			s := sparse.Data
			coords := []Point{}
			for _, p := range tc.points {
				coords = append(coords, p)
			}
			if tc.box == nil && len(tc.points) > 0 {
				coords = append(coords, Point{})
			}
			if tc.box != nil {
				coords = append(coords, Point{X: tc.box.X0, Y: tc.box.Y0}, Point{X: tc.box.X1, Y: tc.box.Y1})
			}
			for i, kind := range tc.want {
				row := s[i*dim : (i+1)*dim]
				want := make([]float32, dim)
				var add []float32
				switch kind {
				case "pad":
					copy(want, pe.notAPoint)
				case "neg":
					add = pe.pointEmbeddings[0]
				case "pos":
					add = pe.pointEmbeddings[1]
				case "tl":
					add = pe.pointEmbeddings[2]
				case "br":
					add = pe.pointEmbeddings[3]
				}
				if add != nil {
					pe.peLayer.forwardWithCoords(want, float32(coords[i].X)+0.5, float32(coords[i].Y)+0.5, pe.cfg.ImageSize)
					addTo(want, add)
				}
				for c := range want {
					if row[c] != want[c] {
						t.Fatalf("token %d (%s) channel %d: got %g want %g", i, kind, c, row[c], want[c])
					}
				}
			}
		})
	}
}

func TestPromptEncoderErrors(t *testing.T) {
	pe := tinyPromptEncoder(t)
	side := 4 * pe.cfg.EmbedSize()
	nan := math.NaN()
	for _, tc := range []struct {
		name   string
		points []Point
		box    *Box
		mask   *nn.Tensor
		want   string
	}{
		{"nan point", []Point{{nan, 3, 1}}, nil, nil, "not finite"},
		{"inf point", []Point{{3, math.Inf(1), 1}}, nil, nil, "not finite"},
		{"bad label", []Point{{3, 3, 2}}, nil, nil, "label 2"},
		{"nan box", nil, &Box{0, 0, nan, 5}, nil, "not finite"},
		{"mask too small", []Point{{3, 3, 1}}, nil, nn.NewTensor(nil, 1, 1, side/2, side/2), "mask prompt has shape"},
		{"mask 3-d", []Point{{3, 3, 1}}, nil, nn.NewTensor(nil, 1, side, side), "mask prompt has shape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := pe.Forward(context.Background(), tc.points, tc.box, tc.mask)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestNewPromptEncoderErrors(t *testing.T) {
	s := tinySAMStore(t)
	wrong := Tiny()
	wrong.PromptDim = 64
	if _, err := NewPromptEncoder(s.Sub("prompt_encoder"), wrong); !errors.Is(err, weights.ErrShape) {
		t.Fatalf("width 64 on a width-32 checkpoint: got %v, want a shape error", err)
	}
	if _, err := NewPromptEncoder(s.Sub("nothing"), Tiny()); !errors.Is(err, weights.ErrMissing) {
		t.Fatalf("empty store: got %v, want a missing-tensor error", err)
	}
}
