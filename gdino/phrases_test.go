package gdino_test

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
)

func TestTokenPhraseGolden(t *testing.T) {
	// The model's probabilities are not in the golden data, but the
	// positions above the text threshold are: probabilities of 1 there and
	// 0 elsewhere select the same tokens.
	tk := tokLoad(t)
	for _, name := range tokGoldenCases {
		t.Run(name, func(t *testing.T) {
			var c tokCase
			testutil.JSON(t, filepath.Join(tokGoldenDir(name), "case.json"), &c)
			in, err := tk.Prepare(c.Caption, 256)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Result.PhrasePositions) != len(c.Result.Phrases) || len(c.Result.Phrases) == 0 {
				t.Fatalf("%d position lists, %d phrases", len(c.Result.PhrasePositions), len(c.Result.Phrases))
			}
			for q, positions := range c.Result.PhrasePositions {
				probs := make([]float32, 256) // the model's 256 text columns
				for _, p := range positions {
					probs[p] = 1
				}
				if got := tk.Phrase(in.FullIDs, probs, 0.25); got != c.Result.Phrases[q] {
					t.Errorf("query %d (positions %v): Phrase = %q, want %q", q, positions, got, c.Result.Phrases[q])
				}
			}
		})
	}
}

func TestTokenPhrase(t *testing.T) {
	tk := tokLoad(t)
	in, err := tk.Prepare("cat . dog", 256)
	if err != nil {
		t.Fatal(err)
	}
	ids := in.FullIDs // [CLS] cat . dog . [SEP]
	nan := float32(math.NaN())
	for _, c := range []struct {
		name  string
		probs []float32
		want  string
	}{
		{"none", []float32{0, 0, 0, 0, 0, 0}, ""},
		{"strict threshold", []float32{0.25, 0.25, 0.25, 0.25, 0.25, 0.25}, ""},
		{"all", []float32{1, 1, 1, 1, 1, 1}, "[CLS] cat dog [SEP]"},
		{"cls only", []float32{0.9}, "[CLS]"},
		{"dots removed", []float32{0, 0, 1, 0, 1, 0}, ""},
		{"dog and sep", []float32{0, 0, 0, 0.3, 0.3, 0.3}, "dog [SEP]"},
		{"beyond the sequence ignored", []float32{0, 1, 0, 0, 0, 0, 1, 1, 1}, "cat"},
		{"nan never selected", []float32{nan, 1, nan}, "cat"},
		{"empty probs", nil, ""},
	} {
		if got := tk.Phrase(ids, c.probs, 0.25); got != c.want {
			t.Errorf("%s: Phrase = %q, want %q", c.name, got, c.want)
		}
	}
}
