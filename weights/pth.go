package weights

import (
	"archive/zip"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strings"
)

// This file reads the two layouts of torch.save:
//
//   - the zip archive (PyTorch >= 1.6): <dir>/data.pkl, a pickle whose
//     tensors name their storages by persistent id ('storage', type, key,
//     location, numel), and one raw little-endian record <dir>/data/<key> per
//     storage (plus <dir>/version, and <dir>/byteorder in newer files);
//   - the legacy stream: pickles of a magic number, the protocol version and
//     sys_info, then the object pickle (persistent ids ('storage', type,
//     root_key, location, numel, view_metadata)), a pickle of the storage keys
//     and, per key in that order, an int64 element count and the raw data.
//
// Storages are not read when the file is opened: each tensor reads only its
// own bytes when it is loaded, so memory holds one tensor at a time.

// ErrFormat is wrapped by errors about a file that is not a readable checkpoint.
var ErrFormat = errors.New("unrecognised checkpoint format")

// legacyMagic is torch.serialization.MAGIC_NUMBER.
var legacyMagic, _ = new(big.Int).SetString("1950a86a20f9469cfc6c", 16)

// maxPickleBytes bounds the size of a data.pkl record (a ViT-H state dict's
// is about 100 KB).
const maxPickleBytes = 256 << 20

type legacyRecord struct {
	offset int64 // file offset of the data
	numel  int64 // elements in the file
}

// pthReader holds an open torch.save file and reads storage bytes from it.
type pthReader struct {
	f         io.ReaderAt
	size      int64
	legacy    bool
	bigEndian bool
	records   map[string]*zip.File    // zip: storage key -> record
	legacyRec map[string]legacyRecord // legacy: root key -> data
	storages  map[string]*pyStorage   // persistent-id cache
}

// openPTH opens a torch.save file and unpickles its object tree.
func openPTH(f io.ReaderAt, size int64) (any, *pthReader, error) {
	head := make([]byte, 512)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	p := &pthReader{f: f, size: size, storages: map[string]*pyStorage{}}
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		root, err := p.openZip()
		return root, p, err
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return nil, nil, fmt.Errorf("%w: a tar checkpoint (PyTorch < 0.4) is not supported; re-save it with torch.save", ErrFormat)
	case len(head) >= 2 && head[0] == opProto:
		p.legacy = true
		root, err := p.openLegacy()
		return root, p, err
	}
	return nil, nil, fmt.Errorf("%w: not a zip archive nor a legacy torch pickle", ErrFormat)
}

func (p *pthReader) openZip() (any, error) {
	zr, err := zip.NewReader(p.f, p.size)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	var pkl *zip.File
	for _, zf := range zr.File {
		dir, base, ok := strings.Cut(zf.Name, "/")
		if ok && base == "data.pkl" && dir != "" {
			if pkl != nil {
				return nil, fmt.Errorf("%w: two data.pkl records (%s, %s)", ErrFormat, pkl.Name, zf.Name)
			}
			pkl = zf
		}
	}
	if pkl == nil {
		return nil, fmt.Errorf("%w: zip archive without <dir>/data.pkl (not a torch.save file)", ErrFormat)
	}
	prefix := strings.TrimSuffix(pkl.Name, "data.pkl")
	p.records = map[string]*zip.File{}
	for _, zf := range zr.File {
		if !strings.HasPrefix(zf.Name, prefix) {
			continue
		}
		rest := zf.Name[len(prefix):]
		switch {
		case strings.HasPrefix(rest, "data/"):
			p.records[rest[len("data/"):]] = zf
		case rest == "byteorder":
			b, err := readSmall(zf, 16)
			if err != nil {
				return nil, err
			}
			switch strings.TrimSpace(string(b)) {
			case "little":
			case "big":
				p.bigEndian = true
			default:
				return nil, fmt.Errorf("%w: byteorder %q", ErrFormat, b)
			}
		}
	}
	// Read the pickle whole (it is small: the tensors are elsewhere), so
	// that lengths inside it are checked against bytes that exist rather
	// than against a size the zip directory claims.
	b, err := readSmall(pkl, maxPickleBytes+1)
	if err != nil {
		return nil, err
	}
	if len(b) > maxPickleBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrFormat, pkl.Name, maxPickleBytes)
	}
	src := &byteSource{r: bufio.NewReader(bytes.NewReader(b)), left: int64(len(b))}
	root, err := unpickle(src, p.zipPersistent)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pkl.Name, err)
	}
	return root, nil
}

func readSmall(zf *zip.File, limit int64) ([]byte, error) {
	rc, err := zf.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, zf.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, zf.Name, err)
	}
	return b, nil
}

// storageType checks a persistent id's storage class.
func storageType(v any) (DType, int, error) {
	g, ok := v.(pyGlobal)
	if !ok || g.Module != "torch" {
		return "", 0, fmt.Errorf("%w: storage type is %s", ErrPickle, typeName(v))
	}
	st, ok := storageTypes[g.Name]
	if !ok {
		return "", 0, fmt.Errorf("%w: unsupported storage type %s", ErrPickle, g)
	}
	return st.dtype, st.size, nil
}

// storageFor returns the storage named key, checking that every reference
// to it agrees on its type.
func (p *pthReader) storageFor(key string, dt DType, size int, location string, numel int64) (*pyStorage, error) {
	if numel < 0 || numel > math.MaxInt64/8 {
		return nil, fmt.Errorf("%w: storage %q has %d elements", ErrPickle, key, numel)
	}
	if st, ok := p.storages[key]; ok {
		if st.dtype != dt {
			return nil, fmt.Errorf("%w: storage %q used as %s and %s", ErrPickle, key, st.dtype, dt)
		}
		return st, nil
	}
	st := &pyStorage{dtype: dt, elemSize: size, key: key, location: location, numel: numel}
	p.storages[key] = st
	return st, nil
}

func pidTuple(pid any) (pyTuple, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) == 0 || t[0] != "storage" {
		return nil, fmt.Errorf("%w: persistent id is %s, not a storage tuple", ErrPickle, typeName(pid))
	}
	return t, nil
}

// storagePID holds the fields common to both persistent-id layouts:
// ('storage', storage_type, key, location, numel, ...).
type storagePID struct {
	dt       DType
	size     int
	key, loc string
	numel    int64
}

// parseStoragePID checks that pid is a tuple of n fields and decodes its
// storage type, key, location and element count; what names the layout
// in errors.
func parseStoragePID(pid any, n int, what string) (pyTuple, storagePID, error) {
	t, err := pidTuple(pid)
	if err != nil {
		return nil, storagePID{}, err
	}
	if len(t) != n {
		return nil, storagePID{}, fmt.Errorf("%w: %s persistent id with %d fields, want %d", ErrPickle, what, len(t), n)
	}
	var st storagePID
	if st.dt, st.size, err = storageType(t[1]); err != nil {
		return nil, storagePID{}, err
	}
	var ok1, ok2, ok3 bool
	st.key, ok1 = t[2].(string)
	st.loc, ok2 = t[3].(string)
	st.numel, ok3 = t[4].(int64)
	if !ok1 || !ok2 || !ok3 {
		return nil, storagePID{}, fmt.Errorf("%w: malformed %s persistent id", ErrPickle, what)
	}
	return t, st, nil
}

// zipPersistent resolves ('storage', storage_type, key, location, numel).
func (p *pthReader) zipPersistent(pid any) (any, error) {
	t, st, err := parseStoragePID(pid, 5, "storage")
	if err != nil {
		return nil, err
	}
	dt, size, key, loc, numel := st.dt, st.size, st.key, st.loc, st.numel
	if t[1].(pyGlobal).Name == "UntypedStorage" {
		// untyped storages count bytes, as do byte storages
		dt, size = Uint8, 1
	}
	if _, ok := p.records[key]; !ok {
		return nil, fmt.Errorf("%w: storage %q has no data record", ErrFormat, key)
	}
	return p.storageFor(key, dt, size, loc, numel)
}

func (p *pthReader) openLegacy() (any, error) {
	src := &byteSource{r: bufio.NewReaderSize(io.NewSectionReader(p.f, 0, p.size), 1<<16), left: p.size}
	magic, err := unpickle(src, nil)
	if err != nil {
		return nil, fmt.Errorf("legacy header: %w", err)
	}
	if m, ok := magic.(*big.Int); !ok || m.Cmp(legacyMagic) != 0 {
		return nil, fmt.Errorf("%w: a pickle without torch's magic number (not a torch.save file)", ErrFormat)
	}
	proto, err := unpickle(src, nil)
	if err != nil {
		return nil, fmt.Errorf("legacy header: %w", err)
	}
	if proto != int64(1001) {
		return nil, fmt.Errorf("%w: legacy protocol version %v, want 1001", ErrFormat, proto)
	}
	info, err := unpickle(src, nil)
	if err != nil {
		return nil, fmt.Errorf("legacy sys_info: %w", err)
	}
	if d, ok := info.(*pyDict); ok {
		if le, ok := d.get("little_endian"); ok && le == false {
			p.bigEndian = true
		}
	}
	root, err := unpickle(src, p.legacyPersistent)
	if err != nil {
		return nil, err
	}
	keysV, err := unpickle(src, nil)
	if err != nil {
		return nil, fmt.Errorf("legacy storage keys: %w", err)
	}
	kl, ok := keysV.(*pyList)
	if !ok {
		return nil, fmt.Errorf("%w: legacy storage keys are %s", ErrFormat, typeName(keysV))
	}
	p.legacyRec = map[string]legacyRecord{}
	pos := src.pos
	var hdr [8]byte
	for _, kv := range kl.items {
		key, ok := kv.(string)
		if !ok {
			return nil, fmt.Errorf("%w: legacy storage key is %s", ErrFormat, typeName(kv))
		}
		st, ok := p.storages[key]
		if !ok {
			return nil, fmt.Errorf("%w: legacy storage %q is not used by any tensor", ErrFormat, key)
		}
		if _, err := p.f.ReadAt(hdr[:], pos); err != nil {
			return nil, fmt.Errorf("%w: legacy storage %q: truncated file", ErrFormat, key)
		}
		numel := int64(le64(hdr[:], p.bigEndian))
		if numel < 0 || numel > (p.size-pos-8)/int64(st.elemSize) {
			return nil, fmt.Errorf("%w: legacy storage %q: %d elements do not fit in the file", ErrFormat, key, numel)
		}
		p.legacyRec[key] = legacyRecord{offset: pos + 8, numel: numel}
		pos += 8 + numel*int64(st.elemSize)
	}
	return root, nil
}

func le64(b []byte, bigEndian bool) uint64 {
	var x uint64
	if bigEndian {
		for i := 0; i < 8; i++ {
			x = x<<8 | uint64(b[i])
		}
		return x
	}
	for i := 7; i >= 0; i-- {
		x = x<<8 | uint64(b[i])
	}
	return x
}

// legacyPersistent resolves ('storage', storage_type, root_key, location,
// numel, view_metadata); a view is (view_key, offset, view_numel) into the
// root storage.
func (p *pthReader) legacyPersistent(pid any) (any, error) {
	t, st, err := parseStoragePID(pid, 6, "legacy storage")
	if err != nil {
		return nil, err
	}
	dt, size, key, loc := st.dt, st.size, st.key, st.loc
	root, err := p.storageFor(key, dt, size, loc, st.numel)
	if err != nil {
		return nil, err
	}
	if t[5] == nil {
		return root, nil
	}
	view, ok := t[5].(pyTuple)
	if !ok || len(view) != 3 {
		return nil, fmt.Errorf("%w: malformed legacy storage view", ErrPickle)
	}
	vkey, ok1 := view[0].(string)
	off, ok2 := view[1].(int64)
	vn, ok3 := view[2].(int64)
	if !ok1 || !ok2 || !ok3 || off < 0 || vn < 0 || off > root.numel || vn > root.numel-off {
		return nil, fmt.Errorf("%w: legacy storage view %v outside its storage of %d elements", ErrPickle, view, root.numel)
	}
	return &pyStorage{dtype: dt, elemSize: size, key: key, location: loc, numel: vn, base: off, view: vkey}, nil
}

// load reads and materialises one tensor.
func (p *pthReader) load(t *pyTensor) (*Tensor, error) {
	st := t.storage
	es := int64(st.elemSize)
	if _, err := numElements(t.shape, math.MaxInt64/8); err != nil {
		return nil, err
	}
	span, err := viewSpan(t.shape, t.stride)
	if err != nil {
		return nil, err
	}
	if t.offset > st.numel || span > st.numel-t.offset {
		return nil, fmt.Errorf("tensor of shape %v at offset %d needs %d elements, storage %q holds %d", t.shape, t.offset, span, st.key, st.numel)
	}
	if span == 0 {
		return decodeView(nil, st.dtype, p.bigEndian, t.shape, t.stride)
	}
	start := (st.base + t.offset) * es
	if st.dtype == Float32 && !p.bigEndian && nativeLittleEndian && isContiguous(t.shape, t.stride) {
		// The stored bytes are the values: read them straight into the
		// tensor, without a buffer to decode from.
		if err := p.checkRoot(st.key, start, span*es); err != nil {
			return nil, err
		}
		out := &Tensor{Shape: append([]int{}, t.shape...), Stored: Float32, F32: make([]float32, span)}
		if err := p.readRootInto(st.key, start, float32Bytes(out.F32)); err != nil {
			return nil, err
		}
		return out, nil
	}
	raw, err := p.readRoot(st.key, start, span*es)
	if err != nil {
		return nil, err
	}
	return decodeView(raw, st.dtype, p.bigEndian, t.shape, t.stride)
}

// readRoot reads n bytes at byte offset off of the root storage key.
func (p *pthReader) readRoot(key string, off, n int64) ([]byte, error) {
	if err := p.checkRoot(key, off, n); err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if err := p.readRootInto(key, off, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// checkRoot checks, before anything is allocated for them, that n bytes
// at byte offset off of the root storage key exist: within the storage's
// record, and for a stored record within the file.
func (p *pthReader) checkRoot(key string, off, n int64) error {
	if p.legacy {
		rec, ok := p.legacyRec[key]
		if !ok {
			return fmt.Errorf("%w: storage %q has no data", ErrFormat, key)
		}
		es := int64(p.storages[key].elemSize)
		if off+n > rec.numel*es {
			return fmt.Errorf("storage %q holds %d bytes, tensor needs %d: storage shorter than its tensor", key, rec.numel*es, off+n)
		}
		if rec.offset+off+n > p.size {
			return fmt.Errorf("%w: storage %q runs past the end of the file (truncated?)", ErrFormat, key)
		}
		return nil
	}
	zf, ok := p.records[key]
	if !ok {
		return fmt.Errorf("%w: storage %q has no data record", ErrFormat, key)
	}
	if zf.UncompressedSize64 > math.MaxInt64 || off+n > int64(zf.UncompressedSize64) {
		return fmt.Errorf("storage %q holds %d bytes, tensor needs %d: storage shorter than its tensor", key, zf.UncompressedSize64, off+n)
	}
	if zf.Method == zip.Store {
		at, err := zf.DataOffset()
		if err != nil {
			return fmt.Errorf("%w: storage %q: %v", ErrFormat, key, err)
		}
		if at < 0 || at+off+n > p.size {
			return fmt.Errorf("%w: storage %q runs past the end of the file (truncated?)", ErrFormat, key)
		}
		return nil
	}
	// A compressed record: the output is bounded by the record's declared
	// size, checked above; a lying size ends in a read error, not a large
	// allocation beyond the file's worth.
	if n > 64*p.size+(1<<20) {
		return fmt.Errorf("%w: storage %q claims %d bytes from a %d-byte file", ErrFormat, key, n, p.size)
	}
	return nil
}

// readRootInto fills buf with the bytes at byte offset off of the root
// storage key, after checkRoot.
func (p *pthReader) readRootInto(key string, off int64, buf []byte) error {
	if p.legacy {
		if _, err := p.f.ReadAt(buf, p.legacyRec[key].offset+off); err != nil {
			return fmt.Errorf("storage %q: %w", key, unexpected(err))
		}
		return nil
	}
	zf := p.records[key]
	if zf.Method == zip.Store {
		at, err := zf.DataOffset()
		if err != nil {
			return fmt.Errorf("%w: storage %q: %v", ErrFormat, key, err)
		}
		if _, err := p.f.ReadAt(buf, at+off); err != nil {
			return fmt.Errorf("storage %q: %w", key, unexpected(err))
		}
		return nil
	}
	// A compressed record: stream up to the bytes wanted.
	rc, err := zf.Open()
	if err != nil {
		return fmt.Errorf("%w: storage %q: %v", ErrFormat, key, err)
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, off); err != nil {
		return fmt.Errorf("storage %q: %w", key, unexpected(err))
	}
	if _, err := io.ReadFull(rc, buf); err != nil {
		return fmt.Errorf("storage %q: %w", key, unexpected(err))
	}
	return nil
}
