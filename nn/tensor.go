package nn

import (
	"slices"
	"strconv"
)

// Tensor is a float32 array of a shape, row-major: what models take and
// return (images, embeddings, masks, mattes). Data has exactly the product
// of Shape values.
type Tensor struct {
	Shape []int
	Data  []float32
}

// NewTensor returns a tensor of shape over data, allocated (zeros) when
// data is nil. It panics when data has the wrong length.
func NewTensor(data []float32, shape ...int) *Tensor {
	n := prod(shape)
	if data == nil {
		data = make([]float32, n)
	}
	if len(data) != n {
		panic("nn: NewTensor: " + strconv.Itoa(len(data)) + " values for a shape of " + strconv.Itoa(n))
	}
	return &Tensor{Shape: slices.Clone(shape), Data: data}
}

// Clone returns a deep copy of t (nil for nil).
func (t *Tensor) Clone() *Tensor {
	if t == nil {
		return nil
	}
	return &Tensor{Shape: slices.Clone(t.Shape), Data: slices.Clone(t.Data)}
}

// HasShape reports whether t is not nil, has shape and holds as many values.
func (t *Tensor) HasShape(shape ...int) bool {
	return t != nil && slices.Equal(t.Shape, shape) && len(t.Data) == prod(shape)
}
