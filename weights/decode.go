package weights

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// maxBroadcastElements bounds a tensor whose strides make it larger than
// the storage bytes it reads (zero strides): such a view is materialised,
// and this keeps a hostile file from asking for unbounded memory.
const maxBroadcastElements = 1 << 24

// elemInfo returns the byte size of an element type and whether it is held
// as integers (I64: int64 and int32; narrower integers and bools are exact
// in float32 and are held in F32).
func elemInfo(dt DType) (size int, isInt bool, err error) {
	switch dt {
	case Float32:
		return 4, false, nil
	case Float16, BFloat16:
		return 2, false, nil
	case Float64:
		return 8, false, nil
	case Int64:
		return 8, true, nil
	case Int32:
		return 4, true, nil
	case Int16:
		return 2, false, nil
	case Int8, Uint8, Bool:
		return 1, false, nil
	}
	return 0, false, fmt.Errorf("unsupported element type %q", dt)
}

// numElements is the product of shape, or an error when a dimension is
// negative or the product overflows limit.
func numElements(shape []int, limit int64) (int64, error) {
	n, zero := int64(1), false
	for _, d := range shape {
		switch {
		case d < 0:
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		case d == 0:
			zero = true
		case n > limit/int64(d):
			return 0, fmt.Errorf("shape %v has more than %d elements", shape, limit)
		default:
			n *= int64(d)
		}
	}
	if zero {
		return 0, nil
	}
	return n, nil
}

// viewSpan returns the number of storage elements a strided view reads,
// counted from its first element: 1 + sum((shape[i]-1) * stride[i]), or 0
// for an empty view.
func viewSpan(shape []int, stride []int64) (int64, error) {
	span := int64(1)
	for i, d := range shape {
		if d == 0 {
			return 0, nil
		}
		s := stride[i]
		if s < 0 {
			return 0, fmt.Errorf("negative stride %v", stride)
		}
		if s > 0 && int64(d-1) > (math.MaxInt64/4-span)/s {
			return 0, fmt.Errorf("stride %v of shape %v overflows", stride, shape)
		}
		span += int64(d-1) * s
	}
	return span, nil
}

// contiguousStrides returns the row-major strides of shape.
func contiguousStrides(shape []int) []int64 {
	st := make([]int64, len(shape))
	acc := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = acc
		acc *= int64(max(shape[i], 1))
	}
	return st
}

func isContiguous(shape []int, stride []int64) bool {
	acc := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] != 1 && stride[i] != acc {
			return false
		}
		acc *= int64(shape[i])
	}
	return true
}

// decodeView materialises the strided view (shape, stride) of raw, whose
// element 0 is the view's first element, into a row-major Tensor.
func decodeView(raw []byte, dt DType, bigEndian bool, shape []int, stride []int64) (*Tensor, error) {
	size, isInt, err := elemInfo(dt)
	if err != nil {
		return nil, err
	}
	n, err := numElements(shape, math.MaxInt64/8)
	if err != nil {
		return nil, err
	}
	span, err := viewSpan(shape, stride)
	if err != nil {
		return nil, err
	}
	if span*int64(size) > int64(len(raw)) {
		return nil, fmt.Errorf("tensor of shape %v needs %d bytes, storage holds %d", shape, span*int64(size), len(raw))
	}
	if n > span && n > maxBroadcastElements {
		return nil, fmt.Errorf("broadcast tensor of shape %v is too large (%d elements)", shape, n)
	}
	t := &Tensor{Shape: append([]int{}, shape...), Stored: dt}
	if isInt {
		t.I64 = make([]int64, n)
	} else {
		t.F32 = make([]float32, n)
	}
	if n == 0 {
		return t, nil
	}
	var order binary.ByteOrder = binary.LittleEndian
	if bigEndian {
		order = binary.BigEndian
	}
	if isContiguous(shape, stride) {
		decodeRun(t, 0, raw[:n*int64(size)], dt, order)
		return t, nil
	}
	// Strided (or broadcast) view: walk the multi-index, decoding runs
	// along the last axis when it is contiguous.
	nd := len(shape)
	idx := make([]int, nd)
	last := shape[nd-1]
	lastStride := stride[nd-1]
	var off int64
	for out := int64(0); out < n; out += int64(last) {
		if lastStride == 1 {
			decodeRun(t, out, raw[off*int64(size):(off+int64(last))*int64(size)], dt, order)
		} else {
			for j := 0; j < last; j++ {
				o := (off + int64(j)*lastStride) * int64(size)
				decodeRun(t, out+int64(j), raw[o:o+int64(size)], dt, order)
			}
		}
		// advance the odometer over axes 0..nd-2
		for ax := nd - 2; ax >= 0; ax-- {
			idx[ax]++
			off += stride[ax]
			if idx[ax] < shape[ax] {
				break
			}
			off -= int64(idx[ax]) * stride[ax]
			idx[ax] = 0
		}
	}
	return t, nil
}

// decodeRun decodes the consecutive elements in b into t starting at flat
// index at.
func decodeRun(t *Tensor, at int64, b []byte, dt DType, order binary.ByteOrder) {
	switch dt {
	case Float32: // the common case, written out
		dst := t.F32[at:]
		for i := range len(b) / 4 {
			dst[i] = math.Float32frombits(order.Uint32(b[4*i:]))
		}
	case Float16:
		decodeEach(t.F32[at:], b, 2, func(p []byte) float32 { return HalfToFloat32(order.Uint16(p)) })
	case BFloat16:
		decodeEach(t.F32[at:], b, 2, func(p []byte) float32 { return BFloat16ToFloat32(order.Uint16(p)) })
	case Float64:
		decodeEach(t.F32[at:], b, 8, func(p []byte) float32 { return float32(math.Float64frombits(order.Uint64(p))) })
	case Int64:
		decodeEach(t.I64[at:], b, 8, func(p []byte) int64 { return int64(order.Uint64(p)) })
	case Int32:
		decodeEach(t.I64[at:], b, 4, func(p []byte) int64 { return int64(int32(order.Uint32(p))) })
	case Int16:
		decodeEach(t.F32[at:], b, 2, func(p []byte) float32 { return float32(int16(order.Uint16(p))) })
	case Int8:
		decodeEach(t.F32[at:], b, 1, func(p []byte) float32 { return float32(int8(p[0])) })
	case Uint8:
		decodeEach(t.F32[at:], b, 1, func(p []byte) float32 { return float32(p[0]) })
	case Bool:
		decodeEach(t.F32[at:], b, 1, func(p []byte) float32 { return float32(min(p[0], 1)) })
	}
}

// decodeEach sets dst[i] = f(element i of b) for the elements of size bytes
// in b.
func decodeEach[T any](dst []T, b []byte, size int, f func([]byte) T) {
	for i := range len(b) / size {
		dst[i] = f(b[size*i:])
	}
}

// nativeLittleEndian is whether this machine stores a float32's bytes
// least significant first, as checkpoints do: then a contiguous float32
// tensor's stored bytes are its values (float32Bytes).
var nativeLittleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// float32Bytes is the memory of s as bytes.
func float32Bytes(s []float32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), 4*len(s))
}
