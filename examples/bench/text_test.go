package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/mam"
)

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// rw100Entry is one image's entry of a RefMatte-RW100 text file.
type rw100Entry struct {
	ImageName   string   `json:"image_name,omitempty"`
	Expressions []string `json:"expressions"`
}

// writeAnnotations writes RW100-layout annotation files into dir.
func writeAnnotations(t *testing.T, dir string, text map[string]rw100Entry, index map[string]int) (textPath, indexPath string) {
	t.Helper()
	textPath, indexPath = filepath.Join(dir, "rw100_text.json"), filepath.Join(dir, "rw100_index.json")
	writeJSONFile(t, textPath, text)
	writeJSONFile(t, indexPath, index)
	return textPath, indexPath
}

// The caption of image X is text[stem(X)].expressions[index[text[stem(X)].image_name]];
// every missing link is an error naming it.
func TestTextAnnotations(t *testing.T) {
	dir := t.TempDir()
	tp, ip := writeAnnotations(t, dir, map[string]rw100Entry{
		"a":       {ImageName: "refmatte_a.jpg", Expressions: []string{"the cat", "the dog on the left"}},
		"noindex": {ImageName: "refmatte_x.jpg", Expressions: []string{"x"}},
		"far":     {ImageName: "far.jpg", Expressions: []string{"x"}},
		"neg":     {ImageName: "neg.jpg", Expressions: []string{"x"}},
		"blank":   {ImageName: "blank.jpg", Expressions: []string{" "}},
		"noname":  {Expressions: []string{"x"}},
	}, map[string]int{"refmatte_a.jpg": 1, "far.jpg": 1, "neg.jpg": -1, "blank.jpg": 0})
	a, err := loadTextAnnotations(tp, ip)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ image, want, err string }{
		{"a.jpg", "the dog on the left", ""},
		{"a.png", "the dog on the left", ""},
		{"missing.jpg", "", `"missing" is not a key of -text-json`},
		{"noindex.jpg", "", `"refmatte_x.jpg" (image_name of "noindex") is not a key of -index-json`},
		{"far.jpg", "", `gives expression 1 of "far", which has 1`},
		{"neg.jpg", "", `gives expression -1 of "neg"`},
		{"blank.jpg", "", `expression 0 of "blank"`},
		{"noname.jpg", "", `"noname" has no image_name`},
	} {
		got, err := a.caption(c.image)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%s: %q, %v; want %q", c.image, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !strings.HasPrefix(err.Error(), "no text annotation")):
			t.Errorf("%s: error %v, want one saying %q", c.image, err, c.err)
		}
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"a": `), 0o644); err != nil {
		t.Fatal(err)
	}
	strIndex := filepath.Join(dir, "str.json")
	writeJSONFile(t, strIndex, map[string]string{"refmatte_a.jpg": "1"})
	for _, c := range []struct{ text, index, want string }{
		{bad, ip, "-text-json " + bad},
		{tp, filepath.Join(dir, "nope.json"), "-index-json"},
		{tp, strIndex, "-index-json " + strIndex},
		{ip, ip, "-text-json"}, // an index file is not a text file
	} {
		if _, err := loadTextAnnotations(c.text, c.index); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s, %s: error %v, want one saying %q", c.text, c.index, err, c.want)
		}
	}
}

// TestRunTextCLI runs -prompt text with a fake model: each image's caption
// is the annotations', the mode rw100's; an image without annotations and
// one whose caption matches nothing fail with a message and the others are
// predicted and scored (a ground truth with no foreground does not matter:
// the prompt is not derived from it).
func TestRunTextCLI(t *testing.T) {
	sb := makeBench(t, 4, false)
	tp, ip := writeAnnotations(t, sb.root, map[string]rw100Entry{
		"img_0": {ImageName: "r0.jpg", Expressions: []string{"the ellipse", "the purple ellipse"}},
		"img_2": {ImageName: "r2.jpg", Expressions: []string{"nothing"}},
		"img_3": {ImageName: "r3.jpg", Expressions: []string{"a shape"}},
	}, map[string]int{"r0.jpg": 1, "r2.jpg": 0, "r3.jpg": 0})
	savePNG(t, filepath.Join(sb.gt, "img_3.png"), image.NewGray(image.Rect(0, 0, sb.w, sb.h)))
	f := &fakeMatter{}
	saved := loadModel
	loadModel = func(_ context.Context, mf modelFiles) (matter, error) {
		if mf != (modelFiles{sam: "sam.npz", mam: "mam.npz", gdino: "gdino.pth", vocab: "vocab.txt"}) {
			return nil, fmt.Errorf("paths %+v", mf)
		}
		return f, nil
	}
	t.Cleanup(func() { loadModel = saved })
	out := filepath.Join(sb.root, "out")
	args := []string{"-benchmark", "rw100", "-prompt", "text", "-text-json", tp, "-index-json", ip,
		"-images", sb.images, "-gt", sb.gt, "-out", out, "-sam", "sam.npz", "-mam", "mam.npz",
		"-gdino", "gdino.pth", "-vocab", "vocab.txt", "-quiet"}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1 (two failures): %s", code, stderr.String())
	}
	for _, s := range []string{
		"predicted 2, kept 0 already predicted, 2 failed",
		`failed: img_1.png: no text annotation: "img_1" is not a key of -text-json`,
		`failed: img_2.png: text "nothing": no box above the threshold`,
		"2 predictions failed",
	} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
		}
	}
	if !strings.Contains(stdout.String(), "| rw100 | 2 |") {
		t.Errorf("table:\n%s", stdout.String())
	}
	want := []string{"the purple ellipse", "nothing", "a shape"}
	if len(f.prompts) != len(want) {
		t.Fatalf("%d model calls, want %d", len(f.prompts), len(want))
	}
	for i, p := range f.prompts {
		if p.Text != want[i] || p.Box != nil || len(p.Points) != 0 || f.modes[i] != mam.MaskGuide {
			t.Errorf("call %d: prompt %+v, mode %s; want text %q, maskguide", i, p, f.modes[i], want[i])
		}
	}
	for _, name := range []string{"img_0.png", "img_3.png"} {
		got := readGrayFloats(t, filepath.Join(out, name))
		wantA := fakeAlpha(mam.Prompt{Box: &fakeTextBox}, sb.w, sb.h)
		for j := range wantA {
			if got[j] != wantA[j] {
				t.Fatalf("%s: pixel %d = %v, want %v", name, j, got[j], wantA[j])
			}
		}
	}
	for _, name := range []string{"img_1.png", "img_2.png"} {
		if _, err := os.Stat(filepath.Join(out, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: a failed prediction left a file (%v)", name, err)
		}
	}

	// Unreadable annotations stop the run before the model loads.
	calls := f.calls
	bad := append([]string(nil), args...)
	bad[5] = filepath.Join(sb.root, "nope.json")
	stderr.Reset()
	if code := run(context.Background(), bad, &stdout, &stderr); code != 1 || f.calls != calls || !strings.Contains(stderr.String(), "-text-json") {
		t.Errorf("missing -text-json file: exit %d, %d calls: %s", code, f.calls-calls, stderr.String())
	}
}

// TestTinyText runs -prompt text on the tiny models over a RefMatte-RW100
// folder holding the golden GroundingDINO image: its matte is the maskguide
// matte of the reference's best box for the annotated caption (box
// threshold 0.25, text threshold 0.5, NMS 0.8 keep the same best box), and
// an image without annotations fails alone.
func TestTinyText(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the tiny models")
	}
	var g struct {
		Caption string `json:"caption"`
		Result  struct {
			Best [4]float64 `json:"best_box_xyxy"`
		} `json:"result"`
	}
	testutil.JSON(t, testutil.Golden("gdino_tiny", "cat_dog_240", "cat_dog", "case.json"), &g)
	root := t.TempDir()
	src, err := os.ReadFile(testutil.Golden("gdino_tiny", "cat_dog_240", "image.png"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cat_dog_240", "unlisted"} {
		if err := os.MkdirAll(filepath.Join(root, "image"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "image", name+".png"), src, 0o644); err != nil {
			t.Fatal(err)
		}
		savePNG(t, filepath.Join(root, "mask", name+".png"), rectAlpha(240, 180, 80, 10, 160, 60))
	}
	tp, ip := writeAnnotations(t, root, map[string]rw100Entry{
		"cat_dog_240": {ImageName: "refmatte_0007.jpg", Expressions: []string{"a sleepy cat", g.Caption}},
	}, map[string]int{"refmatte_0007.jpg": 1})
	w, gw := testutil.Golden("tiny", "weights"), testutil.Golden("gdino_tiny", "weights")
	out := filepath.Join(root, "out")
	args := []string{"-benchmark", "rw100", "-prompt", "text", "-text-json", tp, "-index-json", ip,
		"-images", filepath.Join(root, "image"), "-gt", filepath.Join(root, "mask"), "-out", out,
		"-sam", filepath.Join(w, "sam.pth"), "-mam", filepath.Join(w, "mam.pth"),
		"-gdino", filepath.Join(gw, "gdino.pth"), "-vocab", filepath.Join(gw, "vocab.txt"), "-quiet"}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1 (unlisted.png fails): %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), `failed: unlisted.png: no text annotation: "unlisted" is not a key of -text-json`) ||
		!strings.Contains(stderr.String(), "predicted 1, kept 0 already predicted, 1 failed") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "| rw100 | 1 |") {
		t.Errorf("table:\n%s", stdout.String())
	}

	m, err := mam.Load(context.Background(), filepath.Join(w, "sam.pth"), filepath.Join(w, "mam.pth"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := loadRGB(filepath.Join(root, "image", "cat_dog_240.png"))
	if err != nil {
		t.Fatal(err)
	}
	b := g.Result.Best
	r, err := m.Matte(context.Background(), img, mam.Prompt{Box: &mam.Box{X0: b[0], Y0: b[1], X1: b[2], Y1: b[3]}}, mam.WithMode(mam.MaskGuide))
	if err != nil {
		t.Fatal(err)
	}
	got := readGrayFloats(t, filepath.Join(out, "cat_dog_240.png"))
	for i, v := range r.Gray().Pix {
		if got[i] != float32(v) {
			t.Fatalf("pixel %d = %v, the best box's maskguide matte %d", i, got[i], v)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "unlisted.png")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unlisted.png: %v", err)
	}
}
