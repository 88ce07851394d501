package weights

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzNPY feeds arbitrary bytes to the .npy reader, on its own and as the
// record of a .npz archive (stored and deflated). It must never panic,
// and whatever it accepts must have as many values as its shape says.
// Seeds: testdata/fuzz/FuzzNPY.
func FuzzNPY(f *testing.F) {
	var valid bytes.Buffer
	if err := WriteNPY(&valid, &Tensor{Shape: []int{2, 3}, Stored: Float32, F32: []float32{1, 2, 3, 4, 5, 6}}); err != nil {
		f.Fatal(err)
	}
	f.Add(valid.Bytes())
	f.Add([]byte("\x93NUMPY\x01\x00v\x00{'descr': '>i8', 'fortran_order': True, 'shape': (2, 2), }" + string(make([]byte, 32))))
	f.Add([]byte("\x93NUMPY\x02\x00\x16\x00\x00\x00{'descr':'<f2','fortran_order':False,'shape':()}\x00\x3c"))
	f.Add([]byte("\x93NUMPY\x01\x00\xff\xff{'descr': '<f4'"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if x, err := ReadNPY(bytes.NewReader(data)); err == nil {
			checkTensor(t, x)
		}
		for i, method := range []uint16{zip.Store, zip.Deflate} {
			var z bytes.Buffer
			zw := zip.NewWriter(&z)
			w, err := zw.CreateHeader(&zip.FileHeader{Name: "a.npy", Method: method})
			if err != nil {
				t.Fatal(err)
			}
			w.Write(data)
			zw.Close()
			path := filepath.Join(dir, []string{"stored.npz", "deflated.npz"}[i])
			if err := os.WriteFile(path, z.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			if s, err := LoadNPZ(path); err == nil {
				for _, name := range s.Names() {
					if x, err := s.Raw(name); err == nil {
						checkTensor(t, x)
					}
				}
			}
		}
	})
}

func checkTensor(t *testing.T, x *Tensor) {
	n := 1
	for _, d := range x.Shape {
		if d < 0 {
			t.Fatalf("negative dimension in %v", x.Shape)
		}
		n *= d
	}
	if len(x.F32) != n && len(x.I64) != n {
		t.Fatalf("shape %v with %d float and %d int values", x.Shape, len(x.F32), len(x.I64))
	}
}
