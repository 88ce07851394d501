package gdino_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/mam-go/mam-go/gdino"
)

// tokVocabPath is bert-base-uncased's vocab.txt (30522 lines).
var tokVocabPath = filepath.Join("testdata", "vocab.txt")

var (
	tokOnce   sync.Once
	tokShared *gdino.Tokenizer
	tokErr    error
)

// tokLoad returns the tokenizer of the real vocabulary, loaded once.
func tokLoad(t testing.TB) *gdino.Tokenizer {
	t.Helper()
	tokOnce.Do(func() { tokShared, tokErr = gdino.LoadVocab(tokVocabPath) })
	if tokErr != nil {
		t.Fatal(tokErr)
	}
	return tokShared
}

// tokFirstDiff returns a description of the first difference between got
// and want, or "" when they are equal.
func tokFirstDiff[T comparable](got, want []T) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at [%d]: got %v, want %v", i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("length %d, want %d", len(got), len(want))
	}
	return ""
}

func TestTokenizerVocab(t *testing.T) {
	tk := tokLoad(t)
	if n := tk.VocabSize(); n != 30522 {
		t.Errorf("VocabSize = %d, want 30522", n)
	}
	for _, c := range []struct {
		name string
		got  int
		want int
	}{{"CLS", tk.CLSID(), 101}, {"SEP", tk.SEPID(), 102}, {"UNK", tk.UNKID(), 100}, {"PAD", tk.PADID(), 0}} {
		if c.got != c.want {
			t.Errorf("%sID = %d, want %d", c.name, c.got, c.want)
		}
	}
	if d := tokFirstDiff(tk.SpecialTokenIDs(), []int{101, 102, 1012, 1029}); d != "" {
		t.Errorf("SpecialTokenIDs: %s", d)
	}
	for id, want := range map[int]string{0: "[PAD]", 101: "[CLS]", 1012: ".", 30521: "##～", -1: "[UNK]", 30522: "[UNK]"} {
		if got := tk.IDToToken(id); got != want {
			t.Errorf("IDToToken(%d) = %q, want %q", id, got, want)
		}
	}
	if id, ok := tk.TokenID("cat"); !ok || id != 4937 {
		t.Errorf("TokenID(cat) = %d, %v; want 4937, true", id, ok)
	}
	if _, ok := tk.TokenID("no-such-token"); ok {
		t.Error("TokenID(no-such-token) found")
	}
}

func TestTokenizeCases(t *testing.T) {
	tk := tokLoad(t)
	long := strings.Repeat("a", 101)
	cases := []struct {
		name, text string
		want       []string
	}{
		{"simple", "cat . dog .", []string{"cat", ".", "dog", "."}},
		{"upper", "A Sleepy CAT", []string{"a", "sleepy", "cat"}},
		{"wordpiece", "whiskered kitty, café sofa?.", []string{"w", "##his", "##ker", "##ed", "kitty", ",", "cafe", "sofa", "?", "."}},
		{"accents", "Café Crème", []string{"cafe", "cr", "##eme"}},
		{"accents decomposed", "Cafe\u0301 Cre\u0300me", []string{"cafe", "cr", "##eme"}},
		{"accent only word", "\u0301 cat", []string{"cat"}},
		{"cjk", "猫和狗", []string{"[UNK]", "和", "[UNK]"}},
		{"cjk between latin", "a和b", []string{"a", "和", "b"}},
		{"punct run", "cat!!!...dog", []string{"cat", "!", "!", "!", ".", ".", ".", "dog"}},
		{"only punct", "...!?", []string{".", ".", ".", "!", "?"}},
		{"control and nul dropped", "ca\x00t\x07 d\x1fog\u200b", []string{"cat", "dog"}},
		{"fffd dropped", "ca\ufffdt", []string{"cat"}},
		{"tabs newlines", "cat\tdog\nbird\r\nfish", []string{"cat", "dog", "bird", "fish"}},
		{"unicode spaces", "cat\u00a0dog\u3000bird\u2028fish\u2029x", []string{"cat", "dog", "bird", "fish", "x"}},
		{"100 chars", strings.Repeat("a", 100), nil}, // filled below
		{"101 chars", long, []string{"[UNK]"}},
		{"101 chars then punct", long + ".cat", []string{"[UNK]", ".", "cat"}},
		{"unknown char makes the word unknown", "cat☃dog", []string{"[UNK]"}},
		{"unknown char spaced", "cat ☃ dog", []string{"cat", "[UNK]", "dog"}},
		{"literal specials kept", "a [MASK] b[CLS]c [SEP]", []string{"a", "[MASK]", "b", "[CLS]", "c", "[SEP]"}},
		{"lowercase specials are text", "[cls]", []string{"[", "cl", "##s", "]"}},
		{"invalid utf8", "ca\xfft \xc3", []string{"cat"}},
		{"dotted I", "İstanbul", []string{"istanbul"}},
		// Tokenize lowercases character by character, as transformers does
		// before its basic tokenizer: no final sigma (PreprocessCaption has it).
		{"capital sigma", "ΟΔΟΣ", []string{"ο", "##δ", "##ο", "##σ"}},
		{"final sigma", "οδος", []string{"ο", "##δ", "##ος"}},
		{"empty", "", nil},
		{"spaces", " \t\n ", nil},
		{"apostrophe", "don't", []string{"don", "'", "t"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := tk.Tokenize(c.text)
			want := c.want
			if c.name == "100 chars" {
				// Not [UNK]: WordPiece runs ("a" then "##a"...), whatever it finds.
				if len(got) == 0 || got[0] == "[UNK]" {
					t.Fatalf("Tokenize(100 a) = %q", got)
				}
				return
			}
			if d := tokFirstDiff(got, want); d != "" {
				t.Errorf("Tokenize(%q) = %q: %s", c.text, got, d)
			}
			ids := tk.Encode(c.text)
			if len(ids) != len(got)+2 || ids[0] != tk.CLSID() || ids[len(ids)-1] != tk.SEPID() {
				t.Fatalf("Encode(%q) = %v", c.text, ids)
			}
			for i, tok := range got {
				if tk.IDToToken(ids[i+1]) != tok {
					t.Errorf("Encode(%q)[%d] = %d (%q), want the id of %q", c.text, i+1, ids[i+1], tk.IDToToken(ids[i+1]), tok)
				}
			}
		})
	}
}

func TestTokenizerPreprocessCaption(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"cat . dog", "cat . dog."},
		{"cat . dog .", "cat . dog ."},
		{"  A Sleepy Cat\n", "a sleepy cat."},
		{"whiskered kitty, café sofa?", "whiskered kitty, café sofa?."},
		{"", "."},
		{" \t\u3000\x1c", "."},
		{"ΟΔΟΣ ΣΑ", "οδος σα."},
		{"İ", "i\u0307."},
		{"cat.", "cat."},
	} {
		if got := gdino.PreprocessCaption(c.in); got != c.want {
			t.Errorf("PreprocessCaption(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestTokenizerDecode(t *testing.T) {
	tk := tokLoad(t)
	ids := func(toks ...string) []int {
		out := make([]int, len(toks))
		for i, s := range toks {
			id, ok := tk.TokenID(s)
			if !ok {
				t.Fatalf("token %q not in the vocabulary", s)
			}
			out[i] = id
		}
		return out
	}
	for _, c := range []struct {
		toks []string
		want string
	}{
		{[]string{"[CLS]", "cat", "[SEP]"}, "[CLS] cat [SEP]"},
		{[]string{"w", "##his", "##ker", "##ed", "kitty"}, "whiskered kitty"},
		{[]string{"##his", "kitty"}, "##his kitty"},
		{[]string{"[CLS]", "##his", "##ed", ".", "[SEP]"}, "[CLS]hised. [SEP]"},
		{[]string{"dog", ".", "[SEP]"}, "dog. [SEP]"},
		{[]string{"a", ".", ".", "."}, "a..."},
		// clean_up_tokenization, rule by rule.
		{[]string{"a", ".", "b"}, "a. b"},
		{[]string{"a", "?", "b"}, "a? b"},
		{[]string{"a", "!", "b"}, "a! b"},
		{[]string{"a", ",", "b"}, "a, b"},
		{[]string{"a", "'", "b"}, "a'b"},
		{[]string{"don", "'", "t"}, "don't"},
		{[]string{"do", "n", "##'", "##t"}, "don't"}, // "do n't"
		{[]string{"i", "'", "##m"}, "i'm"},           // "i 'm"
		{[]string{"it", "'", "##s"}, "it's"},
		{[]string{"we", "'", "##ve"}, "we've"},
		{[]string{"you", "'", "##re"}, "you're"},
		{nil, ""},
	} {
		if got := tk.Decode(ids(c.toks...)); got != c.want {
			t.Errorf("Decode(%q) = %q, want %q", c.toks, got, c.want)
		}
	}
	if got := tk.Decode([]int{-5, 4937, 1 << 40}); got != "[UNK] cat [UNK]" {
		t.Errorf("Decode(out of range) = %q", got)
	}
}

func TestTokenizerVocabErrors(t *testing.T) {
	full, err := os.ReadFile(tokVocabPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(full), "\n")
	for _, c := range []struct {
		name, vocab string
		bad         bool
	}{
		{"empty", "", true},
		{"not utf8", "[PAD]\n\xff\n", true},
		{"cut before [CLS]", strings.Join(lines[:101], ""), true},
		{"cut before dot", strings.Join(lines[:1012], ""), true},
		{"cut before ?", strings.Join(lines[:1029], ""), true},
		{"cut after ?", strings.Join(lines[:1030], ""), false},
		{"cut mid-line", string(full[:len(full)/2]), false},
		{"minimal", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n.\n?\n", false},
		{"minimal CRLF no final newline", "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n.\r\n?", false},
		{"minimal CR", "[PAD]\r[UNK]\r[CLS]\r[SEP]\r.\r?\r", false},
		{"no [PAD]", "[UNK]\n[CLS]\n[SEP]\n.\n?\n", true},
		{"no [UNK]", "[PAD]\n[CLS]\n[SEP]\n.\n?\n", true},
		{"trailing space is another token", "[PAD] \n[UNK]\n[CLS]\n[SEP]\n.\n?\n", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tk, err := gdino.NewTokenizer(strings.NewReader(c.vocab))
			if c.bad {
				if !errors.Is(err, gdino.ErrBadVocab) {
					t.Fatalf("err = %v, want ErrBadVocab", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Whatever the vocabulary lacks is [UNK]; nothing panics.
			toks := tk.Tokenize("whiskered kitty, café sofa? 猫 [MASK]")
			ids := tk.Encode("whiskered kitty, café sofa? 猫 [MASK]")
			if len(ids) != len(toks)+2 {
				t.Errorf("Encode has %d ids for %d tokens", len(ids), len(toks))
			}
			if _, err := tk.Prepare("cat . dog", 256); err != nil {
				t.Error(err)
			}
		})
	}
	// Truncated mid-way: the tokens it still has keep their ids, the others are [UNK].
	tk, err := gdino.NewTokenizer(strings.NewReader(strings.Join(lines[:2000], "")))
	if err != nil {
		t.Fatal(err)
	}
	if d := tokFirstDiff(tk.Encode("the cat ."), []int{101, 1996, 100, 1012, 102}); d != "" {
		t.Errorf("truncated vocabulary: %s", d)
	}
	if _, err := gdino.LoadVocab(filepath.Join("testdata", "no-such-vocab.txt")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadVocab(missing) = %v", err)
	}
}

func TestTokenizerVocabDuplicates(t *testing.T) {
	// A token on two lines takes the id of the last; the first id decodes as [UNK].
	tk, err := gdino.NewTokenizer(strings.NewReader("[PAD]\n[UNK]\n[CLS]\n[SEP]\n.\n?\ncat\ncat\n"))
	if err != nil {
		t.Fatal(err)
	}
	if tk.VocabSize() != 8 {
		t.Errorf("VocabSize = %d, want 8", tk.VocabSize())
	}
	if d := tokFirstDiff(tk.Encode("cat"), []int{2, 7, 3}); d != "" {
		t.Errorf("Encode(cat): %s", d)
	}
	if got := tk.IDToToken(6); got != "[UNK]" {
		t.Errorf("IDToToken(6) = %q, want [UNK]", got)
	}
}

func TestTokenizerLongInput(t *testing.T) {
	tk := tokLoad(t)
	// 1 MB without a space, 1 MB of short words, 1 MB of sigmas and marks:
	// all must finish quickly (linear time).
	for _, s := range []string{
		strings.Repeat("abcdefgh", 1<<17),
		strings.Repeat("cat . ", 1<<17),
		strings.Repeat("ΑΣ'Σ\u0301", 1<<16),
		strings.Repeat("[", 1<<20),
		strings.Repeat("\xff", 1<<20),
	} {
		ids := tk.Encode(s)
		if ids[0] != tk.CLSID() || ids[len(ids)-1] != tk.SEPID() {
			t.Fatal("Encode does not start with [CLS] and end with [SEP]")
		}
		_ = gdino.PreprocessCaption(s)
	}
}

func TestTokenizerConcurrent(t *testing.T) {
	tk := tokLoad(t)
	want := tk.Encode("whiskered kitty, café sofa?.")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if d := tokFirstDiff(tk.Encode("whiskered kitty, café sofa?."), want); d != "" {
					t.Error(d)
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzTokenize(f *testing.F) {
	for _, s := range []string{
		"", "cat . dog .", "whiskered kitty, café sofa?", "猫和狗", "\x00\xff\xfe", "[CLS][SEP][MASK]",
		"ΟΔΟΣ'Σ.", "İ\u0301\u0300", strings.Repeat("a", 150), "cat!!!...dog", "\u2028\u3000\x1c",
	} {
		f.Add(s)
	}
	tk := tokLoad(f)
	f.Fuzz(func(t *testing.T, s string) {
		toks := tk.Tokenize(s)
		ids := tk.Encode(s)
		if len(ids) < 2 || ids[0] != tk.CLSID() || ids[len(ids)-1] != tk.SEPID() {
			t.Fatalf("Encode(%q) = %v", s, ids)
		}
		if len(ids) != len(toks)+2 {
			t.Fatalf("Encode(%q): %d ids for %d tokens", s, len(ids), len(toks))
		}
		for _, id := range ids {
			if id < 0 || id >= tk.VocabSize() {
				t.Fatalf("id %d out of range", id)
			}
		}
		if len(toks) > utf8.RuneCountInString(s) {
			t.Fatalf("%d tokens from %d characters", len(toks), utf8.RuneCountInString(s))
		}
		_ = tk.Decode(ids)
		in, err := tk.Prepare(s, 256)
		if err != nil {
			if !errors.Is(err, gdino.ErrEmptyCaption) {
				t.Fatal(err)
			}
			return
		}
		n := len(in.IDs)
		if n > 256 || len(in.PositionIDs) != n || len(in.SelfAttnMask) != n*n {
			t.Fatalf("Prepare(%q): sizes %d %d %d", s, n, len(in.PositionIDs), len(in.SelfAttnMask))
		}
	})
}

func BenchmarkTokenize(b *testing.B) {
	tk := tokLoad(b)
	text := "whiskered kitty, café sofa? a sleepy cat . a dog on the grass . Crème brûlée!"
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		_ = tk.Encode(text)
	}
}
