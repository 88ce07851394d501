// Package weights loads model tensors by their PyTorch state-dict names.
//
// It reads the released checkpoints directly: PyTorch .pth/.pt files in the
// zip layout of torch.save (and the older legacy stream), parsed with a
// restricted pickle reader that allows only the constructors a state dict
// needs (OrderedDict, torch._utils._rebuild_tensor_v2, storage classes) and
// executes nothing; numpy .npz archives; and directories of .npy files.
// Open picks the reader from the path, takes the "state_dict" of a training
// checkpoint such as MAM's and strips a DataParallel "module." prefix.
// OpenCheckpoint lists a file's tensors and loads them one at a time (for
// conversion without holding a whole model), and CreateNPZ/CreateNPYDir
// write them back out.
//
// A Store gives prefix navigation (Sub, Index) in the style of candle's
// VarBuilder, checks every requested name and shape, and reports the tensors
// that were never used.
package weights

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// DType is the element type a tensor was stored with.
type DType string

// Element types found in state dicts and .npy files.
const (
	Float32  DType = "float32"
	Float16  DType = "float16"
	BFloat16 DType = "bfloat16"
	Float64  DType = "float64"
	Int64    DType = "int64"
	Int32    DType = "int32"
	Int16    DType = "int16"
	Int8     DType = "int8"
	Uint8    DType = "uint8"
	Bool     DType = "bool"
)

// Tensor is one named tensor of a checkpoint, row-major. Floating-point
// tensors are held as float32 in F32 (float16/bfloat16/float64 are converted
// on load); int64 and int32 tensors are held in I64; narrower integers and
// bools, which float32 holds exactly, are held in F32. Stored records the
// on-disk type, which the writers restore.
type Tensor struct {
	Shape  []int
	Stored DType
	F32    []float32
	I64    []int64
}

// NumElements is the product of the tensor's dimensions (1 for a scalar).
func (t *Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// IsInt reports whether the tensor holds integers.
func (t *Tensor) IsInt() bool { return t.I64 != nil }

// Float32s returns the values as float32, converting integers.
func (t *Tensor) Float32s() []float32 {
	if t.F32 != nil || !t.IsInt() {
		return t.F32
	}
	out := make([]float32, len(t.I64))
	for i, v := range t.I64 {
		out[i] = float32(v)
	}
	return out
}

// ErrMissing is wrapped by errors for names a Store does not hold.
var ErrMissing = errors.New("missing tensor")

// ErrShape is wrapped by errors for tensors whose shape is not the expected one.
var ErrShape = errors.New("shape mismatch")

type storeData struct {
	mu      sync.Mutex
	source  string
	tensors map[string]*Tensor
	used    map[string]bool
}

// Store is a set of named tensors seen through a name prefix. The zero
// prefix sees every tensor; Sub and Index return views on the same data that
// share the record of used names.
type Store struct {
	d      *storeData
	prefix string
}

// New makes a Store over tensors; source names it in errors (a file path).
func New(source string, tensors map[string]*Tensor) *Store {
	return &Store{d: &storeData{source: source, tensors: tensors, used: map[string]bool{}}}
}

// Source is the name the store was made from (a path), for messages.
func (s *Store) Source() string { return s.d.source }

// Prefix is the state-dict prefix of this view, with a trailing dot, or "".
func (s *Store) Prefix() string { return s.prefix }

// Sub returns the view of names under prefix name ("image_encoder" -> "image_encoder.*").
func (s *Store) Sub(name string) *Store {
	return &Store{d: s.d, prefix: s.prefix + name + "."}
}

// Index returns the view of the i-th element of a list module ("blocks" -> "blocks.3.*").
func (s *Store) Index(i int) *Store { return s.Sub(strconv.Itoa(i)) }

// Has reports whether the view holds name.
func (s *Store) Has(name string) bool {
	_, ok := s.d.tensors[s.prefix+name]
	return ok
}

// Raw returns the tensor stored under name, marking it used. It errors with
// ErrMissing when the name is absent.
func (s *Store) Raw(name string) (*Tensor, error) {
	full := s.prefix + name
	t, ok := s.d.tensors[full]
	if !ok {
		return nil, fmt.Errorf("weights: %s: %q: %w", s.d.source, full, ErrMissing)
	}
	s.d.mu.Lock()
	s.d.used[full] = true
	s.d.mu.Unlock()
	return t, nil
}

// Floats returns the float32 values of the tensor under name, checking
// its shape when shape is given (an empty shape with no arguments is not
// checked). It errors naming the tensor when it is missing or its shape
// differs. The values are the store's: do not modify them.
func (s *Store) Floats(name string, shape ...int) ([]float32, error) {
	t, err := s.Raw(name)
	if err != nil {
		return nil, err
	}
	if len(shape) > 0 && !slices.Equal(t.Shape, shape) {
		return nil, fmt.Errorf("weights: %s: %q has shape %v, want %v: %w", s.d.source, s.prefix+name, t.Shape, shape, ErrShape)
	}
	return t.Float32s(), nil
}

// Shape returns the stored shape of name without marking it used.
func (s *Store) Shape(name string) ([]int, bool) {
	t, ok := s.d.tensors[s.prefix+name]
	if !ok {
		return nil, false
	}
	return t.Shape, true
}

// Names lists the full names under this view, sorted.
func (s *Store) Names() []string {
	var out []string
	for k := range s.d.tensors {
		if strings.HasPrefix(k, s.prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Len is the number of tensors under this view.
func (s *Store) Len() int { return len(s.Names()) }

// MarkUsed marks the tensor name under this view as used (for tensors that
// a model knowingly ignores, such as BatchNorm's num_batches_tracked).
func (s *Store) MarkUsed(name string) {
	s.d.mu.Lock()
	s.d.used[s.prefix+name] = true
	s.d.mu.Unlock()
}

// Unused lists the names under this view that were never read, sorted.
func (s *Store) Unused() []string {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	var out []string
	for _, k := range s.Names() {
		if !s.d.used[k] {
			out = append(out, k)
		}
	}
	return out
}

// CheckUnused returns an error naming the tensors under this view that were
// never read (at most 10 are listed), or nil.
func (s *Store) CheckUnused() error {
	u := s.Unused()
	if len(u) == 0 {
		return nil
	}
	list := u
	if len(list) > 10 {
		list = list[:10]
	}
	return fmt.Errorf("weights: %s: %d unexpected tensor(s) not used by the model: %s", s.d.source, len(u), strings.Join(list, ", "))
}
