package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/mam"
)

// textCase is the golden GroundingDINO case the text tests run: the tiny
// detector on cat_dog_240 with the caption "cat . dog .".
type textCase struct {
	Caption string `json:"caption"`
	Result  struct {
		Best     [4]float64   `json:"best_box_xyxy"`
		AfterNMS [][4]float64 `json:"boxes_xyxy_after_nms"`
		Scores   []float64    `json:"scores_after_nms"`
		Phrases  []string     `json:"phrases"`
		NMSKeep  []int        `json:"nms_keep"`
	} `json:"result"`
}

func loadTextCase(t *testing.T) textCase {
	t.Helper()
	var c textCase
	testutil.JSON(t, testutil.Golden("gdino_tiny", "cat_dog_240", "cat_dog", "case.json"), &c)
	if len(c.Result.AfterNMS) != 4 {
		t.Fatalf("the golden case has %d boxes after NMS, the tests expect 4", len(c.Result.AfterNMS))
	}
	return c
}

func textImage() string { return testutil.Golden("gdino_tiny", "cat_dog_240", "image.png") }

// textArgs are the tiny SAM, M2M and GroundingDINO checkpoints on the
// golden text image, then extra.
func textArgs(extra ...string) []string {
	sp, mp := tinyWeights()
	w := testutil.Golden("gdino_tiny", "weights")
	return append([]string{"-sam", sp, "-mam", mp, "-gdino", filepath.Join(w, "gdino.pth"), "-vocab", filepath.Join(w, "vocab.txt"),
		"-image", textImage()}, extra...)
}

// boxFlag writes a box as -box takes it, exactly (float64 round trip).
func boxFlag(b [4]float64) string {
	s := make([]string, 4)
	for i, v := range b {
		s[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strings.Join(s, ",")
}

// boxMatter mattes box prompts on the golden text image in-process, with
// the tiny SAM and M2M: the mattes the command must write for the
// detections' boxes, encoded as the command encodes them.
type boxMatter struct {
	t    *testing.T
	sess *mam.Session
}

func newBoxMatter(t *testing.T) *boxMatter {
	t.Helper()
	sp, mp := tinyWeights()
	m, err := mam.Load(context.Background(), sp, mp)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mam.ReadImage(textImage())
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.NewSession(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	return &boxMatter{t, s}
}

func (b *boxMatter) matte(box [4]float64, mode mam.Mode, points ...mam.Point) *mam.Result {
	b.t.Helper()
	r, err := b.sess.Matte(context.Background(), mam.Prompt{Box: &mam.Box{X0: box[0], Y0: box[1], X1: box[2], Y1: box[3]}, Points: points}, mam.WithMode(mode))
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

func pngBytes(t *testing.T, im image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := mam.EncodePNG(&buf, im, mam.PNGFast); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkDetectionsJSON compares the -json output with the reference
// boxes after NMS (1e-3 px), scores (1e-4) and phrases.
func checkDetectionsJSON(t *testing.T, b []byte, g textCase) {
	t.Helper()
	var got jsonDetections
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("-json: %v\n%s", err, b)
	}
	if len(got.Detections) != len(g.Result.AfterNMS) {
		t.Fatalf("-json has %d detections, want %d", len(got.Detections), len(g.Result.AfterNMS))
	}
	for i, d := range got.Detections {
		for k := range 4 {
			if math.Abs(float64(d.Box[k])-g.Result.AfterNMS[i][k]) > 1e-3 {
				t.Errorf("detection %d: box %v, want %v", i, d.Box, g.Result.AfterNMS[i])
				break
			}
		}
		if math.Abs(float64(d.Score)-g.Result.Scores[i]) > 1e-4 {
			t.Errorf("detection %d: score %v, want %v", i, d.Score, g.Result.Scores[i])
		}
		if want := g.Result.Phrases[g.Result.NMSKeep[i]]; d.Phrase != want {
			t.Errorf("detection %d: phrase %q, want %q", i, d.Phrase, want)
		}
	}
}

// TestMatteText runs the text prompt's flags on the tiny models: the text
// matte is byte for byte the box matte of the reference's best box (with
// the clicks added, in each mode), -all writes one matte per box in the
// detections' order, -semantic their pixelwise maximum, -json the
// reference boxes, -dump the best box's stages.
func TestMatteText(t *testing.T) {
	g := loadTextCase(t)
	bm := newBoxMatter(t)
	bg := func(x, y float64) mam.Point { return mam.Point{X: x, Y: y, Label: 0} }
	for _, c := range []struct {
		name  string
		extra []string // after -text CAPTION
		check func(t *testing.T, dir, stdout, stderr string)
	}{
		{"best box", []string{"-json", "d.json"}, func(t *testing.T, dir, _, stderr string) {
			if !bytes.Equal(readFile(t, filepath.Join(dir, "a.png")), pngBytes(t, bm.matte(g.Result.Best, mam.PostProcess).Gray())) {
				t.Error("the text matte differs from the best box's")
			}
			checkDetectionsJSON(t, readFile(t, filepath.Join(dir, "d.json")), g)
			for _, s := range []string{"detect ", "4 boxes", "0.400  [88.0 1.2 159.5 37.3]  dog [SEP]", "decode+m2m", "write"} {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
		}},
		{"with a click, maskguide", []string{"-point", "120,30,0", "-mode", "maskguide"}, func(t *testing.T, dir, _, _ string) {
			if !bytes.Equal(readFile(t, filepath.Join(dir, "a.png")), pngBytes(t, bm.matte(g.Result.Best, mam.MaskGuide, bg(120, 30)).Gray())) {
				t.Error("the text + click matte differs from the best box + click's")
			}
		}},
		{"json to stdout", []string{"-json", "-", "-box-threshold", "0.25", "-text-threshold", "0.25", "-nms", "0.5"}, func(t *testing.T, _, stdout, _ string) {
			checkDetectionsJSON(t, []byte(stdout), g)
		}},
		{"all", []string{"-all", "-o", "all", "-cutout", "all", "-mask", "masks", "-json", "d.json"}, func(t *testing.T, dir, _, _ string) {
			if names := listDir(t, filepath.Join(dir, "all")); len(names) != 8 {
				t.Errorf("-all wrote %v, want alpha_0..3 and cutout_0..3", names)
			}
			if names := listDir(t, filepath.Join(dir, "masks")); len(names) != 4 {
				t.Errorf("-all wrote masks %v, want mask_0..3", names)
			}
			for i, box := range g.Result.AfterNMS {
				r := bm.matte(box, mam.PostProcess)
				if !bytes.Equal(readFile(t, filepath.Join(dir, "all", fmt.Sprintf("alpha_%d.png", i))), pngBytes(t, r.Gray())) {
					t.Errorf("alpha_%d.png differs from box %d's matte", i, i)
				}
				if !bytes.Equal(readFile(t, filepath.Join(dir, "masks", fmt.Sprintf("mask_%d.png", i))), pngBytes(t, r.MaskImage())) {
					t.Errorf("mask_%d.png differs from box %d's mask", i, i)
				}
				cut := testutil.Image(t, filepath.Join(dir, "all", fmt.Sprintf("cutout_%d.png", i))).(*image.NRGBA)
				for p, a := range r.Gray().Pix {
					if cut.Pix[4*p+3] != a {
						t.Fatalf("cutout_%d.png: pixel %d has alpha %d, the matte %d", i, p, cut.Pix[4*p+3], a)
					}
				}
			}
			checkDetectionsJSON(t, readFile(t, filepath.Join(dir, "d.json")), g)
		}},
		{"all, composites in -o", []string{"-all", "-o", "all", "-composite", "green"}, func(t *testing.T, dir, _, _ string) {
			for i := range 4 {
				for _, k := range []string{"alpha", "composite"} {
					if w, h := decodePNG(t, filepath.Join(dir, "all", fmt.Sprintf("%s_%d.png", k, i))); w != 240 || h != 180 {
						t.Errorf("%s_%d.png is %dx%d", k, i, w, h)
					}
				}
			}
		}},
		{"semantic", []string{"-semantic"}, func(t *testing.T, dir, _, _ string) {
			sem := testutil.Image(t, filepath.Join(dir, "a.png")).(*image.Gray)
			var rs []*mam.Result
			var grays []*image.Gray
			for _, box := range g.Result.AfterNMS {
				rs = append(rs, bm.matte(box, mam.PostProcess))
				grays = append(grays, rs[len(rs)-1].Gray())
			}
			for p, v := range sem.Pix {
				var want uint8
				for _, g := range grays {
					want = max(want, g.Pix[p])
				}
				if v != want {
					t.Fatalf("semantic pixel %d = %d, the boxes' maximum %d", p, v, want)
				}
			}
			if !bytes.Equal(readFile(t, filepath.Join(dir, "a.png")), pngBytes(t, mam.Union(rs).Gray())) {
				t.Error("the semantic matte differs from the union of the boxes' mattes")
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			args := textArgs(append([]string{"-text", g.Caption, "-o", "a.png"}, c.extra...)...)
			stdout, stderr, err := runCmd(args, nil)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			c.check(t, dir, stdout, stderr)
		})
	}
}

// -dump with -text writes the stages of the best box's matte: the names
// and contents of a box prompt's dump with the box the detector found (the
// -json box; the reference's differs from it in the last float bits, which
// SAM's logits show but the 8-bit matte does not).
func TestMatteTextDump(t *testing.T) {
	g := loadTextCase(t)
	dir := t.TempDir()
	sp, mp := tinyWeights()
	args := textArgs("-text", g.Caption, "-all", "-o", filepath.Join(dir, "all"), "-json", filepath.Join(dir, "d.json"), "-dump", filepath.Join(dir, "text"))
	if _, stderr, err := runCmd(args, nil); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var dets jsonDetections
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "d.json")), &dets); err != nil || len(dets.Detections) == 0 {
		t.Fatalf("-json: %v %v", dets, err)
	}
	var best [4]float64
	for k, v := range dets.Detections[0].Box {
		best[k] = float64(v)
	}
	args = []string{"-sam", sp, "-mam", mp, "-image", textImage(), "-box", boxFlag(best), "-o", filepath.Join(dir, "box.png"), "-dump", filepath.Join(dir, "box")}
	if _, stderr, err := runCmd(args, nil); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	names := listDir(t, filepath.Join(dir, "box"))
	if got := listDir(t, filepath.Join(dir, "text")); fmt.Sprint(got) != fmt.Sprint(names) || len(names) < 10 {
		t.Fatalf("text dump %v, box dump %v", got, names)
	}
	for _, n := range names {
		if !bytes.Equal(readFile(t, filepath.Join(dir, "text", n)), readFile(t, filepath.Join(dir, "box", n))) {
			t.Errorf("dump %s differs from the best box's", n)
		}
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "all", "alpha_0.png")), readFile(t, filepath.Join(dir, "box.png"))) {
		t.Error("alpha_0.png differs from the best box's matte")
	}
}

// Mistakes in the text prompt's flags fail at once, on one line, before
// the model loads, and leave no file behind.
func TestMatteTextErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file.png")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	notVocab := filepath.Join(dir, "vocab.txt")
	if err := os.WriteFile(notVocab, []byte("hello\nworld\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sp, mp := tinyWeights()
	out := filepath.Join(dir, "a.png")
	text := func(extra ...string) []string {
		return textArgs(append([]string{"-text", "cat . dog .", "-o", out}, extra...)...)
	}
	plain := func(extra ...string) []string {
		return append([]string{"-sam", sp, "-mam", mp, "-image", textImage(), "-o", out}, extra...)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"text and box", text("-box", "1,2,30,40"), "-text and -box"},
		{"box threshold 2", text("-box-threshold", "2"), "-box-threshold 2: want a value in [0, 1]"},
		{"text threshold NaN", text("-text-threshold", "NaN"), "-text-threshold NaN"},
		{"negative nms", text("-nms", "-0.5"), "-nms -0.5"},
		{"all without text", plain("-box", "1,2,30,40", "-all"), "-all mattes every box a text prompt finds"},
		{"semantic without text", plain("-box", "1,2,30,40", "-semantic"), "-semantic"},
		{"json without text", plain("-box", "1,2,30,40", "-json", filepath.Join(dir, "d.json")), "-json is for text prompts"},
		{"threshold without text", plain("-box", "1,2,30,40", "-nms", "0.3"), "-nms is for text prompts"},
		{"gdino without text", plain("-box", "1,2,30,40", "-gdino", file), "-gdino is for text prompts"},
		{"all and semantic", text("-all", "-semantic"), "not both"},
		{"all, -o a file", text("-all", "-o", file), "-o " + file + " is a file"},
		{"all, -cutout a file", text("-all", "-o", dir, "-cutout", file), "-cutout " + file + " is a file"},
		{"all, -o stdout", text("-all", "-o", "-"), "not standard output"},
		{"all, -o in no directory", text("-all", "-o", filepath.Join(dir, "no", "such")), "does not exist"},
		{"empty caption", text("-text", ""), "-text is empty"},
		{"blank caption", text("-text", "  "), "-text is empty"},
		{"caption of nothing", text("-text", "\x00"), "empty caption"},
		{"not a vocab", text("-vocab", notVocab), "bad vocabulary"},
		{"missing vocab", text("-vocab", filepath.Join(dir, "nope.txt")), "-vocab"},
		{"missing gdino", text("-gdino", filepath.Join(dir, "nope.pth")), "-gdino"},
		{"json is the matte", text("-json", out), "same file"},
		{"json and matte on stdout", text("-json", "-", "-o", "-"), "standard output"},
		{"text outside", text("-point", "500,10"), "outside"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, err := runCmd(c.args, nil)
			if err == nil {
				t.Fatal("no error")
			}
			msg := oneLine(err)
			if !strings.Contains(msg, c.want) {
				t.Errorf("error %q does not say %q", msg, c.want)
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg, "mam: ") || strings.Contains(msg, "gdino: ") {
				t.Errorf("error is not one clean line: %q", msg)
			}
			if strings.Contains(stderr, "load ") {
				t.Errorf("the model was loaded before the error:\n%s", stderr)
			}
		})
	}
	if names := listDir(t, dir); len(names) != 2 { // file.png, vocab.txt
		t.Errorf("files left: %v", names)
	}
}

// A text that matches nothing (a box threshold no box passes) is one clear
// line and writes nothing, with -all and -json too.
func TestMatteTextNoDetection(t *testing.T) {
	dir := t.TempDir()
	for _, extra := range [][]string{
		{"-o", filepath.Join(dir, "a.png"), "-json", filepath.Join(dir, "d.json")},
		{"-all", "-o", filepath.Join(dir, "all"), "-json", filepath.Join(dir, "d.json"), "-dump", filepath.Join(dir, "dump")},
	} {
		_, stderr, err := runCmd(textArgs(append([]string{"-text", "cat", "-box-threshold", "0.999"}, extra...)...), nil)
		if !errors.Is(err, mam.ErrNoDetection) {
			t.Fatalf("%v: err %v\n%s", extra, err, stderr)
		}
		if msg := oneLine(err); !strings.Contains(msg, `-text "cat": no box above the threshold 0.999`) || strings.Contains(msg, "mam: ") {
			t.Errorf("error %q", msg)
		}
		if !strings.Contains(stderr, `0 boxes for "cat"`) {
			t.Errorf("stderr:\n%s", stderr)
		}
	}
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("files left: %v", names)
	}
}

// With -text and without -gdino and -vocab, the cached GroundingDINO and
// vocabulary are downloaded on first use, like SAM's and MAM's (here from
// a local server named by MAM_MIRROR, the vocabulary by MAM_VOCAB_URL);
// -download -text fetches all four and stops.
func TestMatteTextDownload(t *testing.T) {
	w, gw := testutil.Golden("tiny", "weights"), testutil.Golden("gdino_tiny", "weights")
	files := map[string]string{
		"/sam_vit_b_01ec64.pth":        filepath.Join(w, "sam.pth"),
		"/mam_vitb.pth":                filepath.Join(w, "mam.pth"),
		"/groundingdino_swint_ogc.pth": filepath.Join(gw, "gdino.pth"),
		"/elsewhere/vocab.txt":         filepath.Join(gw, "vocab.txt"),
	}
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(rw, r)
			return
		}
		http.ServeFile(rw, r, f)
	}))
	defer srv.Close()
	cache := t.TempDir()
	t.Setenv("MAM_CACHE", cache)
	t.Setenv("MAM_MIRROR", srv.URL)
	t.Setenv("MAM_VOCAB_URL", srv.URL+"/elsewhere/vocab.txt")
	if _, stderr, err := runCmd([]string{"-download", "-text", "x"}, nil); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	} else if !strings.Contains(stderr, "downloading GroundingDINO Swin-T") || !strings.Contains(stderr, "downloading BERT's vocabulary") {
		t.Errorf("no download message:\n%s", stderr)
	}
	for _, f := range []string{"sam_vit_b_01ec64.pth", "mam_vitb.pth", "groundingdino_swint_ogc.pth", "bert-base-uncased-vocab.txt"} {
		if _, err := os.Stat(filepath.Join(cache, f)); err != nil {
			t.Errorf("cache: %v", err)
		}
	}
	n := requests.Load()
	out := filepath.Join(t.TempDir(), "alpha.png")
	if _, stderr, err := runCmd([]string{"-image", textImage(), "-text", "cat . dog .", "-o", out}, nil); err != nil || strings.Contains(stderr, "downloading") || requests.Load() != n {
		t.Errorf("run on the cache: %v, %d more requests\n%s", err, requests.Load()-n, stderr)
	}
	decodePNG(t, out)

	// A caption the cached vocabulary cannot ground fails before loading.
	if _, stderr, err := runCmd([]string{"-image", textImage(), "-text", "\x00", "-o", out}, nil); err == nil || !strings.Contains(oneLine(err), "empty caption") || strings.Contains(stderr, "load ") {
		t.Errorf("empty caption with the cached vocabulary: %v\n%s", err, stderr)
	}

	// A fresh cache: the text run downloads all four files.
	cache = t.TempDir()
	t.Setenv("MAM_CACHE", cache)
	_, stderr, err := runCmd([]string{"-image", textImage(), "-text", "cat . dog .", "-o", out}, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if strings.Count(stderr, "downloading") != 4 {
		t.Errorf("want 4 downloads:\n%s", stderr)
	}
}
