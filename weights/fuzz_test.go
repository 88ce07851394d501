package weights

import (
	"archive/zip"
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fuzzArchive is a torch zip archive with 256 float storages of 1 KiB,
// keys "0" to "255", that every fuzzed data.pkl is read against.
var fuzzArchive = sync.OnceValues(func() ([]byte, map[string]*zip.File) {
	recs := map[string][]byte{}
	for i := range 256 {
		recs[fmt.Sprint(i)] = bytes.Repeat([]byte{0, 0, 0x80, 0x3f}, 256)
	}
	z := zipWith(nil, recs)
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		panic(err)
	}
	files := map[string]*zip.File{}
	for _, zf := range zr.File {
		if k, ok := strings.CutPrefix(zf.Name, "archive/data/"); ok {
			files[k] = zf
		}
	}
	return z, files
})

// checkPickle runs data through the pickle reader on its own, as the
// data.pkl of a torch zip archive, and as a legacy torch stream, loading
// every tensor it describes. It must never panic.
func checkPickle(data []byte) {
	src := &byteSource{r: bufio.NewReader(bytes.NewReader(data)), left: int64(len(data))}
	v, err := unpickle(src, func(pid any) (any, error) {
		return &pyStorage{dtype: Float32, elemSize: 4, key: "0", numel: 16}, nil
	})
	if err == nil {
		budget := 1 << 16
		toGo(v, &budget)
	}
	z, files := fuzzArchive()
	p := &pthReader{f: bytes.NewReader(z), size: int64(len(z)), records: files, storages: map[string]*pyStorage{}}
	src = &byteSource{r: bufio.NewReader(bytes.NewReader(data)), left: int64(len(data))}
	if root, err := unpickle(src, p.zipPersistent); err == nil {
		loadAll(root, p)
	}
	if root, p, err := openPTH(bytes.NewReader(data), int64(len(data))); err == nil {
		loadAll(root, p)
	}
}

func loadAll(root any, p *pthReader) {
	c := &Checkpoint{entries: map[string]*entry{}, meta: map[string]any{}}
	if err := c.addStateDict(root, p); err != nil {
		return
	}
	c.stripPrefix("module.")
	for _, n := range c.names {
		c.entries[n].load()
	}
}

func FuzzPickle(f *testing.F) {
	// More seeds (the golden checkpoints' data.pkl, legacy streams, hostile
	// pickles) are in testdata/fuzz/FuzzPickle.
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		checkPickle(data)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("%d-byte input took %v", len(data), d)
		}
	})
}

// fuzzSeeds are small pickles of each feature the reader supports.
func fuzzSeeds(t testing.TB) [][]byte {
	f := ptFile{
		Wrap: true, Prefix: "module.", Metadata: true,
		Storages: []ptStorage{{Key: "0", Class: "FloatStorage", Numel: 16}, {Key: "1", Class: "LongStorage", Numel: 2}},
		Tensors: []ptTensor{
			{Name: "w", Storage: "0", Shape: []int{2, 3}},
			{Name: "t", Storage: "0", Offset: 1, Shape: []int{3, 2}, Stride: []int64{1, 3}},
			{Name: "p", Storage: "0", Shape: []int{4}, Param: true},
			{Name: "n", Storage: "1", Shape: []int{}},
		},
	}
	f.Storages[0].Data = make([]byte, 64)
	f.Storages[1].Data = make([]byte, 16)
	seeds := [][]byte{f.pickle(zipPID)}
	f.Legacy = true
	seeds = append(seeds, f.bytes(t))
	seeds = append(seeds, tensorPickle("HalfStorage", 8, 2, []int64{2, 2}, []int64{0, 1}))
	seeds = append(seeds, rawPickle(opGlobal, "posix\nsystem\n", opMark, opShortBinUni, 2, "ls", opTuple, opReduce, opStop))
	return seeds
}

// TestWriteFuzzCorpus writes the seed corpus of FuzzPickle under
// testdata/fuzz/FuzzPickle when MAMGO_WRITE_FUZZ_CORPUS is set.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("MAMGO_WRITE_FUZZ_CORPUS") == "" {
		t.Skip("set MAMGO_WRITE_FUZZ_CORPUS=1 to rewrite testdata/fuzz/FuzzPickle")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzPickle")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{}
	for _, name := range []string{"sam", "mam"} {
		zr, err := zip.OpenReader(filepath.Join("..", "testdata", "golden", "tiny", "weights", name+".pth"))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := zr.Open(name + "/data.pkl")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		zr.Close()
		seeds["golden_"+name] = b
	}
	for i, s := range fuzzSeeds(t) {
		seeds["feature_"+fmt.Sprint(i)] = s
	}
	p := newPK()
	p.op(opEmptyDict).str("x").op(opEmptyList)
	l := p.put()
	p.get(l).op(opAppend).op(opSetItem).op(opStop)
	seeds["memo_cycle"] = p.Bytes()
	seeds["deep_marks"] = rawPickle(bytes.Repeat([]byte{opMark}, 1000), bytes.Repeat([]byte{opTuple}, 1000), opStop)
	seeds["stack_global"] = rawPickle(opShortBinUni, 8, "builtins", opShortBinUni, 4, "eval", opStackGlobal, opStop)
	for name, b := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", string(b))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
