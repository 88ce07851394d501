package gdino

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
)

// decCase is the part of a golden case.json that post-processing checks.
type decCase struct {
	Result struct {
		QueryIndices       []int        `json:"query_indices"`
		BoxesCXCYWH        [][4]float32 `json:"boxes_cxcywh"`
		Scores             []float32    `json:"scores"`
		Phrases            []string     `json:"phrases"`
		BoxesXYXY          [][4]float32 `json:"boxes_xyxy"`
		NMSKeep            []int        `json:"nms_keep"`
		BoxesXYXYAfterNMS  [][4]float32 `json:"boxes_xyxy_after_nms"`
		ScoresAfterNMS     []float32    `json:"scores_after_nms"`
		BestBoxXYXY        [4]float32   `json:"best_box_xyxy"`
		InputIDsUntruncate []int        `json:"input_ids_untruncated"`
	} `json:"result"`
	OrigSize [2]int `json:"orig_size"` // (H, W)
}

func decLoadCase(t *testing.T, c string) *decCase {
	t.Helper()
	var cs decCase
	testutil.JSON(t, testutil.Golden("gdino_tiny", "cat_dog_240", c, "case.json"), &cs)
	return &cs
}

func decTokenizer(t *testing.T) *Tokenizer {
	t.Helper()
	tok, err := LoadVocab(testutil.Golden("gdino_tiny", "weights", "vocab.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// decCheckResult compares a post-processing result with a case's, boxes
// within tol pixels and scores within stol.
func decCheckResult(t *testing.T, res *postprocessed, cs *decCase, tol, stol float64) {
	t.Helper()
	want := cs.Result
	if !slices.Equal(res.Queries, want.QueryIndices) {
		t.Fatalf("query_indices %v, want %v", res.Queries, want.QueryIndices)
	}
	maxBox, maxScore := 0.0, 0.0
	for i, d := range res.Detections {
		if d.Phrase != want.Phrases[i] {
			t.Errorf("detection %d: phrase %q, want %q", i, d.Phrase, want.Phrases[i])
		}
		maxScore = math.Max(maxScore, math.Abs(float64(d.Score-want.Scores[i])))
		for c := 0; c < 4; c++ {
			maxBox = math.Max(maxBox, math.Abs(float64(d.Box[c]-want.BoxesXYXY[i][c])))
		}
	}
	if !slices.Equal(res.Keep, want.NMSKeep) {
		t.Fatalf("nms_keep %v, want %v", res.Keep, want.NMSKeep)
	}
	for i, d := range res.Kept {
		maxScore = math.Max(maxScore, math.Abs(float64(d.Score-want.ScoresAfterNMS[i])))
		for c := 0; c < 4; c++ {
			maxBox = math.Max(maxBox, math.Abs(float64(d.Box[c]-want.BoxesXYXYAfterNMS[i][c])))
		}
	}
	best, ok := res.Best()
	if !ok {
		t.Fatal("no best box")
	}
	for c := 0; c < 4; c++ {
		maxBox = math.Max(maxBox, math.Abs(float64(best.Box[c]-want.BestBoxXYXY[c])))
	}
	if maxBox > tol || maxScore > stol {
		t.Errorf("boxes max diff %.3g px (tolerance %g), scores %.3g (tolerance %g)", maxBox, tol, maxScore, stol)
	} else {
		t.Logf("%d detections, %d after NMS: boxes max diff %.3g px, scores %.3g", len(res.Detections), len(res.Kept), maxBox, maxScore)
	}
}

// TestPostprocessGolden post-processes the golden pred_logits and
// pred_boxes.
func TestPostprocessGolden(t *testing.T) {
	tok := decTokenizer(t)
	for _, c := range decCaptions {
		t.Run(c, func(t *testing.T) {
			cs := decLoadCase(t, c)
			logits, boxes := decGolden(t, c, "pred_logits"), decGolden(t, c, "pred_boxes")
			res, err := postprocess(logits.Float32s(), boxes.Float32s(), cs.OrigSize[1], cs.OrigSize[0], cs.Result.InputIDsUntruncate, tok, DefaultPostprocessOptions())
			if err != nil {
				t.Fatal(err)
			}
			decCheckResult(t, res, cs, 1e-4, 1e-7)
		})
	}
}

// TestDecodePostprocessGolden runs the decoder on the golden encoder
// outputs, then the post-processing: the case's result within 1e-3 pixels.
func TestDecodePostprocessGolden(t *testing.T) {
	tr := decTinyTransformer(t)
	tok := decTokenizer(t)
	for _, c := range decCaptions {
		t.Run(c, func(t *testing.T) {
			cs := decLoadCase(t, c)
			mem, text := decGolden(t, c, "enc1_memory"), decGolden(t, c, "enc1_memory_text")
			sel, err := tr.selectQueries(context.Background(), mem.Float32s(), text.Float32s(), decShapes, nil)
			if err != nil {
				t.Fatal(err)
			}
			g := nn.NewGraph()
			out := tr.decode(g, g.Input("memory", 310, 256), g.Input("text", text.Shape[1], 256), g.Input("ref", len(sel.Indices), 4), decShapes, levelStarts(decShapes), false)
			m, err := g.Compile()
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Exec(context.Background(), map[string][]float32{"memory": mem.Float32s(), "text": text.Float32s(), "ref": sel.RefUnsig}); err != nil {
				t.Fatal(err)
			}
			res, err := postprocess(nn.Values(out.Logits), nn.Values(out.Boxes), cs.OrigSize[1], cs.OrigSize[0], cs.Result.InputIDsUntruncate, tok, DefaultPostprocessOptions())
			if err != nil {
				t.Fatal(err)
			}
			decCheckResult(t, res, cs, 1e-3, 1e-5)
		})
	}
}

func TestPostprocessThresholds(t *testing.T) {
	tok := decTokenizer(t)
	ids := tok.Encode("cat . dog .") // [CLS] cat . dog . [SEP]
	ninf := float32(math.Inf(-1))
	x := float32(-0.7)
	at := sigmoid32(x)           // a threshold some logit hits exactly
	up := math.Nextafter32(x, 1) // the next logit whose probability is above
	for sigmoid32(up) <= at {
		up = math.Nextafter32(up, 1)
	}
	opt := PostprocessOptions{BoxThreshold: at, TextThreshold: at, NMSThreshold: 0.5}
	logits := []float32{
		x, x, x, x, x, x, ninf, ninf, // score == threshold: dropped
		x, up, x, up, x, x, ninf, ninf, // kept: tokens 1 and 3 pass, at the threshold do not
		float32(math.NaN()), 5, 5, 5, 5, 5, ninf, ninf, // NaN score: dropped
		ninf, ninf, ninf, ninf, ninf, ninf, ninf, ninf, // probability 0
	}
	boxes := []float32{
		0.5, 0.5, 0.2, 0.2,
		0.5, 0.25, 0.5, 0.5,
		0.5, 0.5, 0.2, 0.2,
		0.5, 0.5, 0.2, 0.2,
	}
	res, err := postprocess(logits, boxes, 200, 100, ids, tok, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Detections) != 1 || res.Queries[0] != 1 {
		t.Fatalf("queries %v, want [1]", res.Queries)
	}
	d := res.Detections[0]
	if d.Phrase != "cat dog" || d.Score != sigmoid32(up) {
		t.Errorf("phrase %q score %g, want \"cat dog\" %g", d.Phrase, d.Score, sigmoid32(up))
	}
	// (0.5, 0.25, 0.5, 0.5) of 200x100 -> (100, 25, 100, 50) -> (50, 0, 150, 50)
	if d.Box != [4]float32{50, 0, 150, 50} {
		t.Errorf("box %v", d.Box)
	}
	if !slices.Equal(res.Keep, []int{0}) || len(res.Kept) != 1 {
		t.Errorf("keep %v", res.Keep)
	}
	// nothing passes: an empty result, not an error
	res, err = postprocess(logits[:8], boxes[:4], 200, 100, ids, tok, opt)
	if err != nil || len(res.Detections) != 0 || len(res.Kept) != 0 {
		t.Fatalf("nothing passing: %+v, %v", res, err)
	}
	if _, ok := res.Best(); ok {
		t.Error("a best box with no detection")
	}
	// no queries at all
	if res, err := postprocess(nil, nil, 200, 100, ids, tok, opt); err != nil || len(res.Detections) != 0 {
		t.Errorf("no queries: %+v, %v", res, err)
	}
	// no tokenizer: empty phrases
	res, err = postprocess(logits, boxes, 200, 100, ids, nil, opt)
	if err != nil || len(res.Detections) != 1 || res.Detections[0].Phrase != "" {
		t.Errorf("no tokenizer: %+v, %v", res, err)
	}
	// boxes outside the image are kept unclipped
	res, err = postprocess([]float32{5}, []float32{0.9, 0.1, 0.6, 0.4}, 10, 10, nil, nil, DefaultPostprocessOptions())
	if err != nil || len(res.Detections) != 1 {
		t.Fatalf("outside box: %+v, %v", res, err)
	}
	if b := res.Detections[0].Box; b[2] <= 10 || b[1] >= 0 {
		t.Errorf("box %v was clipped", b)
	}
	// errors
	for _, bad := range []struct {
		logits, boxes []float32
		w, h          int
	}{
		{logits, boxes[:5], 200, 100},
		{logits[:7], boxes, 200, 100},
		{logits, boxes, 0, 100},
		{logits, boxes, 200, -1},
		{logits, nil, 200, 100},
	} {
		if _, err := postprocess(bad.logits, bad.boxes, bad.w, bad.h, ids, tok, opt); err == nil {
			t.Errorf("%d logits, %d box values, %dx%d: no error", len(bad.logits), len(bad.boxes), bad.w, bad.h)
		}
	}
}

func TestNMS(t *testing.T) {
	nan := float32(math.NaN())
	cases := []struct {
		name   string
		boxes  [][4]float32
		scores []float32
		iou    float32
		want   []int
	}{
		{"empty", nil, nil, 0.5, nil},
		{"one", [][4]float32{{0, 0, 1, 1}}, []float32{0.3}, 0.5, []int{0}},
		{"disjoint, by score", [][4]float32{{0, 0, 1, 1}, {2, 2, 3, 3}, {4, 4, 5, 5}}, []float32{0.2, 0.9, 0.5}, 0.5, []int{1, 2, 0}},
		// IoU of (0,0,2,1) and (0,0,1,1) is exactly 0.5: kept (strict >)
		{"iou at threshold", [][4]float32{{0, 0, 2, 1}, {0, 0, 1, 1}}, []float32{0.9, 0.8}, 0.5, []int{0, 1}},
		{"iou above threshold", [][4]float32{{0, 0, 2, 1}, {0, 0, 1, 1}}, []float32{0.9, 0.8}, 0.49, []int{0}},
		// equal scores: lower index first; it suppresses the other
		{"tie", [][4]float32{{0, 0, 1, 1}, {0, 0, 1, 1}, {5, 5, 6, 6}}, []float32{0.5, 0.5, 0.5}, 0.5, []int{0, 2}},
		// a suppressed box suppresses nothing: 0 > 1 (0.6), 1 overlaps 2, 0 does not
		{"chain", [][4]float32{{0, 0, 2, 2}, {1, 0, 3, 2}, {2, 0, 4, 2}}, []float32{0.9, 0.8, 0.7}, 0.3, []int{0, 2}},
		// zero-area boxes: 0/0 = NaN never suppresses
		{"zero area", [][4]float32{{1, 1, 1, 1}, {1, 1, 1, 1}, {0, 0, 2, 2}}, []float32{0.9, 0.8, 0.7}, 0.5, []int{0, 1, 2}},
		// NaN scores come first (torch's sort), in index order
		{"nan scores", [][4]float32{{0, 0, 1, 1}, {3, 3, 4, 4}, {0, 0, 1, 1}, {6, 6, 7, 7}}, []float32{0.9, nan, nan, 0.1}, 0.5, []int{1, 2, 3}},
		// NaN coordinates: NaN IoU, nothing suppressed, no panic
		{"nan box", [][4]float32{{nan, 0, 1, 1}, {0, 0, 1, 1}}, []float32{0.9, 0.8}, 0.5, []int{0, 1}},
		{"mismatched lengths", [][4]float32{{0, 0, 1, 1}, {0, 0, 1, 1}}, []float32{0.4}, 0.5, []int{0}},
	}
	for _, c := range cases {
		if got := nms(c.boxes, c.scores, c.iou); !slices.Equal(got, c.want) {
			t.Errorf("%s: keep %v, want %v", c.name, got, c.want)
		}
	}
}
