package nn

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/mam-go/mam-go/weights"
)

// Params is the one way model code fetches its parameters: by state-dict
// name, relative to a prefix, with the shape the model requires. It reads
// a checkpoint's weights.Store (NewParams) or, for benchmarks and tests
// without a checkpoint, draws seeded random values for every name the model
// asks for (RandomParams), so that a model's constructor is its only
// description of the state-dict schema.
//
// Navigation follows the state dict, like candle's VarBuilder:
// p.Sub("blocks").Index(3).Floats("attn.qkv.weight", 3*c, c). Errors do not
// interrupt construction: the first missing or mis-shaped tensor is
// recorded (Err) and later fetches return zeros of the requested shape, so
// a constructor reads like the module it builds and checks once.
//
// Params is safe for concurrent use.
type Params struct {
	src    *paramSource
	prefix string
}

type paramSource struct {
	mu    sync.Mutex
	store *weights.Store // checkpoint mode
	rng   *rand.Rand     // random mode
	drawn map[string]*weights.Tensor
	init  InitFunc
	err   error
}

// InitFunc gives the random distribution of a parameter drawn by
// RandomParams: values are offset + scale*U(-1, 1).
type InitFunc func(name string, shape []int) (scale, offset float64)

// DefaultInit is RandomParams' distribution: weights of two or more axes
// U(-1, 1)/sqrt(fan_in); one-axis "weight"s (norm scales) and running
// variances 1 +- 0.1; biases and running means +-0.02; other tensors
// (embeddings, tables) +-0.02.
func DefaultInit(name string, shape []int) (scale, offset float64) {
	base := name[strings.LastIndexByte(name, '.')+1:]
	switch {
	case base == "running_var":
		return 0.1, 1
	case base == "weight" && len(shape) == 1:
		return 0.1, 1
	case len(shape) >= 2 && (base == "weight" || strings.HasSuffix(base, "_weight")):
		fan := 1
		for _, d := range shape[1:] {
			fan *= d
		}
		return 1 / math.Sqrt(float64(fan)), 0
	}
	return 0.02, 0
}

// ErrParams is wrapped by every error Params records, besides the
// weights package's ErrMissing or ErrShape that says what was wrong.
var ErrParams = errors.New("model parameters")

// NewParams reads parameters from s (a checkpoint, or a view of one).
func NewParams(s *weights.Store) *Params {
	return &Params{src: &paramSource{store: s}}
}

// RandomParams draws every parameter asked for from a generator seeded with
// seed, distributed by init (DefaultInit when nil). Asking twice for a name
// gives the same values. Store returns what was drawn.
func RandomParams(seed int64, init InitFunc) *Params {
	if init == nil {
		init = DefaultInit
	}
	return &Params{src: &paramSource{rng: rand.New(rand.NewSource(seed)), drawn: map[string]*weights.Tensor{}, init: init}}
}

// Sub returns the view of names under prefix name ("blocks" -> "blocks.*").
func (p *Params) Sub(name string) *Params {
	return &Params{src: p.src, prefix: p.prefix + name + "."}
}

// Index returns the view of the i-th element of a list module
// ("blocks" -> "blocks.3.*" is p.Sub("blocks").Index(3)).
func (p *Params) Index(i int) *Params { return p.Sub(strconv.Itoa(i)) }

// Prefix is the view's state-dict prefix with a trailing dot, or "".
func (p *Params) Prefix() string { return p.prefix }

// Random reports whether p draws random values instead of reading a
// checkpoint.
func (p *Params) Random() bool { return p.src.store == nil }

// Has reports whether the checkpoint holds name (always true for random
// parameters).
func (p *Params) Has(name string) bool {
	if p.src.store == nil {
		return true
	}
	return p.src.store.Has(p.prefix + name)
}

// Shape returns the stored shape of name, for models whose sizes are read
// from a checkpoint (false when absent or random).
func (p *Params) Shape(name string) ([]int, bool) {
	if p.src.store == nil {
		return nil, false
	}
	return p.src.store.Shape(p.prefix + name)
}

// Floats returns the values of name, which must have exactly shape. On an
// error (recorded, see Err) it returns zeros of that shape.
func (p *Params) Floats(name string, shape ...int) []float32 {
	full := p.prefix + name
	n := 1
	for _, d := range shape {
		if d < 0 {
			p.fail(fmt.Errorf("nn: parameter %q: negative size in shape %v: %w", full, shape, ErrParams))
			return nil
		}
		n *= d
	}
	s := p.src
	if s.store == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		if t, ok := s.drawn[full]; ok {
			if !slices.Equal(t.Shape, shape) {
				s.setErr(fmt.Errorf("nn: parameter %q asked for with shapes %v and %v: %w: %w", full, t.Shape, shape, ErrParams, weights.ErrShape))
				return make([]float32, n)
			}
			return t.F32
		}
		scale, offset := s.init(full, shape)
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(offset + scale*(2*s.rng.Float64()-1))
		}
		s.drawn[full] = &weights.Tensor{Shape: append([]int(nil), shape...), Stored: weights.Float32, F32: v}
		return v
	}
	v, err := s.store.Floats(full, shape...)
	if err == nil && len(shape) == 0 && len(v) != 1 {
		err = fmt.Errorf("nn: parameter %q has %d values, want a scalar: %w", full, len(v), weights.ErrShape)
	}
	if err != nil {
		p.fail(fmt.Errorf("%w: %w", ErrParams, err))
		return make([]float32, n)
	}
	return v
}

// Node fetches name with shape (as Floats) and declares it as a parameter
// of g, bound once.
func (p *Params) Node(g *Graph, name string, shape ...int) *Node {
	v := p.Floats(name, shape...)
	if len(shape) == 0 {
		shape = []int{1}
	}
	return g.Param(p.prefix+name, v, shape...)
}

// Weight is a parameter ready to be bound to graphs: its full state-dict
// name (the graph parameter's name), its shape and its values. Model
// constructors fetch Weights up front (Params.Weight) and their forward
// methods bind them (Weight.Node), so that building a model asks for every
// tensor it needs before any graph exists. A Weight computed from
// checkpoint tensors (a folded BatchNorm, a reshaped view) is made by the
// model with a name of its own.
type Weight struct {
	Name  string
	Shape []int
	Data  []float32
}

// Weight fetches name with shape (as Floats) as a Weight.
func (p *Params) Weight(name string, shape ...int) Weight {
	return Weight{Name: p.prefix + name, Shape: append([]int(nil), shape...), Data: p.Floats(name, shape...)}
}

// Node binds w to g as a parameter (Graph.Param): bound once, read by every
// run. A zero Weight (no values, as for an absent bias) gives nil.
func (w Weight) Node(g *Graph) *Node {
	if w.Data == nil && len(w.Shape) == 0 {
		return nil
	}
	shape := w.Shape
	if len(shape) == 0 {
		shape = []int{1}
	}
	return g.Param(w.Name, w.Data, shape...)
}

// View returns w seen with another shape of the same size (the same
// values, a name of its own): a conv weight (C, Cin, 1, 1) as a Linear
// weight (C, Cin), for instance.
func (w Weight) View(shape ...int) Weight {
	return Weight{Name: w.Name + fmt.Sprint(shape), Shape: append([]int(nil), shape...), Data: w.Data}
}

// Errorf records an error found by a model's constructor (a parameter
// whose values cannot be used, say): the first error wins and Err returns
// it, wrapping ErrParams.
func (p *Params) Errorf(format string, args ...any) {
	p.fail(fmt.Errorf("%w: %w", ErrParams, fmt.Errorf(format, args...)))
}

// Ignore marks names the model knowingly does not use (training-time
// tensors, derivable buffers) so that CheckUnused does not report them.
// Absent names are fine.
func (p *Params) Ignore(names ...string) {
	if p.src.store == nil {
		return
	}
	for _, n := range names {
		if p.src.store.Has(p.prefix + n) {
			p.src.store.MarkUsed(p.prefix + n)
		}
	}
}

// Err is the first error met while fetching, or nil.
func (p *Params) Err() error {
	p.src.mu.Lock()
	defer p.src.mu.Unlock()
	return p.src.err
}

// Unused lists the checkpoint's names under this view that the model never
// fetched nor ignored, sorted (nil for random parameters).
func (p *Params) Unused() []string {
	if p.src.store == nil {
		return nil
	}
	return p.view().Unused()
}

// CheckUnused returns an error naming the tensors under this view that the
// model did not use, or nil.
func (p *Params) CheckUnused() error {
	if p.src.store == nil {
		return nil
	}
	if err := p.view().CheckUnused(); err != nil {
		return fmt.Errorf("%w: %w", ErrParams, err)
	}
	return nil
}

// Store returns the tensors RandomParams drew, named by their full
// state-dict names, as a weights.Store: a random checkpoint with exactly
// the schema the constructors asked for. For checkpoint parameters it is
// the store they read.
func (p *Params) Store() *weights.Store {
	if p.src.store != nil {
		return p.src.store
	}
	p.src.mu.Lock()
	defer p.src.mu.Unlock()
	m := make(map[string]*weights.Tensor, len(p.src.drawn))
	names := make([]string, 0, len(p.src.drawn))
	for k := range p.src.drawn {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		m[k] = p.src.drawn[k]
	}
	return weights.New("random", m)
}

// Set replaces the values of a drawn random parameter (for tests and
// benchmarks that need a particular value, such as a positive variance);
// it records an error for checkpoint parameters or a size mismatch.
func (p *Params) Set(name string, v []float32) {
	full := p.prefix + name
	s := p.src
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.drawn[full]
	if s.store != nil || !ok || len(t.F32) != len(v) {
		s.setErr(fmt.Errorf("nn: cannot set parameter %q: %w", full, ErrParams))
		return
	}
	copy(t.F32, v)
}

// view is the checkpoint store seen through p's prefix.
func (p *Params) view() *weights.Store {
	if p.prefix == "" {
		return p.src.store
	}
	return p.src.store.Sub(strings.TrimSuffix(p.prefix, "."))
}

func (p *Params) fail(err error) {
	p.src.mu.Lock()
	p.src.setErr(err)
	p.src.mu.Unlock()
}

func (s *paramSource) setErr(err error) {
	if s.err == nil {
		s.err = err
	}
}

// Build runs a model's constructor over a checkpoint: newModel fetches its
// parameters from NewParams(s). It returns the model, or the first error
// of the fetches, or, with strict, an error naming the tensors under s that
// the model did not use (a checkpoint of another configuration).
func Build[T any](s *weights.Store, strict bool, newModel func(p *Params) T) (T, error) {
	var zero T
	p := NewParams(s)
	m := newModel(p)
	if err := p.Err(); err != nil {
		return zero, err
	}
	if strict {
		if err := p.CheckUnused(); err != nil {
			return zero, err
		}
	}
	return m, nil
}

// RandomStore runs a model's constructor over RandomParams(seed, init) and
// returns the checkpoint it drew: the model's state dict, every tensor the
// constructor asked for, with seeded random values.
func RandomStore(seed int64, init InitFunc, newModel func(p *Params)) *weights.Store {
	p := RandomParams(seed, init)
	newModel(p)
	return p.Store()
}
