package sam

// The golden prompt cases of testdata/golden/tiny, shared by the prompt
// encoder, mask decoder and predictor tests.

import (
	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
	"path/filepath"
	"testing"
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
func (c decCase) resizedPrompt() ([]Point, *Box) { return c.prompt(c.PointsResized, c.BoxResized) }

// originalPrompt is the case's prompt in original pixels.
func (c decCase) originalPrompt() ([]Point, *Box) { return c.prompt(c.Points, c.Box) }

// prompt is the case's points (with their labels) and box.
func (c decCase) prompt(points [][2]float64, b []float64) ([]Point, *Box) {
	var pts []Point
	for i, p := range points {
		pts = append(pts, Point{X: p[0], Y: p[1], Label: c.Labels[i]})
	}
	var box *Box
	if len(b) == 4 {
		box = &Box{b[0], b[1], b[2], b[3]}
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

// golden is a result to compare with the case's file name.npy, within tol
// (relative to the file's largest magnitude when rel).
type golden struct {
	name string
	got  *nn.Tensor
	tol  float64
	rel  bool
}

// check fails the test on err, then compares each result with its golden
// file.
func (r decCaseRun) check(t *testing.T, err error, results ...golden) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range results {
		testutil.Check(t, g.name, g.got.Data, g.got.Shape, testutil.NPY(t, r.file(g.name+".npy")), g.tol, g.rel)
	}
}

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
	return testutil.Store(t, "tiny", "weights", "sam.npz")
}

// dense converts a golden float32 tensor to a dense tensor (sharing data).
func denseOf(w *weights.Tensor) *nn.Tensor {
	return nn.NewTensor(w.Float32s(), w.Shape...)
}

func tinyPromptEncoder(t testing.TB) *PromptEncoder {
	return testutil.Must(NewPromptEncoder(tinySAMStore(t).Sub("prompt_encoder"), Tiny()))(t)
}

func tinyMaskDecoder(t testing.TB) *MaskDecoder {
	return testutil.Must(NewMaskDecoder(tinySAMStore(t).Sub("mask_decoder"), Tiny()))(t)
}
