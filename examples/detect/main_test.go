package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/weights"
)

func tinyArgs(extra ...string) []string {
	w := testutil.Golden("gdino_tiny", "weights")
	return append([]string{"-gdino", filepath.Join(w, "gdino.pth"), "-vocab", filepath.Join(w, "vocab.txt"),
		"-image", testutil.Golden("gdino_tiny", "cat_dog_240", "image.png")}, extra...)
}

// TestDetectCommand runs the command as the README does on the golden
// tiny model and compares its JSON and its dumps with the reference.
func TestDetectCommand(t *testing.T) {
	dir := t.TempDir()
	jsonPath, boxes, dump := filepath.Join(dir, "d.json"), filepath.Join(dir, "boxes.png"), filepath.Join(dir, "dump")
	var stderr bytes.Buffer
	if err := run(context.Background(), tinyArgs("-text", "cat . dog .", "-json", jsonPath, "-o", boxes, "-dump", dump), os.Stdout, &stderr); err != nil {
		t.Fatal(err, stderr.String())
	}
	for _, s := range []string{"load:", "backbone:", "encoder:", "decoder:", "total:"} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("stderr lacks the %q stage time:\n%s", s, stderr.String())
		}
	}
	var got output
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	var want struct {
		Result struct {
			Boxes  [][4]float64 `json:"boxes_xyxy_after_nms"`
			Scores []float64    `json:"scores_after_nms"`
		} `json:"result"`
	}
	testutil.JSON(t, testutil.Golden("gdino_tiny", "cat_dog_240", "cat_dog", "case.json"), &want)
	if len(got.Detections) != len(want.Result.Boxes) {
		t.Fatalf("%d detections, want %d", len(got.Detections), len(want.Result.Boxes))
	}
	for i, d := range got.Detections {
		for k := range 4 {
			if math.Abs(float64(d.Box[k])-want.Result.Boxes[i][k]) > 1e-3 {
				t.Errorf("detection %d: box %v, want %v", i, d.Box, want.Result.Boxes[i])
				break
			}
		}
		if math.Abs(float64(d.Score)-want.Result.Scores[i]) > 1e-4 {
			t.Errorf("detection %d: score %v, want %v", i, d.Score, want.Result.Scores[i])
		}
	}
	f, err := os.Open(boxes)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if m, err := png.Decode(f); err != nil || m.Bounds().Dx() != 240 {
		t.Fatalf("boxes image: %v", err)
	}
	// Dumps: same names, dtypes and shapes as the golden files.
	for _, c := range []struct {
		name, golden string
		tol          float64
	}{
		{"input_ids", "cat_dog/input_ids", 0},
		{"text_self_attention_masks", "cat_dog/text_self_attention_masks", 0},
		{"topk_proposals", "cat_dog/topk_proposals", 0},
		{"swin_s1_out", "swin_s1_out", 1e-4},
		{"enc1_memory", "cat_dog/enc1_memory", 1e-3},
		{"pred_boxes", "cat_dog/pred_boxes", 1e-4},
	} {
		gotT, err := weights.ReadNPYFile(filepath.Join(dump, c.name+".npy"))
		if err != nil {
			t.Fatal(err)
		}
		wantT := testutil.NPY(t, testutil.Golden("gdino_tiny", "cat_dog_240", c.golden+".npy"))
		if gotT.Stored != wantT.Stored {
			t.Errorf("%s: stored as %s, want %s", c.name, gotT.Stored, wantT.Stored)
		}
		testutil.Check(t, c.name, gotT.Float32s(), gotT.Shape, wantT, c.tol, false)
	}
}

func TestDetectCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bomb := filepath.Join(dir, "bomb.png")
	var buf bytes.Buffer
	png.Encode(&buf, image.NewGray(image.Rect(0, 0, 3000, 3000)))
	os.WriteFile(bomb, buf.Bytes(), 0o644)
	notImage := filepath.Join(dir, "x.png")
	os.WriteFile(notImage, []byte("not an image"), 0o644)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no image", []string{"-text", "cat"}, "-image is required"},
		{"no text", tinyArgs(), "-text is required"},
		{"threshold", tinyArgs("-text", "cat", "-box-threshold", "2"), "-box-threshold"},
		{"nan threshold", tinyArgs("-text", "cat", "-nms", "NaN"), "-nms"},
		{"output dir", tinyArgs("-text", "cat", "-json", "/no/such/dir/x.json"), "no directory"},
		{"missing image", []string{"-image", filepath.Join(dir, "none.png"), "-text", "cat"}, "no such file"},
		{"not an image", []string{"-image", notImage, "-text", "cat"}, "unknown format"},
		{"pixel limit", []string{"-image", bomb, "-text", "cat", "-max-pixels", "1000000"}, "limit"},
		{"empty caption", tinyArgs("-text", "\x00\x01"), "empty caption"},
		{"wrong model", append(tinyArgs("-text", "cat"), "-gdino", testutil.Golden("tiny", "weights", "sam.pth")), "missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := run(context.Background(), c.args, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "x.json")); err == nil {
		t.Error("a failed run left an output file")
	}
}
