package gdino_test

import (
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/gdino"
	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/weights"
)

// tokGoldenCases are the captions of the golden GroundingDINO run
// (shared/golden/gdino_tiny/cat_dog_240, text files only).
var tokGoldenCases = []string{"cat_dog", "a_sleepy_cat", "whiskered_kitty_caf_sofa"}

// tokCase is the part of a golden case.json the text side needs.
type tokCase struct {
	Caption      string   `json:"caption"`
	Preprocessed string   `json:"preprocessed_caption"`
	Tokens       []string `json:"tokens"`
	NTokens      int      `json:"n_tokens"`
	SpecialIDs   []int    `json:"special_token_ids"`
	Result       struct {
		PhrasePositions [][]int  `json:"phrase_token_positions"`
		Phrases         []string `json:"phrases"`
		InputIDs        []int    `json:"input_ids_untruncated"`
	} `json:"result"`
}

func tokGoldenDir(name string) string {
	return filepath.Join("testdata", "golden", "cat_dog_240", name)
}

// tokInts reads an int64 .npy file as ints.
func tokInts(t *testing.T, x *weights.Tensor) []int {
	t.Helper()
	if x.I64 == nil {
		t.Fatalf("not an integer array (%s)", x.Stored)
	}
	out := make([]int, len(x.I64))
	for i, v := range x.I64 {
		out[i] = int(v)
	}
	return out
}

// tokBools reads a bool .npy file (held as 0/1 float32) as bools.
func tokBools(t *testing.T, x *weights.Tensor) []bool {
	t.Helper()
	if x.Stored != weights.Bool {
		t.Fatalf("not a bool array (%s)", x.Stored)
	}
	out := make([]bool, len(x.F32))
	for i, v := range x.F32 {
		out[i] = v != 0
	}
	return out
}

func TestTokenGolden(t *testing.T) {
	tk := tokLoad(t)
	for _, name := range tokGoldenCases {
		t.Run(name, func(t *testing.T) {
			dir := tokGoldenDir(name)
			var c tokCase
			testutil.JSON(t, filepath.Join(dir, "case.json"), &c)
			npy := func(f string) *weights.Tensor { return testutil.NPY(t, filepath.Join(dir, f+".npy")) }

			if got := gdino.PreprocessCaption(c.Caption); got != c.Preprocessed {
				t.Errorf("PreprocessCaption(%q) = %q, want %q", c.Caption, got, c.Preprocessed)
			}
			if d := tokFirstDiff(tk.Tokenize(c.Preprocessed), c.Tokens[1:len(c.Tokens)-1]); d != "" {
				t.Errorf("Tokenize: %s", d)
			}
			if d := tokFirstDiff(tk.SpecialTokenIDs(), c.SpecialIDs); d != "" {
				t.Errorf("SpecialTokenIDs: %s", d)
			}
			in, err := tk.Prepare(c.Caption, 256)
			if err != nil {
				t.Fatal(err)
			}
			n := c.NTokens
			ids := npy("input_ids")
			if !slices.Equal(ids.Shape, []int{1, n}) {
				t.Fatalf("input_ids shape %v", ids.Shape)
			}
			if d := tokFirstDiff(in.IDs, tokInts(t, ids)); d != "" {
				t.Errorf("IDs: %s", d)
			}
			if d := tokFirstDiff(in.FullIDs, c.Result.InputIDs); d != "" {
				t.Errorf("FullIDs: %s", d)
			}
			for i, id := range in.IDs {
				if tok := tk.IDToToken(id); tok != c.Tokens[i] {
					t.Errorf("token %d = %q, want %q", i, tok, c.Tokens[i])
				}
			}
			if d := tokFirstDiff(in.PositionIDs, tokInts(t, npy("position_ids"))); d != "" {
				t.Errorf("PositionIDs: %s", d)
			}
			if d := tokFirstDiff(in.SelfAttnMask, tokBools(t, npy("text_self_attention_masks"))); d != "" {
				t.Errorf("SelfAttnMask: %s", d)
			}
			cate := npy("cate_to_token_mask")
			if len(cate.Shape) != 2 || cate.Shape[0] != len(in.CateToToken) || cate.Shape[1] != n {
				t.Fatalf("CateToToken has %d rows, golden shape %v", len(in.CateToToken), cate.Shape)
			}
			want := tokBools(t, cate)
			for r, row := range in.CateToToken {
				if d := tokFirstDiff(row, want[r*n:(r+1)*n]); d != "" {
					t.Errorf("CateToToken row %d: %s", r, d)
				}
			}
			// The tokenizer's attention mask is all 1 and token types all 0.
			for i, v := range tokInts(t, npy("attention_mask")) {
				if v != 1 {
					t.Errorf("golden attention_mask[%d] = %d", i, v)
				}
			}
			for i, v := range tokInts(t, npy("token_type_ids")) {
				if v != 0 {
					t.Errorf("golden token_type_ids[%d] = %d", i, v)
				}
			}
			// The low-level function agrees on the full sequence.
			mask, pos, rows := gdino.SubSentenceMasks(in.FullIDs, tk.SpecialTokenIDs())
			if !slices.Equal(mask, in.SelfAttnMask) || !slices.Equal(pos, in.PositionIDs) || len(rows) != len(in.CateToToken) {
				t.Error("SubSentenceMasks differs from Prepare")
			}
		})
	}
}

// tokNaiveMasks is generate_masks_with_special_tokens_and_transfer_map
// written as literally as possible, for comparison.
func tokNaiveMasks(ids, special []int) ([][]bool, []int, [][]bool) {
	n := len(ids)
	mask := make([][]bool, n)
	for i := range mask {
		mask[i] = make([]bool, n)
		mask[i][i] = true
	}
	pos := make([]int, n)
	var cate [][]bool
	prev := 0
	for col := range n {
		if !slices.Contains(special, ids[col]) {
			continue
		}
		if col == 0 || col == n-1 {
			mask[col][col] = true
			pos[col] = 0
		} else {
			for i := prev + 1; i <= col; i++ {
				for j := prev + 1; j <= col; j++ {
					mask[i][j] = true
				}
				pos[i] = i - prev - 1
			}
			row := make([]bool, n)
			for j := prev + 1; j < col; j++ {
				row[j] = true
			}
			cate = append(cate, row)
		}
		prev = col
	}
	return mask, pos, cate
}

func TestTokenSubSentenceMasks(t *testing.T) {
	const cls, sep, dot, qm = 101, 102, 1012, 1029
	special := []int{cls, sep, dot, qm}
	type want struct {
		pos  []int
		cate [][]int // marked columns per row
	}
	for _, c := range []struct {
		name string
		ids  []int
		want want
	}{
		{"cat . dog .", []int{cls, 4937, dot, 3899, dot, sep}, want{[]int{0, 0, 1, 0, 1, 0}, [][]int{{1}, {3}}}},
		{"? then .", []int{cls, 4937, qm, dot, sep}, want{[]int{0, 0, 1, 0, 0}, [][]int{{1}, {}}}},
		{"no separator", []int{cls, 4937, 3899, sep}, want{[]int{0, 0, 0, 0}, nil}},
		{"trailing phrase without dot", []int{cls, 4937, dot, 3899, 3899, sep}, want{[]int{0, 0, 1, 0, 0, 0}, [][]int{{1}}}},
		{"empty", nil, want{[]int{}, nil}},
		{"one", []int{dot}, want{[]int{0}, nil}},
		{"dot first", []int{dot, 4937, dot}, want{[]int{0, 0, 0}, nil}},
	} {
		t.Run(c.name, func(t *testing.T) {
			mask, pos, cate := gdino.SubSentenceMasks(c.ids, special)
			if d := tokFirstDiff(pos, c.want.pos); d != "" {
				t.Errorf("position ids %v: %s", pos, d)
			}
			if len(cate) != len(c.want.cate) {
				t.Fatalf("%d cate rows, want %d", len(cate), len(c.want.cate))
			}
			for r, cols := range c.want.cate {
				row := make([]bool, len(c.ids))
				for _, j := range cols {
					row[j] = true
				}
				if d := tokFirstDiff(cate[r], row); d != "" {
					t.Errorf("cate row %d: %s", r, d)
				}
			}
			nm, _, _ := tokNaiveMasks(c.ids, special)
			if d := tokFirstDiff(mask, slices.Concat(nm...)); d != "" {
				t.Errorf("mask: %s", d)
			}
		})
	}
}

func TestTokenSubSentenceMasksRandom(t *testing.T) {
	// Random sequences against the literal transcription.
	rng := rand.New(rand.NewPCG(1, 2))
	special := []int{101, 102, 1012, 1029}
	alphabet := []int{101, 102, 1012, 1029, 7, 8, 9}
	for range 500 {
		ids := make([]int, rng.IntN(20))
		for i := range ids {
			ids[i] = alphabet[rng.IntN(len(alphabet))]
		}
		mask, pos, cate := gdino.SubSentenceMasks(ids, special)
		nm, npos, ncate := tokNaiveMasks(ids, special)
		if d := tokFirstDiff(mask, slices.Concat(nm...)); d != "" {
			t.Fatalf("%v: mask: %s", ids, d)
		}
		if d := tokFirstDiff(pos, npos); d != "" {
			t.Fatalf("%v: position ids: %s", ids, d)
		}
		if d := tokFirstDiff(slices.Concat(cate...), slices.Concat(ncate...)); d != "" || len(cate) != len(ncate) {
			t.Fatalf("%v: cate: %s", ids, d)
		}
	}
}

func TestTokenPrepare(t *testing.T) {
	tk := tokLoad(t)
	t.Run("cat . dog", func(t *testing.T) {
		in, err := tk.Prepare("cat . dog", 256)
		if err != nil {
			t.Fatal(err)
		}
		if d := tokFirstDiff(in.PositionIDs, []int{0, 0, 1, 0, 1, 0}); d != "" {
			t.Errorf("position ids %v: %s", in.PositionIDs, d)
		}
		if d := tokFirstDiff(in.IDs, []int{101, 4937, 1012, 3899, 1012, 102}); d != "" {
			t.Errorf("ids: %s", d)
		}
	})
	t.Run("question mark then dot", func(t *testing.T) {
		in, err := tk.Prepare("cat?", 256)
		if err != nil {
			t.Fatal(err)
		}
		if len(in.CateToToken) != 2 || slices.Contains(in.CateToToken[1], true) {
			t.Errorf("CateToToken = %v, want a second, empty row", in.CateToToken)
		}
	})
	for _, c := range []string{"", " ", " \t\n\r\u3000 ", "\x00", "\x00\x07\ufffd", "\xff\xfe"} {
		if _, err := tk.Prepare(c, 256); !errors.Is(err, gdino.ErrEmptyCaption) {
			t.Errorf("Prepare(%q) error = %v, want ErrEmptyCaption", c, err)
		}
	}
	for _, c := range []string{".", "...!?", "?", " . "} {
		in, err := tk.Prepare(c, 256)
		if err != nil {
			t.Errorf("Prepare(%q): %v", c, err)
			continue
		}
		if in.IDs[0] != 101 || in.IDs[len(in.IDs)-1] != 102 {
			t.Errorf("Prepare(%q) = %v", c, in.IDs)
		}
	}
	if _, err := tk.Prepare("cat", 0); err == nil {
		t.Error("Prepare with maxLen 0 succeeded")
	}
}

func TestTokenPrepareTruncated(t *testing.T) {
	tk := tokLoad(t)
	// 3 tokens per phrase ("cat dog ."): 300 phrases, 902 tokens in all.
	caption := strings.Repeat("cat dog . ", 300)
	const maxLen = 256
	in, err := tk.Prepare(caption, maxLen)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.FullIDs) != 902 || len(in.IDs) != maxLen || len(in.PositionIDs) != maxLen || len(in.SelfAttnMask) != maxLen*maxLen {
		t.Fatalf("sizes: full %d, ids %d, pos %d, mask %d", len(in.FullIDs), len(in.IDs), len(in.PositionIDs), len(in.SelfAttnMask))
	}
	if last := in.IDs[maxLen-1]; last == tk.SEPID() {
		t.Error("last kept id is [SEP]")
	}
	if !slices.Equal(in.IDs, in.FullIDs[:maxLen]) {
		t.Error("IDs is not the start of FullIDs")
	}
	// Masks computed on the full sequence, then cut.
	mask, pos, cate := gdino.SubSentenceMasks(in.FullIDs, tk.SpecialTokenIDs())
	n := len(in.FullIDs)
	for i := range maxLen {
		if d := tokFirstDiff(in.SelfAttnMask[i*maxLen:(i+1)*maxLen], mask[i*n:i*n+maxLen]); d != "" {
			t.Fatalf("mask row %d: %s", i, d)
		}
	}
	if d := tokFirstDiff(in.PositionIDs, pos[:maxLen]); d != "" {
		t.Errorf("position ids: %s", d)
	}
	// Phrase k has its tokens at 1+3k, 2+3k and its "." at 3+3k: the rows
	// are those of the 85 phrases that begin inside the window, cut to it.
	if len(in.CateToToken) != 85 {
		t.Errorf("%d cate rows, want 85", len(in.CateToToken))
	}
	for r, row := range in.CateToToken {
		if d := tokFirstDiff(row, cate[r][:maxLen]); d != "" {
			t.Fatalf("cate row %d: %s", r, d)
		}
	}

	// A phrase straddling the cut keeps its row, cut.
	in, err = tk.Prepare(strings.Repeat("cat ", 300), maxLen)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.CateToToken) != 1 || len(in.CateToToken[0]) != maxLen || in.CateToToken[0][0] || !in.CateToToken[0][maxLen-1] {
		t.Errorf("straddling phrase: %d rows", len(in.CateToToken))
	}
	if in.PositionIDs[maxLen-1] != maxLen-2 {
		t.Errorf("last position id %d, want %d", in.PositionIDs[maxLen-1], maxLen-2)
	}
}

func TestTokenPrepareHuge(t *testing.T) {
	// 1 MB captions: bounded work and memory (the masks are cut before they
	// are built).
	tk := tokLoad(t)
	for _, s := range []string{strings.Repeat("a . ", 1<<18), strings.Repeat("ab", 1<<19), strings.Repeat("ab ", 1<<18), strings.Repeat("?", 1<<20)} {
		in, err := tk.Prepare(s, 256)
		if err != nil {
			t.Fatal(err)
		}
		n := len(in.IDs)
		if n > 256 || len(in.SelfAttnMask) != n*n || len(in.CateToToken) > n {
			t.Fatalf("sizes %d %d %d", len(in.IDs), len(in.SelfAttnMask), len(in.CateToToken))
		}
	}
}
