package weights

// The Python values the pickle machine builds: tuples, lists, dicts
// (insertion-ordered, as OrderedDict) and sets.

import (
	"fmt"
	"math/big"
)

// pyTuple is an immutable Python tuple.
type pyTuple []any

// pyList is a mutable Python list (shared by reference through the memo).
type pyList struct{ items []any }

// pyDict is a Python dict or OrderedDict, keeping insertion order.
type pyDict struct {
	keys  []any
	vals  []any
	index map[any]int // hashable keys only (strings, numbers, bools, None)
	state any         // BUILD state (OrderedDict._metadata)
}

func newDict() *pyDict { return &pyDict{index: map[any]int{}} }

// set assigns d[k] = v, replacing an existing hashable key.
func (d *pyDict) set(k, v any) {
	if hashable(k) {
		if i, ok := d.index[k]; ok {
			d.vals[i] = v
			return
		}
		d.index[k] = len(d.keys)
	}
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
}

// get returns d[k] for a string key.
func (d *pyDict) get(k string) (any, bool) {
	i, ok := d.index[k]
	if !ok {
		return nil, false
	}
	return d.vals[i], true
}

func hashable(k any) bool {
	switch k.(type) {
	case string, int64, float64, bool, nil, pyGlobal:
		return true
	}
	return false
}

// pySet is a Python set or frozenset (kept as a list of items).
type pySet struct{ items []any }

// pyMark is the value MARK pushes (kept on the stack so a misplaced mark is
// caught rather than used as data).
type pyMark struct{}

// typeName names a value's Python type, with an article, for messages.
func typeName(v any) string {
	switch t := v.(type) {
	case nil:
		return "None"
	case bool:
		return "a bool"
	case int64, *big.Int:
		return "an int"
	case float64:
		return "a float"
	case string:
		return "a str"
	case []byte:
		return "bytes"
	case pyTuple:
		return "a tuple"
	case *pyList:
		return "a list"
	case *pyDict:
		return "a dict"
	case *pySet:
		return "a set"
	case pyGlobal:
		return "the global " + t.String()
	case *pyStorage:
		return "a storage"
	case *pyTensor:
		return "a tensor"
	}
	return fmt.Sprintf("%T", v)
}
