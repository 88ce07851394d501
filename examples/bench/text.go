package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Text prompts as inference_benchmark.py runs them (--benchmark rw100
// --prompt text): the caption of each image comes from RefMatte-RW100's
// annotations, GroundingDINO finds its boxes (generator_tensor_dict_from_text:
// box threshold 0.25, text threshold 0.5, then NMS at IoU 0.8) and the best
// box is SAM's box prompt.

// textThresholds are generator_tensor_dict_from_text's box threshold, text
// threshold and NMS IoU.
var textThresholds = [3]float32{0.25, 0.5, 0.8}

// textAnnotations are RefMatte-RW100's referring expressions: the caption
// of image X is text[stem(X)].Expressions[index[text[stem(X)].ImageName]],
// as the reference picks it (its rw100_text and rw100_index files).
type textAnnotations struct {
	textPath, indexPath string
	text                map[string]textEntry
	index               map[string]int
}

// textEntry is one image's entry in the rw100_text file.
type textEntry struct {
	ImageName   string   `json:"image_name"`
	Expressions []string `json:"expressions"`
}

// loadTextAnnotations reads the rw100_text file (a JSON object
// {"<image stem>": {"image_name": "...", "expressions": ["...", ...]}, ...})
// and the rw100_index file ({"<image_name>": <index into expressions>, ...}).
func loadTextAnnotations(textPath, indexPath string) (*textAnnotations, error) {
	a := &textAnnotations{textPath: textPath, indexPath: indexPath}
	if err := readJSON("-text-json", textPath, &a.text); err != nil {
		return nil, err
	}
	if err := readJSON("-index-json", indexPath, &a.index); err != nil {
		return nil, err
	}
	return a, nil
}

func readJSON(flagName, path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", flagName, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: %w", flagName, path, err)
	}
	return nil
}

// caption returns the expression of the image file named name, or an error
// saying which annotation is missing.
func (a *textAnnotations) caption(name string) (string, error) {
	s := stem(name)
	e, ok := a.text[s]
	if !ok {
		return "", fmt.Errorf("no text annotation: %q is not a key of -text-json %s", s, a.textPath)
	}
	if e.ImageName == "" {
		return "", fmt.Errorf("no text annotation: -text-json %s: %q has no image_name", a.textPath, s)
	}
	i, ok := a.index[e.ImageName]
	if !ok {
		return "", fmt.Errorf("no text annotation: %q (image_name of %q) is not a key of -index-json %s", e.ImageName, s, a.indexPath)
	}
	if i < 0 || i >= len(e.Expressions) {
		return "", fmt.Errorf("no text annotation: -index-json %s gives expression %d of %q, which has %d", a.indexPath, i, s, len(e.Expressions))
	}
	if strings.TrimSpace(e.Expressions[i]) == "" {
		return "", fmt.Errorf("no text annotation: expression %d of %q in -text-json %s is empty", i, s, a.textPath)
	}
	return e.Expressions[i], nil
}
