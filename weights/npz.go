package weights

import (
	"archive/zip"
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// This file reads and writes numpy's .npy format (NEP 1: magic "\x93NUMPY",
// version, a little-endian header length, a Python dict literal with
// 'descr', 'fortran_order' and 'shape', then the raw data), .npz archives
// (a zip of <name>.npy records) and directories of .npy files.

// ErrNPY is wrapped by errors about a malformed .npy stream.
var ErrNPY = errors.New("npy")

const (
	npyMagic        = "\x93NUMPY"
	maxNPYHeaderLen = 1 << 20
	maxNPYElements  = math.MaxInt64 / 8
)

// npyHeader is a parsed .npy header.
type npyHeader struct {
	dtype     DType
	bigEndian bool
	fortran   bool
	shape     []int
	size      int64 // bytes of header (data starts here)
	numel     int64
	elemSize  int
}

func (h *npyHeader) dataBytes() int64 { return h.numel * int64(h.elemSize) }

// readNPYHeader reads and checks a .npy header.
func readNPYHeader(r io.Reader) (*npyHeader, error) {
	var pre [10]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrNPY, unexpected(err))
	}
	if string(pre[:6]) != npyMagic {
		return nil, fmt.Errorf("%w: bad magic %q (not a .npy file)", ErrNPY, pre[:6])
	}
	major := pre[6]
	var hlen int64
	size := int64(10)
	switch major {
	case 1:
		hlen = int64(binary.LittleEndian.Uint16(pre[8:]))
	case 2, 3:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("%w: header: %v", ErrNPY, unexpected(err))
		}
		hlen = int64(binary.LittleEndian.Uint32([]byte{pre[8], pre[9], b[0], b[1]}))
		size = 12
	default:
		return nil, fmt.Errorf("%w: unsupported format version %d.%d", ErrNPY, major, pre[7])
	}
	if hlen > maxNPYHeaderLen {
		return nil, fmt.Errorf("%w: header of %d bytes", ErrNPY, hlen)
	}
	text := make([]byte, hlen)
	if _, err := io.ReadFull(r, text); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrNPY, unexpected(err))
	}
	h, err := parseNPYDict(string(text))
	if err != nil {
		return nil, err
	}
	h.size = size + hlen
	return h, nil
}

// parseNPYDict parses the header's dict literal.
func parseNPYDict(s string) (*npyHeader, error) {
	p := &pyLit{s: s}
	fields, err := p.dict()
	if err != nil {
		return nil, fmt.Errorf("%w: header %q: %v", ErrNPY, s, err)
	}
	descr, ok := fields["descr"].(string)
	if !ok {
		return nil, fmt.Errorf("%w: header without a 'descr' string (structured arrays are not supported): %q", ErrNPY, s)
	}
	h := &npyHeader{}
	if h.dtype, h.bigEndian, err = parseDescr(descr); err != nil {
		return nil, err
	}
	h.elemSize, _, _ = elemInfo(h.dtype)
	fo, ok := fields["fortran_order"].(bool)
	if !ok {
		return nil, fmt.Errorf("%w: header without 'fortran_order': %q", ErrNPY, s)
	}
	h.fortran = fo
	shape, ok := fields["shape"].([]int)
	if !ok {
		return nil, fmt.Errorf("%w: header without a 'shape' tuple: %q", ErrNPY, s)
	}
	h.shape = shape
	if h.numel, err = numElements(shape, maxNPYElements/int64(h.elemSize)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNPY, err)
	}
	return h, nil
}

// parseDescr maps a numpy type string such as "<f4" to an element type.
func parseDescr(d string) (DType, bool, error) {
	if len(d) < 2 {
		return "", false, fmt.Errorf("%w: dtype %q", ErrNPY, d)
	}
	big := false
	code := d
	switch d[0] {
	case '<', '=', '|':
		code = d[1:]
	case '>':
		big, code = true, d[1:]
	}
	var dt DType
	switch code {
	case "f4":
		dt = Float32
	case "f2":
		dt = Float16
	case "f8":
		dt = Float64
	case "i8":
		dt = Int64
	case "i4":
		dt = Int32
	case "i2":
		dt = Int16
	case "i1":
		dt = Int8
	case "u1":
		dt = Uint8
	case "b1":
		dt = Bool
	default:
		return "", false, fmt.Errorf("%w: unsupported dtype %q", ErrNPY, d)
	}
	return dt, big, nil
}

// readNPYData reads the data that follows h from r. known is the number of
// bytes r holds after the header, or -1 when unknown (then the data is read
// in bounded chunks, so a truncated stream fails before a large allocation).
func readNPYData(r io.Reader, h *npyHeader, known int64) (*Tensor, error) {
	n := h.dataBytes()
	if known >= 0 && n > known {
		return nil, fmt.Errorf("%w: shape %v needs %d bytes of data, %d present (truncated?)", ErrNPY, h.shape, n, known)
	}
	if known >= 0 && h.dtype == Float32 && !h.bigEndian && nativeLittleEndian && (!h.fortran || len(h.shape) < 2) {
		// The stored bytes are the values, in order: read them straight
		// into the tensor.
		t := &Tensor{Shape: append([]int{}, h.shape...), Stored: Float32, F32: make([]float32, h.numel)}
		if _, err := io.ReadFull(r, float32Bytes(t.F32)); err != nil {
			return nil, fmt.Errorf("%w: data: %v", ErrNPY, unexpected(err))
		}
		return t, nil
	}
	var raw []byte
	if known >= 0 {
		raw = make([]byte, n)
		if _, err := io.ReadFull(r, raw); err != nil {
			return nil, fmt.Errorf("%w: data: %v", ErrNPY, unexpected(err))
		}
	} else {
		const chunk = 16 << 20
		for int64(len(raw)) < n {
			m := min(n-int64(len(raw)), chunk)
			start := len(raw)
			raw = append(raw, make([]byte, m)...)
			if _, err := io.ReadFull(r, raw[start:]); err != nil {
				return nil, fmt.Errorf("%w: shape %v: data: %v", ErrNPY, h.shape, unexpected(err))
			}
		}
	}
	stride := contiguousStrides(h.shape)
	if h.fortran {
		acc := int64(1)
		for i := range h.shape {
			stride[i] = acc
			acc *= int64(max(h.shape[i], 1))
		}
	}
	t, err := decodeView(raw, h.dtype, h.bigEndian, h.shape, stride)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNPY, err)
	}
	return t, nil
}

// ReadNPYFile reads one .npy file.
func ReadNPYFile(path string) (*Tensor, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	br := bufio.NewReaderSize(f, 1<<16)
	h, err := readNPYHeader(br)
	if err != nil {
		return nil, fmt.Errorf("weights: %s: %w", path, err)
	}
	t, err := readNPYData(br, h, fi.Size()-h.size)
	if err != nil {
		return nil, fmt.Errorf("weights: %s: %w", path, err)
	}
	return t, nil
}

// ReadNPY reads one .npy stream.
func ReadNPY(rd io.Reader) (*Tensor, error) {
	h, err := readNPYHeader(rd)
	if err != nil {
		return nil, err
	}
	return readNPYData(rd, h, -1)
}

// LoadNPZ reads every array of a numpy .npz archive into a Store. Keys keep
// their state-dict names (a trailing ".npy" is removed).
func LoadNPZ(path string) (*Store, error) { return loadWith(path, openNPZ) }

// LoadNPYDir reads a directory of .npy files, one per tensor, named
// "<state-dict name>.npy".
func LoadNPYDir(dir string) (*Store, error) { return loadWith(dir, openNPYDir) }

func loadWith(path string, open func(string) (*Checkpoint, error)) (*Store, error) {
	c, err := open(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %s: %w", path, err)
	}
	defer c.Close()
	return c.Store()
}

func openNPZ(path string) (*Checkpoint, error) {
	f, size, err := openSized(path)
	if err != nil {
		return nil, err
	}
	zr, err := zip.NewReader(f, size)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: npz: %v", ErrFormat, err)
	}
	c := &Checkpoint{path: path, format: FormatNPZ, entries: map[string]*entry{}, meta: map[string]any{}, close: f.Close}
	for _, zf := range zr.File {
		if !strings.HasSuffix(zf.Name, ".npy") {
			continue
		}
		name := strings.TrimSuffix(zf.Name, ".npy")
		h, err := npzHeader(zf)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%q: %w", name, err)
		}
		if _, dup := c.entries[name]; dup {
			f.Close()
			return nil, fmt.Errorf("%w: npz holds %q twice", ErrFormat, name)
		}
		c.names = append(c.names, name)
		c.entries[name] = &entry{
			info: TensorInfo{Name: name, Shape: h.shape, DType: h.dtype},
			load: func() (*Tensor, error) { return loadNPZRecord(f, size, zf, h) },
		}
	}
	if len(c.names) == 0 {
		f.Close()
		return nil, fmt.Errorf("%w: npz holds no .npy records", ErrFormat)
	}
	return c, nil
}

func npzHeader(zf *zip.File) (*npyHeader, error) {
	rc, err := zf.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	defer rc.Close()
	return readNPYHeader(bufio.NewReader(rc))
}

func loadNPZRecord(f *os.File, fileSize int64, zf *zip.File, h *npyHeader) (*Tensor, error) {
	if zf.UncompressedSize64 > math.MaxInt64 {
		return nil, fmt.Errorf("%w: record size %d", ErrFormat, zf.UncompressedSize64)
	}
	known := int64(zf.UncompressedSize64) - h.size
	if zf.Method == zip.Store {
		at, err := zf.DataOffset()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrFormat, err)
		}
		if at+int64(zf.UncompressedSize64) > fileSize {
			return nil, fmt.Errorf("%w: record runs past the end of the file (truncated?)", ErrFormat)
		}
		r := io.NewSectionReader(f, at+h.size, known)
		return readNPYData(r, h, known)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, h.size); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNPY, unexpected(err))
	}
	// The declared size of a compressed record can lie; read in chunks.
	return readNPYData(rc, h, -1)
}

func openNPYDir(dir string) (*Checkpoint, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{path: dir, format: FormatNPYDir, entries: map[string]*entry{}, meta: map[string]any{}}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".npy") {
			continue
		}
		name := strings.TrimSuffix(e.Name(), ".npy")
		path := filepath.Join(dir, e.Name())
		h, err := npyFileHeader(path)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", name, err)
		}
		c.names = append(c.names, name)
		c.entries[name] = &entry{
			info: TensorInfo{Name: name, Shape: h.shape, DType: h.dtype},
			load: func() (*Tensor, error) { return ReadNPYFile(path) },
		}
	}
	if len(c.names) == 0 {
		return nil, fmt.Errorf("%w: no .npy files", ErrFormat)
	}
	return c, nil
}

func npyFileHeader(path string) (*npyHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readNPYHeader(bufio.NewReader(f))
}

// pyLit parses the Python literal subset of .npy headers: a dict of string
// keys whose values are strings, booleans, ints or tuples of ints.
type pyLit struct {
	s string
	i int
}

func (p *pyLit) space() {
	for p.i < len(p.s) && unicode.IsSpace(rune(p.s[p.i])) {
		p.i++
	}
}

func (p *pyLit) peek() byte {
	p.space()
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *pyLit) expect(c byte) error {
	if p.peek() != c {
		return fmt.Errorf("expected %q at offset %d", c, p.i)
	}
	p.i++
	return nil
}

func (p *pyLit) dict() (map[string]any, error) {
	if err := p.expect('{'); err != nil {
		return nil, err
	}
	out := map[string]any{}
	for p.peek() != '}' {
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		if err := p.expect(':'); err != nil {
			return nil, err
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		out[k] = v
		if p.peek() == ',' {
			p.i++
			continue
		}
		if p.peek() != '}' {
			return nil, fmt.Errorf("expected ',' or '}' at offset %d", p.i)
		}
	}
	p.i++
	return out, nil
}

func (p *pyLit) str() (string, error) {
	q := p.peek()
	if q != '\'' && q != '"' {
		return "", fmt.Errorf("expected a string at offset %d", p.i)
	}
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", fmt.Errorf("unterminated string at offset %d", p.i)
	}
	v := p.s[p.i+1 : p.i+1+end]
	p.i += end + 2
	return v, nil
}

func (p *pyLit) value() (any, error) {
	switch c := p.peek(); {
	case c == '\'' || c == '"':
		return p.str()
	case c == '(':
		p.i++
		shape := []int{}
		for p.peek() != ')' {
			n, err := p.int()
			if err != nil {
				return nil, err
			}
			shape = append(shape, n)
			if len(shape) > maxPickleDims {
				return nil, fmt.Errorf("more than %d dimensions", maxPickleDims)
			}
			if p.peek() == ',' {
				p.i++
			} else if p.peek() != ')' {
				return nil, fmt.Errorf("expected ',' or ')' at offset %d", p.i)
			}
		}
		p.i++
		return shape, nil
	case strings.HasPrefix(p.s[p.i:], "True"):
		p.i += 4
		return true, nil
	case strings.HasPrefix(p.s[p.i:], "False"):
		p.i += 5
		return false, nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.int()
	}
	return nil, fmt.Errorf("unexpected value at offset %d", p.i)
}

func (p *pyLit) int() (int, error) {
	p.space()
	j := p.i
	if j < len(p.s) && p.s[j] == '-' {
		j++
	}
	for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
		j++
	}
	// numpy on Windows once wrote 3L for longs
	v, err := strconv.ParseInt(p.s[p.i:j], 10, 64)
	if err != nil || v < 0 || v > math.MaxInt32 {
		return 0, fmt.Errorf("bad dimension %q at offset %d", p.s[p.i:j], p.i)
	}
	p.i = j
	if p.i < len(p.s) && p.s[p.i] == 'L' {
		p.i++
	}
	return int(v), nil
}

// SortedNames returns the keys of a tensor map in order.
func SortedNames(m map[string]*Tensor) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
