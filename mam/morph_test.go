package mam

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
)

func u8s(t *testing.T, path string) ([]uint8, []int) {
	t.Helper()
	x := testutil.NPY(t, path)
	f := x.Float32s()
	out := make([]uint8, len(f))
	for i, v := range f {
		if v < 0 || v > 255 || v != float32(int(v)) {
			t.Fatalf("%s: value %v is not a byte", path, v)
		}
		out[i] = uint8(v)
	}
	return out, x.Shape
}

func TestEllipseKernelGolden(t *testing.T) {
	all, shape := u8s(t, testutil.Golden("morph", "ellipse_kernels.npy"))
	if len(shape) != 3 || shape[1] != shape[2] || shape[0] < 2 {
		t.Fatalf("ellipse_kernels.npy shape %v", shape)
	}
	n, side := shape[0], shape[1]
	for k := 1; k < n; k++ {
		e := EllipseKernel(k)
		for i := 0; i < side; i++ {
			for j := 0; j < side; j++ {
				want := all[(k*side+i)*side+j]
				var got uint8
				if i < k && j < k {
					got = e.M[i*k+j]
				}
				if got != want {
					t.Fatalf("k=%d: element (%d, %d) = %d, want %d", k, i, j, got, want)
				}
			}
		}
	}
}

func TestMorphGolden(t *testing.T) {
	mask, shape := u8s(t, testutil.Golden("morph", "mask.npy"))
	h, w := shape[0], shape[1]
	for _, c := range []struct {
		op string
		k  int
		f  func(dst, src []uint8, h, w int, k Kernel) error
	}{{"dilate", 5, Dilate}, {"dilate", 10, Dilate}, {"erode", 5, Erode}, {"erode", 10, Erode}} {
		name := fmt.Sprintf("%s_%d", c.op, c.k)
		want, _ := u8s(t, testutil.Golden("morph", name+".npy"))
		got := make([]uint8, h*w)
		if err := c.f(got, mask, h, w, EllipseKernel(c.k)); err != nil {
			t.Fatal(err)
		}
		changed, bad := 0, 0
		for i := range want {
			if want[i] != mask[i] {
				changed++
			}
			if got[i] != want[i] {
				if bad == 0 {
					t.Errorf("%s: first difference at (%d, %d): got %d want %d", name, i/w, i%w, got[i], want[i])
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d pixels differ", name, bad, len(want))
		}
		if changed == 0 {
			t.Errorf("%s: golden output equals the input; the test proves nothing", name)
		}
	}
}

// naiveMorph is the definition: the extremum over the set kernel elements of
// the pixels inside the image.
func naiveMorph(src []uint8, h, w int, k Kernel, isMax bool) []uint8 {
	out := make([]uint8, h*w)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := uint8(255)
			if isMax {
				v = 0
			}
			for i := 0; i < k.H; i++ {
				for j := 0; j < k.W; j++ {
					sy, sx := y+i-k.H/2, x+j-k.W/2
					if k.M[i*k.W+j] == 0 || sy < 0 || sy >= h || sx < 0 || sx >= w {
						continue
					}
					if isMax {
						v = max(v, src[sy*w+sx])
					} else {
						v = min(v, src[sy*w+sx])
					}
				}
			}
			out[y*w+x] = v
		}
	}
	return out
}

func TestMorphNaive(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	randKernel := func(kh, kw int) Kernel {
		k := Kernel{H: kh, W: kw, M: make([]uint8, kh*kw)}
		for i := range k.M {
			if rng.Intn(3) > 0 {
				k.M[i] = 1
			}
		}
		return k
	}
	type morphCase struct {
		name   string
		h, w   int
		k      Kernel
		binary bool
	}
	cases := []morphCase{
		{"ellipse 10 binary", 23, 17, EllipseKernel(10), true},
		{"ellipse 7 grey", 9, 31, EllipseKernel(7), false},
		{"ellipse 29 small image", 5, 6, EllipseKernel(29), true},
		{"ellipse 2", 8, 8, EllipseKernel(2), false},
		{"ellipse 1", 4, 5, EllipseKernel(1), false},
		{"random 4x6", 13, 11, randKernel(4, 6), false},
		{"random 5x3", 7, 19, randKernel(5, 3), true},
		{"1x1 image", 1, 1, EllipseKernel(5), false},
	}
	// Binary images take the bit-packed path: rows of several words.
	for _, wide := range []struct {
		h, w int
		k    Kernel
	}{{9, 200, EllipseKernel(10)}, {11, 128, EllipseKernel(5)}, {40, 130, EllipseKernel(29)}, {20, 150, randKernel(5, 7)}, {6, 64, randKernel(3, 9)}} {
		cases = append(cases, morphCase{fmt.Sprintf("binary %dx%d kernel %dx%d", wide.h, wide.w, wide.k.H, wide.k.W), wide.h, wide.w, wide.k, true})
	}
	for _, c := range cases {
		src := make([]uint8, c.h*c.w)
		for i := range src {
			if c.binary {
				src[i] = uint8(rng.Intn(5) / 4)
			} else {
				src[i] = uint8(rng.Intn(256))
			}
		}
		for _, isMax := range []bool{true, false} {
			got := make([]uint8, len(src))
			f := Erode
			if isMax {
				f = Dilate
			}
			if err := f(got, src, c.h, c.w, c.k); err != nil {
				t.Fatal(err)
			}
			want := naiveMorph(src, c.h, c.w, c.k, isMax)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s (max %v): pixel (%d, %d) = %d, want %d", c.name, isMax, i/c.w, i%c.w, got[i], want[i])
				}
			}
			// in place
			inPlace := append([]uint8(nil), src...)
			if err := f(inPlace, inPlace, c.h, c.w, c.k); err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if inPlace[i] != want[i] {
					t.Fatalf("%s (max %v) in place: pixel %d = %d, want %d", c.name, isMax, i, inPlace[i], want[i])
				}
			}
		}
	}
	if err := Dilate(make([]uint8, 3), make([]uint8, 4), 2, 2, EllipseKernel(3)); err == nil {
		t.Error("short destination: no error")
	}
	if err := Erode(make([]uint8, 4), make([]uint8, 4), 2, 2, Kernel{}); err == nil {
		t.Error("empty kernel: no error")
	}
}
