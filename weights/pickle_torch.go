package weights

// The globals a torch.save state dict needs, and nothing else: the
// allow-list GLOBAL resolves against, the storage classes, and the calls
// REDUCE may make (OrderedDict, torch._utils._rebuild_tensor_v2, ...).

import (
	"fmt"
	"math"
	"strings"
)

// pyGlobal is a name resolved by GLOBAL/STACK_GLOBAL from the allow-list.
type pyGlobal struct{ Module, Name string }

func (g pyGlobal) String() string { return g.Module + "." + g.Name }

// pyStorage is a torch storage named by a persistent id.
type pyStorage struct {
	dtype    DType
	elemSize int
	key      string
	location string
	numel    int64  // declared number of elements
	base     int64  // element offset of a view into its root storage (legacy format)
	view     string // the view's key, for messages (legacy format)
}

// pyTensor is the result of torch._utils._rebuild_tensor_v2: a strided view
// of a storage. Nothing is read until the tensor is loaded.
type pyTensor struct {
	storage *pyStorage
	offset  int64
	shape   []int
	stride  []int64
}

// storageTypes maps torch's legacy storage classes to element types.
var storageTypes = map[string]struct {
	dtype DType
	size  int
}{
	"FloatStorage":    {Float32, 4},
	"HalfStorage":     {Float16, 2},
	"BFloat16Storage": {BFloat16, 2},
	"DoubleStorage":   {Float64, 8},
	"LongStorage":     {Int64, 8},
	"IntStorage":      {Int32, 4},
	"ShortStorage":    {Int16, 2},
	"CharStorage":     {Int8, 1},
	"ByteStorage":     {Uint8, 1},
	"BoolStorage":     {Bool, 1},
	"UntypedStorage":  {Uint8, 1},
}

// allowedGlobal resolves a GLOBAL against the allow-list.
func allowedGlobal(module, name string) (any, error) {
	g := pyGlobal{module, name}
	switch module {
	case "collections":
		if name == "OrderedDict" {
			return g, nil
		}
	case "torch._utils":
		switch name {
		case "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state":
			return g, nil
		}
	case "torch._tensor":
		if name == "_rebuild_from_type_v2" {
			return g, nil
		}
	case "torch":
		if name == "Tensor" {
			return g, nil
		}
		if _, ok := storageTypes[name]; ok {
			return g, nil
		}
		if strings.HasSuffix(name, "Storage") {
			return nil, fmt.Errorf("%w: unsupported storage type %s", ErrPickle, g)
		}
	case "torch.nn.parameter":
		if name == "Parameter" {
			return g, nil
		}
	}
	return nil, fmt.Errorf("%w: global %s is not allowed (a state dict needs only tensors, dicts and numbers)", ErrPickle, g)
}

// objectOp executes the opcodes that name or call objects: GLOBAL and
// STACK_GLOBAL (from the allow-list), REDUCE, BUILD, persistent ids; the
// opcodes that would create class instances or read out-of-band data are
// errors.
func (u *unpickler) objectOp(op byte) bool {
	switch op {
	case opGlobal:
		mod := u.line()
		u.pushGlobal(mod, u.line())
	case opStackGlobal:
		names := u.popN(2)
		if len(names) == 2 {
			mod, ok1 := names[0].(string)
			name, ok2 := names[1].(string)
			if !ok1 || !ok2 {
				u.failf("STACK_GLOBAL needs two strings")
			}
			u.pushGlobal(mod, name)
		}
	case opReduce:
		if fa := u.popN(2); len(fa) == 2 {
			args, ok := fa[1].(pyTuple)
			if !ok {
				u.failf("REDUCE arguments are %s, not a tuple", typeName(fa[1]))
				break
			}
			v, err := call(fa[0], args)
			u.fail(err)
			u.push(v)
		}
	case opBuild:
		state := u.pop()
		if d, ok := topAs[*pyDict](u, "BUILD on"); ok {
			// OrderedDict's state sets attributes such as _metadata; they
			// describe module versions and are kept, not interpreted.
			d.state = state
		}
	case opPersID:
		u.persistent(u.line())
	case opBinPersID:
		u.persistent(u.pop())
	case opNewObj, opNewObjEx, opInst, opObj:
		u.failf("opcode %q creates class instances and is not allowed", opName(op))
	case opExt1, opExt2, opExt4:
		u.failf("extension registry opcode %q is not allowed", opName(op))
	case opNextBuffer, opReadOnlyBuffer:
		u.failf("out-of-band buffers are not supported")
	default:
		return false
	}
	return true
}

// pushGlobal pushes the allowed global module.name.
func (u *unpickler) pushGlobal(mod, name string) {
	if u.err != nil {
		return
	}
	g, err := allowedGlobal(mod, name)
	u.fail(err)
	u.push(g)
}

// persistent pushes the value of a persistent id (a torch storage).
func (u *unpickler) persistent(pid any) {
	if u.err != nil {
		return
	}
	if u.persistentLoad == nil {
		u.failf("persistent id without a loader")
		return
	}
	v, err := u.persistentLoad(pid)
	u.fail(err)
	u.push(v)
}

// call applies an allowed global to its arguments. Nothing is executed: each
// case builds the Go model of what the Python function would return.
func call(fn any, args pyTuple) (any, error) {
	g, ok := fn.(pyGlobal)
	if !ok {
		return nil, fmt.Errorf("%w: REDUCE calls %s", ErrPickle, typeName(fn))
	}
	switch g {
	case pyGlobal{"collections", "OrderedDict"}:
		if len(args) != 0 {
			return nil, fmt.Errorf("%w: OrderedDict with %d arguments", ErrPickle, len(args))
		}
		return newDict(), nil
	case pyGlobal{"torch._utils", "_rebuild_tensor_v2"}, pyGlobal{"torch._utils", "_rebuild_tensor"}:
		return rebuildTensor(args)
	case pyGlobal{"torch._utils", "_rebuild_parameter"}, pyGlobal{"torch._utils", "_rebuild_parameter_with_state"}:
		if len(args) < 1 {
			return nil, fmt.Errorf("%w: %s without data", ErrPickle, g)
		}
		t, ok := args[0].(*pyTensor)
		if !ok {
			return nil, fmt.Errorf("%w: %s of %s", ErrPickle, g, typeName(args[0]))
		}
		return t, nil
	case pyGlobal{"torch._tensor", "_rebuild_from_type_v2"}:
		// (func, type, args, state): a tensor subclass; only plain tensors
		// and parameters are accepted.
		if len(args) < 3 {
			return nil, fmt.Errorf("%w: %s with %d arguments", ErrPickle, g, len(args))
		}
		typ, _ := args[1].(pyGlobal)
		if typ != (pyGlobal{"torch", "Tensor"}) && typ != (pyGlobal{"torch.nn.parameter", "Parameter"}) {
			return nil, fmt.Errorf("%w: %s of type %v", ErrPickle, g, args[1])
		}
		inner, ok := args[2].(pyTuple)
		if !ok {
			return nil, fmt.Errorf("%w: %s arguments are %s", ErrPickle, g, typeName(args[2]))
		}
		return call(args[0], inner)
	}
	return nil, fmt.Errorf("%w: %s cannot be called", ErrPickle, g)
}

// rebuildTensor models torch._utils._rebuild_tensor_v2(storage,
// storage_offset, size, stride, requires_grad, backward_hooks[, metadata]).
func rebuildTensor(args pyTuple) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("%w: _rebuild_tensor_v2 with %d arguments", ErrPickle, len(args))
	}
	st, ok := args[0].(*pyStorage)
	if !ok {
		return nil, fmt.Errorf("%w: tensor storage is %s", ErrPickle, typeName(args[0]))
	}
	off, ok := args[1].(int64)
	if !ok || off < 0 {
		return nil, fmt.Errorf("%w: bad storage offset %v", ErrPickle, args[1])
	}
	size, err := intTuple(args[2], "size")
	if err != nil {
		return nil, err
	}
	stride, err := intTuple(args[3], "stride")
	if err != nil {
		return nil, err
	}
	if len(size) != len(stride) {
		return nil, fmt.Errorf("%w: size %v and stride %v differ in length", ErrPickle, size, stride)
	}
	shape := make([]int, len(size))
	for i, d := range size {
		if d < 0 || d > math.MaxInt32 {
			return nil, fmt.Errorf("%w: bad tensor size %v", ErrPickle, size)
		}
		if stride[i] < 0 {
			return nil, fmt.Errorf("%w: negative stride %v", ErrPickle, stride)
		}
		shape[i] = int(d)
	}
	return &pyTensor{storage: st, offset: off, shape: shape, stride: stride}, nil
}

func intTuple(v any, what string) ([]int64, error) {
	var items []any
	switch t := v.(type) {
	case pyTuple:
		items = t
	case *pyList:
		items = t.items
	default:
		return nil, fmt.Errorf("%w: tensor %s is %s", ErrPickle, what, typeName(v))
	}
	if len(items) > maxPickleDims {
		return nil, fmt.Errorf("%w: tensor %s has %d dimensions", ErrPickle, what, len(items))
	}
	out := make([]int64, len(items))
	for i, x := range items {
		n, ok := x.(int64)
		if !ok {
			return nil, fmt.Errorf("%w: tensor %s %v holds %s", ErrPickle, what, v, typeName(x))
		}
		out[i] = n
	}
	return out, nil
}
