package weights

import (
	"context"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// maxMetaValues bounds the values converted for Checkpoint.Meta.
const maxMetaValues = 1 << 20

// Format names the layout a checkpoint was read from.
type Format string

// Checkpoint layouts.
const (
	FormatPTH       Format = "pth"        // torch.save zip archive
	FormatPTHLegacy Format = "pth-legacy" // torch.save legacy stream (PyTorch < 1.6)
	FormatNPZ       Format = "npz"        // numpy .npz
	FormatNPYDir    Format = "npy-dir"    // a directory of .npy files
)

// TensorInfo describes a tensor of a checkpoint without loading it.
type TensorInfo struct {
	Name  string
	Shape []int
	DType DType // the stored element type
}

type entry struct {
	info TensorInfo
	load func() (*Tensor, error)
}

// Checkpoint is an open weights file whose tensors are read on demand, one
// at a time. It must be closed.
type Checkpoint struct {
	path    string
	format  Format
	names   []string
	entries map[string]*entry
	meta    map[string]any
	close   func() error
}

// OpenCheckpoint opens a weights file: a .pth/.pt torch.save file (zip or
// legacy), a .npz archive or a directory of .npy files. Nothing but the
// index is read. For a torch checkpoint whose top level is a dict holding a
// "state_dict" (or "model") dict, as MAM's training checkpoints do, the
// tensors are those of that dict and the other top-level entries are in
// Meta; a "module." prefix on every name (DataParallel) is removed.
func OpenCheckpoint(path string) (*Checkpoint, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	var c *Checkpoint
	switch {
	case fi.IsDir():
		c, err = openNPYDir(path)
	case strings.EqualFold(filepath.Ext(path), ".npz"):
		c, err = openNPZ(path)
	default:
		c, err = openTorch(path)
	}
	if err != nil {
		return nil, fmt.Errorf("weights: %s: %w", path, err)
	}
	c.stripPrefix("module.")
	return c, nil
}

func openTorch(path string) (*Checkpoint, error) {
	f, size, err := openSized(path)
	if err != nil {
		return nil, err
	}
	root, p, err := openPTH(f, size)
	if err != nil {
		f.Close()
		return nil, err
	}
	c := &Checkpoint{path: path, format: FormatPTH, entries: map[string]*entry{}, meta: map[string]any{}, close: f.Close}
	if p.legacy {
		c.format = FormatPTHLegacy
	}
	if err := c.addStateDict(root, p); err != nil {
		f.Close()
		return nil, err
	}
	return c, nil
}

// addStateDict indexes the tensors of the unpickled object root.
func (c *Checkpoint) addStateDict(root any, p *pthReader) error {
	d, ok := root.(*pyDict)
	if !ok {
		return fmt.Errorf("%w: the file holds %s, not a state dict", ErrFormat, typeName(root))
	}
	sd := d
	budget := maxMetaValues
	for _, key := range []string{"state_dict", "model"} {
		v, ok := d.get(key)
		if inner, isDict := v.(*pyDict); ok && isDict {
			sd = inner
			for i, k := range d.keys {
				if ks, _ := k.(string); ks != key {
					c.meta[fmt.Sprint(k)] = toGo(d.vals[i], &budget)
				}
			}
			break
		}
	}
	for i, k := range sd.keys {
		name, ok := k.(string)
		if !ok {
			return fmt.Errorf("%w: state dict key is %s, not a string", ErrFormat, typeName(k))
		}
		t, ok := sd.vals[i].(*pyTensor)
		if !ok {
			c.meta[name] = toGo(sd.vals[i], &budget)
			continue
		}
		if _, dup := c.entries[name]; dup {
			return fmt.Errorf("%w: tensor %q appears twice", ErrFormat, name)
		}
		c.names = append(c.names, name)
		c.entries[name] = &entry{
			info: TensorInfo{Name: name, Shape: t.shape, DType: t.storage.dtype},
			load: func() (*Tensor, error) { return p.load(t) },
		}
	}
	if len(c.names) == 0 {
		return fmt.Errorf("%w: no tensors in the state dict", ErrFormat)
	}
	return nil
}

// toGo converts a pickled value for Meta: numbers, strings, lists, dicts
// (map[string]any, keys formatted) and TensorInfo for tensors. The memo can
// make a pickle a graph with shared and cyclic parts, so the walk is bounded
// in depth and in the number of values visited.
func toGo(v any, budget *int) any { return toGoDepth(v, 0, budget) }

func toGoDepth(v any, depth int, budget *int) any {
	*budget--
	if depth > maxPickleDepth || *budget < 0 {
		return "<truncated>"
	}
	switch t := v.(type) {
	case nil, bool, int64, float64, string:
		return t
	case *big.Int:
		return t.String()
	case []byte:
		return append([]byte(nil), t...)
	case pyTuple:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = toGoDepth(x, depth+1, budget)
		}
		return out
	case *pyList:
		out := make([]any, len(t.items))
		for i, x := range t.items {
			out[i] = toGoDepth(x, depth+1, budget)
		}
		return out
	case *pyDict:
		out := make(map[string]any, len(t.keys))
		for i, k := range t.keys {
			out[fmt.Sprint(toGoDepth(k, depth+1, budget))] = toGoDepth(t.vals[i], depth+1, budget)
		}
		return out
	case *pyTensor:
		return TensorInfo{Shape: t.shape, DType: t.storage.dtype}
	}
	return typeName(v)
}

// stripPrefix removes prefix from every name when every name has it.
func (c *Checkpoint) stripPrefix(prefix string) {
	if len(c.names) == 0 {
		return
	}
	for _, n := range c.names {
		if !strings.HasPrefix(n, prefix) {
			return
		}
	}
	entries := make(map[string]*entry, len(c.entries))
	for i, n := range c.names {
		short := n[len(prefix):]
		if _, clash := entries[short]; clash {
			return
		}
		e := c.entries[n]
		e.info.Name = short
		entries[short] = e
		c.names[i] = short
	}
	c.entries = entries
}

// Path is the file the checkpoint was opened from.
func (c *Checkpoint) Path() string { return c.path }

// Format is the layout the checkpoint was read from.
func (c *Checkpoint) Format() Format { return c.format }

// Names lists the tensor names in file order.
func (c *Checkpoint) Names() []string { return append([]string(nil), c.names...) }

// Info describes the tensor name without reading it.
func (c *Checkpoint) Info(name string) (TensorInfo, bool) {
	e, ok := c.entries[name]
	if !ok {
		return TensorInfo{}, false
	}
	return e.info, true
}

// Meta holds a torch checkpoint's values that are not state-dict tensors,
// such as a MAM checkpoint's "iter" and "loss" (int64, float64, string,
// bool, nil, []any, map[string]any, or TensorInfo for a tensor).
func (c *Checkpoint) Meta() map[string]any { return c.meta }

// Load reads the tensor name.
func (c *Checkpoint) Load(name string) (*Tensor, error) {
	e, ok := c.entries[name]
	if !ok {
		return nil, fmt.Errorf("weights: %s: %q: %w", c.path, name, ErrMissing)
	}
	t, err := e.load()
	if err != nil {
		return nil, fmt.Errorf("weights: %s: %q: %w", c.path, name, err)
	}
	return t, nil
}

// Store loads every tensor into a Store.
func (c *Checkpoint) Store() (*Store, error) { return c.StoreContext(context.Background()) }

// StoreContext is Store, stopping with ctx's error when ctx is cancelled.
// The tensors are read by a few goroutines at once (reading from the page
// cache into fresh memory is bound by the CPU).
func (c *Checkpoint) StoreContext(ctx context.Context) (*Store, error) {
	loaded := make([]*Tensor, len(c.names))
	errs := make([]error, len(c.names))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), 4, len(c.names)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(c.names) {
					return
				}
				if err := ctx.Err(); err != nil {
					errs[i] = fmt.Errorf("weights: %s: %w", c.path, err)
					next.Store(int64(len(c.names))) // the others stop too
					return
				}
				loaded[i], errs[i] = c.Load(c.names[i])
				if errs[i] != nil {
					next.Store(int64(len(c.names)))
					return
				}
			}
		}()
	}
	wg.Wait()
	// Every index before the first error was taken, so loaded: the first
	// error in the file's order is the one reported.
	tensors := make(map[string]*Tensor, len(c.names))
	for i, n := range c.names {
		if errs[i] != nil {
			return nil, errs[i]
		}
		tensors[n] = loaded[i]
	}
	return New(c.path, tensors), nil
}

// Close releases the file.
func (c *Checkpoint) Close() error {
	if c.close == nil {
		return nil
	}
	err := c.close()
	c.close = nil
	return err
}

// Open loads every tensor of a weights file into a Store: a .pth/.pt file
// (a plain state dict, a training checkpoint whose "state_dict" is taken,
// or a {"model": state_dict} file such as GroundingDINO's released
// checkpoints), a .npz archive, or a directory of .npy files. See
// OpenCheckpoint.
func Open(path string) (*Store, error) { return OpenContext(context.Background(), path) }

// OpenContext is Open, stopping with ctx's error when ctx is cancelled.
func OpenContext(ctx context.Context, path string) (*Store, error) {
	c, err := OpenCheckpoint(path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.StoreContext(ctx)
}

// OpenMAM loads Matting Anything's M2M weights: the "state_dict" of a MAM
// training checkpoint ({iter, loss, state_dict, opt_state_dict, ...}) with a
// "module." prefix removed, or a plain state dict, .npz or .npy directory
// holding the same names. It is Open, named for the call sites that load
// the M2M module.
func OpenMAM(path string) (*Store, error) { return Open(path) }

// openSized opens a file and returns its size.
func openSized(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}
