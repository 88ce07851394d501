package weights

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func f32Bytes(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func f64Bytes(v ...float64) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return b
}

func u16Bytes(v ...uint16) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, x)
	}
	return b
}

func i64Bytes(v ...int64) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, uint64(x))
	}
	return b
}

func i32Bytes(v ...int32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	return b
}

type want struct {
	shape  []int
	stored DType
	f32    []float32
	i64    []int64
}

// openBytes writes f to a temporary .pth file and opens it.
func openBytes(t *testing.T, data []byte) (*Checkpoint, error) {
	t.Helper()
	// not t.TempDir(): its name holds the test's name, which error
	// messages would then contain.
	dir, err := os.MkdirTemp("", "pth")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "x.pth")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return OpenCheckpoint(path)
}

func TestPTHRoundTrip(t *testing.T) {
	iota6 := f32Bytes(0, 1, 2, 3, 4, 5)
	cases := []struct {
		name  string
		file  ptFile
		wants map[string]want
		meta  map[string]any
	}{
		{
			name: "float32 matrix, int64 scalar",
			file: ptFile{
				Storages: []ptStorage{{Key: "0", Class: "FloatStorage", Numel: 6, Data: iota6}, {Key: "1", Class: "LongStorage", Numel: 1, Data: i64Bytes(42)}},
				Tensors:  []ptTensor{{Name: "w", Storage: "0", Shape: []int{2, 3}}, {Name: "bn.num_batches_tracked", Storage: "1", Shape: []int{}}},
			},
			wants: map[string]want{
				"w":                      {[]int{2, 3}, Float32, []float32{0, 1, 2, 3, 4, 5}, nil},
				"bn.num_batches_tracked": {[]int{}, Int64, nil, []int64{42}},
			},
		},
		{
			name: "transposed, offset, shared and broadcast views of one storage",
			file: ptFile{
				Storages: []ptStorage{{Key: "s", Class: "FloatStorage", Numel: 6, Data: iota6}},
				Tensors: []ptTensor{
					{Name: "t", Storage: "s", Shape: []int{3, 2}, Stride: []int64{1, 3}},
					{Name: "tail", Storage: "s", Offset: 2, Shape: []int{2}},
					{Name: "all", Storage: "s", Shape: []int{6}},
					{Name: "rows", Storage: "s", Offset: 3, Shape: []int{2, 3}, Stride: []int64{0, 1}},
					{Name: "cols", Storage: "s", Shape: []int{2, 2}, Stride: []int64{3, 2}},
					{Name: "empty", Storage: "s", Offset: 6, Shape: []int{0, 3}},
				},
			},
			wants: map[string]want{
				"t":     {[]int{3, 2}, Float32, []float32{0, 3, 1, 4, 2, 5}, nil},
				"tail":  {[]int{2}, Float32, []float32{2, 3}, nil},
				"all":   {[]int{6}, Float32, []float32{0, 1, 2, 3, 4, 5}, nil},
				"rows":  {[]int{2, 3}, Float32, []float32{3, 4, 5, 3, 4, 5}, nil},
				"cols":  {[]int{2, 2}, Float32, []float32{0, 2, 3, 5}, nil},
				"empty": {[]int{0, 3}, Float32, []float32{}, nil},
			},
		},
		{
			name: "half, bfloat16, double, int32, byte, bool, parameter",
			file: ptFile{
				Storages: []ptStorage{
					{Key: "h", Class: "HalfStorage", Numel: 5, Data: u16Bytes(0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001)},
					{Key: "b", Class: "BFloat16Storage", Numel: 2, Data: u16Bytes(0x3f80, 0xc060)},
					{Key: "d", Class: "DoubleStorage", Numel: 2, Data: f64Bytes(1.5, -2.25)},
					{Key: "i", Class: "IntStorage", Numel: 2, Data: i32Bytes(7, -8)},
					{Key: "u", Class: "ByteStorage", Numel: 2, Data: []byte{0, 255}},
					{Key: "q", Class: "BoolStorage", Numel: 2, Data: []byte{1, 0}},
					{Key: "p", Class: "FloatStorage", Numel: 2, Data: f32Bytes(-1, 1)},
				},
				Tensors: []ptTensor{
					{Name: "h", Storage: "h", Shape: []int{5}},
					{Name: "b", Storage: "b", Shape: []int{2}},
					{Name: "d", Storage: "d", Shape: []int{2}},
					{Name: "i", Storage: "i", Shape: []int{2}},
					{Name: "u", Storage: "u", Shape: []int{2}},
					{Name: "q", Storage: "q", Shape: []int{2}},
					{Name: "p", Storage: "p", Shape: []int{1, 2}, Param: true},
				},
			},
			wants: map[string]want{
				"h": {[]int{5}, Float16, []float32{1, -2, 0.5, 65504, float32(math.Ldexp(1, -24))}, nil},
				"b": {[]int{2}, BFloat16, []float32{1, -3.5}, nil},
				"d": {[]int{2}, Float64, []float32{1.5, -2.25}, nil},
				"i": {[]int{2}, Int32, nil, []int64{7, -8}},
				"u": {[]int{2}, Uint8, []float32{0, 255}, nil},
				"q": {[]int{2}, Bool, []float32{1, 0}, nil},
				"p": {[]int{1, 2}, Float32, []float32{-1, 1}, nil},
			},
		},
		{
			name: "MAM checkpoint dict, module. prefix, _metadata",
			file: ptFile{
				Wrap: true, Prefix: "module.", Metadata: true,
				Storages: []ptStorage{{Key: "0", Class: "FloatStorage", Numel: 6, Data: iota6}, {Key: "1", Class: "LongStorage", Numel: 1, Data: i64Bytes(3)}},
				Tensors:  []ptTensor{{Name: "conv1.module.weight_bar", Storage: "0", Shape: []int{1, 2, 3, 1}}, {Name: "bn1.num_batches_tracked", Storage: "1", Shape: []int{}}},
			},
			wants: map[string]want{
				"conv1.module.weight_bar": {[]int{1, 2, 3, 1}, Float32, []float32{0, 1, 2, 3, 4, 5}, nil},
				"bn1.num_batches_tracked": {[]int{}, Int64, nil, []int64{3}},
			},
			meta: map[string]any{"iter": int64(7), "loss": 0.25},
		},
	}
	for _, tc := range cases {
		for _, legacy := range []bool{false, true} {
			name := tc.name + map[bool]string{false: " (zip)", true: " (legacy)"}[legacy]
			t.Run(name, func(t *testing.T) {
				f := tc.file
				f.Legacy = legacy
				c, err := openBytes(t, f.bytes(t))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				wantFormat := FormatPTH
				if legacy {
					wantFormat = FormatPTHLegacy
				}
				if c.Format() != wantFormat {
					t.Errorf("format %s, want %s", c.Format(), wantFormat)
				}
				if len(c.Names()) != len(tc.wants) {
					t.Errorf("names %v, want %d tensors", c.Names(), len(tc.wants))
				}
				for n, w := range tc.wants {
					info, ok := c.Info(n)
					if !ok {
						t.Errorf("%q missing from %v", n, c.Names())
						continue
					}
					if !reflect.DeepEqual(info.Shape, w.shape) || info.DType != w.stored {
						t.Errorf("%q: info %v %s, want %v %s", n, info.Shape, info.DType, w.shape, w.stored)
					}
					got, err := c.Load(n)
					if err != nil {
						t.Errorf("%q: %v", n, err)
						continue
					}
					if !reflect.DeepEqual(got.Shape, w.shape) || got.Stored != w.stored ||
						!reflect.DeepEqual(got.F32, w.f32) || !reflect.DeepEqual(got.I64, w.i64) {
						t.Errorf("%q: got %v %s f32=%v i64=%v, want %v %s f32=%v i64=%v", n, got.Shape, got.Stored, got.F32, got.I64, w.shape, w.stored, w.f32, w.i64)
					}
				}
				for k, v := range tc.meta {
					if c.Meta()[k] != v {
						t.Errorf("meta[%q] = %v, want %v", k, c.Meta()[k], v)
					}
				}
			})
		}
	}
}

func TestPTHBigEndian(t *testing.T) {
	var f32, i64 []byte
	for _, v := range []float32{1.5, -2, 3} {
		f32 = binary.BigEndian.AppendUint32(f32, math.Float32bits(v))
	}
	i64 = binary.BigEndian.AppendUint64(i64, uint64(1<<40+5))
	f := ptFile{BigEnd: true,
		Storages: []ptStorage{{Key: "0", Class: "FloatStorage", Numel: 3, Data: f32}, {Key: "1", Class: "LongStorage", Numel: 1, Data: i64}},
		Tensors:  []ptTensor{{Name: "w", Storage: "0", Shape: []int{3}}, {Name: "n", Storage: "1", Shape: []int{}}}}
	c, err := openBytes(t, f.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.Load("w")
	if err != nil || !reflect.DeepEqual(w.F32, []float32{1.5, -2, 3}) {
		t.Errorf("w = %v, %v", w, err)
	}
	n, err := c.Load("n")
	if err != nil || !reflect.DeepEqual(n.I64, []int64{1<<40 + 5}) {
		t.Errorf("n = %v, %v", n, err)
	}
}

func TestStoreShapeAndMissing(t *testing.T) {
	f := ptFile{Storages: []ptStorage{{Key: "0", Class: "FloatStorage", Numel: 6, Data: f32Bytes(0, 1, 2, 3, 4, 5)}},
		Tensors: []ptTensor{{Name: "enc.blocks.0.w", Storage: "0", Shape: []int{2, 3}}, {Name: "enc.blocks.0.v", Storage: "0", Shape: []int{6}}}}
	path := filepath.Join(t.TempDir(), "s.pth")
	f.save(t, path)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b := s.Sub("enc").Sub("blocks").Index(0)
	cases := []struct {
		name  string
		shape []int
		err   error
	}{
		{"w", []int{2, 3}, nil},
		{"w", nil, nil},
		{"w", []int{3, 2}, ErrShape},
		{"w", []int{6}, ErrShape},
		{"x", []int{2, 3}, ErrMissing},
	}
	for _, tc := range cases {
		_, err := b.Floats(tc.name, tc.shape...)
		if !errors.Is(err, tc.err) || (err != nil && !strings.Contains(err.Error(), "enc.blocks.0."+tc.name)) {
			t.Errorf("Floats(%q, %v): error %v, want %v naming the tensor", tc.name, tc.shape, err, tc.err)
		}
	}
	if u := s.Unused(); !reflect.DeepEqual(u, []string{"enc.blocks.0.v"}) {
		t.Errorf("Unused() = %v", u)
	}
	if err := s.CheckUnused(); err == nil || !strings.Contains(err.Error(), "enc.blocks.0.v") {
		t.Errorf("CheckUnused() = %v", err)
	}
}

// rawPickle builds a pickle from opcode bytes.
func rawPickle(parts ...any) []byte {
	var b bytes.Buffer
	b.Write([]byte{opProto, 2})
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			b.WriteString(v)
		case byte:
			b.WriteByte(v)
		case []byte:
			b.Write(v)
		case int:
			b.WriteByte(byte(v))
		case rune: // the opcode constants
			b.WriteByte(byte(v))
		}
	}
	return b.Bytes()
}

// zipWith builds a torch zip archive around a raw data.pkl.
func zipWith(pkl []byte, records map[string][]byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name string, data []byte) {
		w, _ := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store, Modified: time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)})
		w.Write(data)
	}
	add("archive/data.pkl", pkl)
	for k, v := range records {
		add("archive/data/"+k, v)
	}
	zw.Close()
	return buf.Bytes()
}

// tensorPickle is a state dict {"w": tensor} with the given storage class,
// numel, offset, size and stride (as raw pickle pieces).
func tensorPickle(class string, numel int64, offset int64, size, stride []int64) []byte {
	p := newPK()
	p.emptyOrderedDict()
	p.str("w")
	p.global("torch._utils", "_rebuild_tensor_v2").op(opMark)
	p.op(opMark).str("storage").global("torch", class).str("0").str("cpu").int(numel).op(opTuple).op(opBinPersID)
	p.int(offset)
	p.op(opMark)
	for _, v := range size {
		p.int(v)
	}
	p.op(opTuple)
	p.op(opMark)
	for _, v := range stride {
		p.int(v)
	}
	p.op(opTuple)
	p.op(opNewFalse).emptyOrderedDict().op(opTuple).op(opReduce).op(opSetItem).op(opStop)
	return p.Bytes()
}

func TestCorruptInputIsAnError(t *testing.T) {
	good := (&ptFile{Storages: []ptStorage{{Key: "0", Class: "FloatStorage", Numel: 6, Data: f32Bytes(0, 1, 2, 3, 4, 5)}},
		Tensors: []ptTensor{{Name: "w", Storage: "0", Shape: []int{2, 3}}}}).bytes(t)
	legacy := (&ptFile{Legacy: true, Storages: []ptStorage{{Key: "0", Class: "FloatStorage", Numel: 6, Data: f32Bytes(0, 1, 2, 3, 4, 5)}},
		Tensors: []ptTensor{{Name: "w", Storage: "0", Shape: []int{2, 3}}}}).bytes(t)
	data0 := map[string][]byte{"0": f32Bytes(0, 1, 2, 3, 4, 5)}
	evil := func(mod, name string) []byte {
		return zipWith(rawPickle(opGlobal, mod+"\n"+name+"\n", opMark, opShortBinUni, 2, "ls", opTuple, opReduce, opStop), nil)
	}
	var tar [512]byte
	copy(tar[257:], "ustar")
	deep := rawPickle(bytes.Repeat([]byte{opMark}, 100000), bytes.Repeat([]byte{opTuple}, 100000), opStop)
	cases := []struct {
		name string
		data []byte
		msg  string // expected in the error
	}{
		{"empty file", nil, "format"},
		{"bad magic", []byte("hello world, not a checkpoint"), "format"},
		{"tar format", tar[:], "tar"},
		{"truncated zip", good[:len(good)/2], "format"},
		{"truncated legacy", legacy[:len(legacy)-10], "do not fit"},
		{"zip without data.pkl", func() []byte {
			var b bytes.Buffer
			zw := zip.NewWriter(&b)
			w, _ := zw.Create("foo.txt")
			w.Write([]byte("x"))
			zw.Close()
			return b.Bytes()
		}(), "data.pkl"},
		{"GLOBAL posix system", evil("posix", "system"), "posix.system"},
		{"GLOBAL os system", evil("os", "system"), "os.system"},
		{"GLOBAL nt system", evil("nt", "system"), "nt.system"},
		{"GLOBAL builtins eval", evil("builtins", "eval"), "builtins.eval"},
		{"GLOBAL __builtin__ eval", evil("__builtin__", "eval"), "__builtin__.eval"},
		{"GLOBAL subprocess Popen", evil("subprocess", "Popen"), "subprocess.Popen"},
		{"GLOBAL torch load", evil("torch", "load"), "torch.load"},
		{"GLOBAL numpy scalar", evil("numpy.core.multiarray", "scalar"), "numpy.core.multiarray.scalar"},
		{"STACK_GLOBAL builtins exec", zipWith(rawPickle(opShortBinUni, 8, "builtins", opShortBinUni, 4, "exec", opStackGlobal, opStop), nil), "builtins.exec"},
		{"INST os system", zipWith(rawPickle(opMark, opInst, "os\nsystem\n", opStop), nil), "INST"},
		{"OBJ", zipWith(rawPickle(opMark, opGlobal, "collections\nOrderedDict\n", opObj, opStop), nil), "OBJ"},
		{"NEWOBJ", zipWith(rawPickle(opGlobal, "collections\nOrderedDict\n", opEmptyTuple, opNewObj, opStop), nil), "NEWOBJ"},
		{"EXT1", zipWith(rawPickle(opExt1, 1, opStop), nil), "EXT1"},
		{"REDUCE a string", zipWith(rawPickle(opShortBinUni, 1, "x", opEmptyTuple, opReduce, opStop), nil), "REDUCE"},
		{"unsupported storage type", zipWith(tensorPickle("ComplexFloatStorage", 6, 0, []int64{6}, []int64{1}), data0), "ComplexFloatStorage"},
		{"BINGET of an unset memo key", zipWith(rawPickle(opBinGet, 7, opStop), nil), "memo"},
		{"LONG_BINGET far key", zipWith(rawPickle(opLongBinGet, []byte{0xff, 0xff, 0xff, 0xff}, opStop), nil), "memo"},
		{"huge BINUNICODE8", zipWith(rawPickle(opBinUnicode8, []byte{0, 0, 0, 0, 0, 0, 0, 0x40}, opStop), nil), "length"},
		{"huge LONG4", zipWith(rawPickle(opLong4, []byte{0, 0, 0, 0x40}, opStop), nil), "integer"},
		{"deep nesting, then a tuple at top", zipWith(deep, nil), "tuple"},
		{"stack underflow", zipWith(rawPickle(opAppend, opStop), nil), "underflow"},
		{"truncated pickle", zipWith(rawPickle(opMark, opShortBinUni, 9, "abc"), nil), "length"},
		{"top level is a list", zipWith(rawPickle(opEmptyList, opStop), nil), "not a state dict"},
		{"state dict with an int key", zipWith(rawPickle(opEmptyDict, opBinInt1, 1, opNone, opSetItem, opStop), nil), "key"},
		{"storage shorter than its tensor (declared)", zipWith(tensorPickle("FloatStorage", 4, 0, []int64{2, 3}, []int64{3, 1}), data0), "storage"},
		{"storage shorter than its tensor (record)", zipWith(tensorPickle("FloatStorage", 8, 0, []int64{8}, []int64{1}), data0), "shorter"},
		{"huge float32 tensor over a small record", zipWith(tensorPickle("FloatStorage", 1<<28, 0, []int64{1 << 28}, []int64{1}), data0), "shorter"},
		{"offset past the storage", zipWith(tensorPickle("FloatStorage", 6, 5, []int64{2}, []int64{1}), data0), "storage"},
		{"negative size", zipWith(tensorPickle("FloatStorage", 6, 0, []int64{-1}, []int64{1}), data0), "size"},
		{"negative stride", zipWith(tensorPickle("FloatStorage", 6, 5, []int64{2}, []int64{-1}), data0), "stride"},
		{"negative offset", zipWith(tensorPickle("FloatStorage", 6, -1, []int64{2}, []int64{1}), data0), "offset"},
		{"overflowing element count", zipWith(tensorPickle("FloatStorage", 6, 0, []int64{1 << 31, 1 << 31, 1 << 31}, []int64{0, 0, 0}), data0), "size"},
		{"overflowing element count (int32 dims)", zipWith(tensorPickle("FloatStorage", 6, 0, []int64{1<<31 - 1, 1<<31 - 1, 1<<31 - 1}, []int64{0, 0, 0}), data0), "elements"},
		{"overflowing strides", zipWith(tensorPickle("FloatStorage", 6, 0, []int64{1 << 20, 1 << 20}, []int64{1 << 50, 1 << 50}), data0), "overflow"},
		{"huge broadcast", zipWith(tensorPickle("FloatStorage", 6, 0, []int64{1 << 20, 1 << 20}, []int64{0, 0}), data0), "broadcast"},
		{"size and stride lengths differ", zipWith(tensorPickle("FloatStorage", 6, 0, []int64{2, 3}, []int64{1}), data0), "differ"},
		{"too many dimensions", zipWith(tensorPickle("FloatStorage", 6, 0, make([]int64, 100), make([]int64, 100)), data0), "dimensions"},
		{"storage without a record", zipWith(tensorPickle("FloatStorage", 6, 0, []int64{6}, []int64{1}), nil), "record"},
		{"negative storage size", zipWith(tensorPickle("FloatStorage", -6, 0, []int64{6}, []int64{1}), data0), "elements"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := openBytes(t, tc.data)
			if err == nil {
				// Some problems show only when the tensors are read.
				_, err = c.Store()
				c.Close()
			}
			wantError(t, err, tc.msg)
		})
	}
}

// TestMemoAbuse checks that shared and cyclic values built through the memo
// are walked in bounded time (they land in Meta, not in the state dict).
func TestMemoAbuse(t *testing.T) {
	// {"w": tensor, "cycle": L where L = [L], "wide": L60 where Li = [Li-1, Li-1]}
	p := newPK()
	p.emptyOrderedDict()
	p.op(opMark)
	p.str("w")
	p.global("torch._utils", "_rebuild_tensor_v2").op(opMark)
	p.op(opMark).str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(6).op(opTuple).op(opBinPersID)
	p.int(0).tuple(6).tuple(1).op(opNewFalse).emptyOrderedDict().op(opTuple).op(opReduce)
	p.str("cycle")
	p.op(opEmptyList)
	l := p.put()
	p.get(l).op(opAppend)
	p.str("wide")
	p.op(opEmptyList)
	prev := p.put()
	p.op(opPop)
	for i := 0; i < 60; i++ {
		p.op(opMark).get(prev).get(prev).op(opList)
		prev = p.put()
		p.op(opPop)
	}
	p.get(prev)
	p.str("deep")
	for i := 0; i < 10000; i++ {
		p.op(opEmptyList)
	}
	for i := 0; i < 9999; i++ {
		p.op(opAppend)
	}
	p.op(opSetItems).op(opStop)
	start := time.Now()
	c, err := openBytes(t, zipWith(p.Bytes(), map[string][]byte{"0": f32Bytes(0, 1, 2, 3, 4, 5)}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("open took %v", d)
	}
	if !reflect.DeepEqual(c.Names(), []string{"w"}) {
		t.Errorf("names %v", c.Names())
	}
	for _, k := range []string{"cycle", "wide", "deep"} {
		if !strings.Contains(fmtDeep(c.Meta()[k], 0), "<truncated>") {
			t.Errorf("meta[%q] was not truncated", k)
		}
	}
}

// fmtDeep looks for the truncation marker without recursing without bound.
func fmtDeep(v any, depth int) string {
	if depth > 2*maxPickleDepth {
		return ""
	}
	switch t := v.(type) {
	case string:
		return t
	case []any:
		for _, x := range t {
			if s := fmtDeep(x, depth+1); strings.Contains(s, "<truncated>") {
				return s
			}
		}
	}
	return ""
}

func TestNPYRoundTrip(t *testing.T) {
	dir := t.TempDir()
	tensors := map[string]*Tensor{
		"f32":    {Shape: []int{2, 3}, Stored: Float32, F32: []float32{0, 1, 2, 3, 4, 5}},
		"f16":    {Shape: []int{3}, Stored: Float16, F32: []float32{1, -2, 0.5}},
		"f64":    {Shape: []int{1}, Stored: Float64, F32: []float32{1.5}},
		"bf16":   {Shape: []int{2}, Stored: BFloat16, F32: []float32{1, -3.5}},
		"i64":    {Shape: []int{}, Stored: Int64, I64: []int64{-7}},
		"i32":    {Shape: []int{2}, Stored: Int32, I64: []int64{1 << 30, -1}},
		"u8":     {Shape: []int{2, 1}, Stored: Uint8, F32: []float32{0, 255}},
		"bool":   {Shape: []int{2}, Stored: Bool, F32: []float32{1, 0}},
		"empty":  {Shape: []int{0, 4}, Stored: Float32, F32: []float32{}},
		"a.b.c0": {Shape: []int{1, 1, 1, 1}, Stored: Float32, F32: []float32{-0.125}},
	}
	s := New("mem", tensors)
	npz := filepath.Join(dir, "t.npz")
	if err := WriteNPZ(npz, s); err != nil {
		t.Fatal(err)
	}
	npyDir := filepath.Join(dir, "npy")
	if err := WriteNPYDir(npyDir, s); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{npz, npyDir} {
		got, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Names(), s.Names()) {
			t.Fatalf("%s: names %v, want %v", path, got.Names(), s.Names())
		}
		for _, n := range s.Names() {
			g, _ := got.Raw(n)
			w := tensors[n]
			wantStored := w.Stored
			if wantStored == BFloat16 {
				wantStored = Float32 // numpy has no bfloat16
			}
			if !reflect.DeepEqual(g.Shape, w.Shape) || g.Stored != wantStored || !reflect.DeepEqual(g.F32, w.F32) || !reflect.DeepEqual(g.I64, w.I64) {
				t.Errorf("%s: %q: got %+v, want %+v", path, n, g, w)
			}
		}
	}
	if u := s.Unused(); len(u) != len(tensors) {
		t.Errorf("writing marked tensors used: %d unused", len(u))
	}
}

func TestNPYErrors(t *testing.T) {
	hdr := func(dict string) []byte {
		return append([]byte(npyMagic+"\x01\x00"), append(binary.LittleEndian.AppendUint16(nil, uint16(len(dict))), dict...)...)
	}
	var good bytes.Buffer
	WriteNPY(&good, &Tensor{Shape: []int{4}, Stored: Float32, F32: []float32{1, 2, 3, 4}})
	cases := []struct {
		name string
		data []byte
		msg  string
	}{
		{"empty", nil, "header"},
		{"bad magic", []byte("PK\x03\x04 not npy at all"), "magic"},
		{"version 9", []byte(npyMagic + "\x09\x00\x10\x00"), "version"},
		{"truncated data", good.Bytes()[:good.Len()-3], "data"},
		{"truncated header", good.Bytes()[:20], "header"},
		{"huge shape", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (2147483647, 2147483647, 2147483647), }"), "elements"},
		{"negative shape", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }"), "dimension"},
		{"huge shape, little data", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,), }"), "data"},
		{"object dtype", hdr("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"), "dtype"},
		{"structured dtype", hdr("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }"), "descr"},
		{"no shape", hdr("{'descr': '<f4', 'fortran_order': False}"), "shape"},
		{"garbage dict", hdr("{'descr': '<f4', 'fortran_order': Fa"), "header"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadNPY(bytes.NewReader(tc.data))
			wantError(t, err, tc.msg)
		})
	}
}

func TestNPYFortranAndBigEndian(t *testing.T) {
	hdr := func(dict string, data []byte) []byte {
		b := append([]byte(npyMagic+"\x01\x00"), binary.LittleEndian.AppendUint16(nil, uint16(len(dict)))...)
		return append(append(b, dict...), data...)
	}
	be := func(v ...float32) []byte {
		var b []byte
		for _, x := range v {
			b = binary.BigEndian.AppendUint32(b, math.Float32bits(x))
		}
		return b
	}
	cases := []struct {
		name string
		data []byte
		want []float32
	}{
		{"fortran 2x3", hdr("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f32Bytes(0, 3, 1, 4, 2, 5)), []float32{0, 1, 2, 3, 4, 5}},
		{"big-endian", hdr("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", be(1.5, -2)), []float32{1.5, -2}},
		{"float16", hdr("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", u16Bytes(0x3c00, 0xc000)), []float32{1, -2}},
	}
	for _, tc := range cases {
		got, err := ReadNPY(bytes.NewReader(tc.data))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(got.F32, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got.F32, tc.want)
		}
	}
}

func TestFloat32ToHalf(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := HalfToFloat32(uint16(h))
		if f != f { // NaN: any NaN back
			if g := HalfToFloat32(Float32ToHalf(f)); g == g {
				t.Fatalf("NaN 0x%04x -> %v", h, g)
			}
			continue
		}
		if got := Float32ToHalf(f); got != uint16(h) {
			t.Fatalf("0x%04x -> %v -> 0x%04x", h, f, got)
		}
	}
	cases := []struct {
		f    float32
		want uint16
	}{
		{1 + 1.0/2048, 0x3c00},                // tie to even (down)
		{1 + 3.0/2048, 0x3c02},                // tie to even (up)
		{70000, 0x7c00},                       // overflow to +Inf
		{float32(math.Ldexp(1, -26)), 0x0000}, // underflow to zero
		{float32(math.Ldexp(3, -26)), 0x0001}, // rounds to the smallest subnormal
	}
	for _, tc := range cases {
		if got := Float32ToHalf(tc.f); got != tc.want {
			t.Errorf("Float32ToHalf(%g) = 0x%04x, want 0x%04x", tc.f, got, tc.want)
		}
	}
}

// wantError fails the test unless err is an error that mentions msg.
func wantError(t *testing.T, err error, msg string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not mention %q", err, msg)
	}
}

// TestStoreParallel: the tensors are loaded by several goroutines; every
// value lands under its name, the first bad tensor in the file's order is
// the error, and a cancelled context stops the loading.
func TestStoreParallel(t *testing.T) {
	const n = 40
	var f ptFile
	for i := 0; i < n; i++ {
		key := fmt.Sprint(i)
		f.Storages = append(f.Storages, ptStorage{Key: key, Class: "FloatStorage", Numel: 3, Data: f32Bytes(float32(i), float32(i)+0.5, -float32(i))})
		f.Tensors = append(f.Tensors, ptTensor{Name: fmt.Sprintf("t%02d", i), Storage: key, Shape: []int{3}})
	}
	c, err := openBytes(t, f.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Store()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		got, err := s.Floats(fmt.Sprintf("t%02d", i), 3)
		if err != nil || !slices.Equal(got, []float32{float32(i), float32(i) + 0.5, -float32(i)}) {
			t.Fatalf("t%02d = %v (%v)", i, got, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.StoreContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v", err)
	}
	// Tensors 17 and 30 run past their storages: 17 is reported.
	for _, i := range []int{17, 30} {
		f.Tensors[i].Shape = []int{4}
	}
	c, err = openBytes(t, f.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(); err == nil || !strings.Contains(err.Error(), `"t17"`) {
		t.Fatalf("err = %v, want one naming t17", err)
	}
}
