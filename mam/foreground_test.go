package mam

import (
	"errors"
	"image"
	"io"
	"math"
	"math/rand"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/mam-go/mam-go/internal/testutil"
)

// fgCase is a reference case made by pymatting's estimate_foreground_ml on
// an 8-bit image (passed as u/255) and a soft alpha matte: see
// testdata/foreground/README.md.
type fgCase struct {
	name string
	opt  ForegroundOptions
}

var fgCases = []fgCase{
	{"small", DefaultForegroundOptions()},
	{"mid", DefaultForegroundOptions()},
	{"large", DefaultForegroundOptions()},
	{"opts", ForegroundOptions{Regularization: 1e-3, SmallIterations: 4, BigIterations: 3, SmallSize: 16, GradientWeight: 0.5}},
}

func loadFGCase(t testing.TB, name string) (img *image.NRGBA, rgb, alpha, want []float32, w, h int) {
	t.Helper()
	dir := filepath.Join("testdata", "foreground")
	im := testutil.NPY(t, filepath.Join(dir, name+"_image.npy"))
	al := testutil.NPY(t, filepath.Join(dir, name+"_alpha.npy"))
	fg := testutil.NPY(t, filepath.Join(dir, name+"_fg.npy"))
	h, w = im.Shape[0], im.Shape[1]
	img = image.NewNRGBA(image.Rect(0, 0, w, h))
	rgb = make([]float32, w*h*3)
	for i := 0; i < w*h; i++ {
		for c := 0; c < 3; c++ {
			v := im.F32[3*i+c]
			img.Pix[4*i+c] = uint8(v)
			rgb[3*i+c] = float32(float64(v) / 255)
		}
		img.Pix[4*i+3] = 255
	}
	return img, rgb, al.F32, fg.F32, w, h
}

func maxAbsDiff(a, b []float32) (float64, int) {
	worst, at := 0.0, -1
	for i := range a {
		if d := math.Abs(float64(a[i]) - float64(b[i])); d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	return worst, at
}

// The estimate matches pymatting's within 1e-3 on 0..1 colours, through
// EstimateForeground (float input) and Result.Foreground (an image).
func TestForegroundParity(t *testing.T) {
	for _, c := range fgCases {
		t.Run(c.name, func(t *testing.T) {
			img, rgb, alpha, want, w, h := loadFGCase(t, c.name)
			got, err := EstimateForeground(rgb, alpha, w, h, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			d, at := maxAbsDiff(got, want)
			t.Logf("%dx%d: max abs diff %.3g (at %d)", w, h, d, at)
			if d > 1e-3 {
				t.Errorf("max abs diff %.3g at %d: got %v want %v", d, at, got[at], want[at])
			}
			r := &Result{Width: w, Height: h, Alpha: alpha}
			got2, err := r.Foreground(img, WithForegroundOptions(c.opt))
			if err != nil {
				t.Fatal(err)
			}
			if d, at := maxAbsDiff(got2, want); d > 1e-3 {
				t.Errorf("Result.Foreground: max abs diff %.3g at %d", d, at)
			}
		})
	}
}

// The pipelined estimator (rows in a window, three channels at once,
// sweeps on their own goroutines on large levels) gives exactly the values
// of the plain transcription of pymatting's loops, whatever the threads.
func TestForegroundPipelineExact(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	o3 := DefaultForegroundOptions()
	o3.BigIterations = 3
	o1 := DefaultForegroundOptions()
	o1.BigIterations = 1
	o10 := DefaultForegroundOptions()
	o10.BigIterations = 10
	for _, c := range []struct {
		w, h int
		opt  ForegroundOptions
	}{
		{300, 250, DefaultForegroundOptions()},
		{257, 300, o3},
		{1000, 70, o1},
		{12000, 3, o10},
		{1, 1, DefaultForegroundOptions()},
		{1, 40, DefaultForegroundOptions()},
		{33, 2, DefaultForegroundOptions()},
	} {
		w, h := c.w, c.h
		img := make([]float32, w*h*3)
		alpha := make([]float32, w*h)
		for i := range img {
			img[i] = rng.Float32()
		}
		for i := range alpha {
			alpha[i] = min(1, max(0, rng.Float32()*1.4-0.2))
		}
		want := fgReference(img, alpha, w, h, c.opt)
		for _, procs := range []int{1, 2, 3} {
			old := runtime.GOMAXPROCS(procs)
			got, err := EstimateForeground(img, alpha, w, h, c.opt)
			runtime.GOMAXPROCS(old)
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%dx%d, %d threads: value %d: got %v, want %v", w, h, procs, i, got[i], want[i])
				}
			}
		}
	}
}

func TestForegroundErrors(t *testing.T) {
	ok := DefaultForegroundOptions()
	bad := func(f func(*ForegroundOptions)) ForegroundOptions { o := ok; f(&o); return o }
	for _, c := range []struct {
		name         string
		img, alpha   []float32
		w, h         int
		opt          ForegroundOptions
		wantErrorFor bool
	}{
		{"ok 1x1", make([]float32, 3), make([]float32, 1), 1, 1, ok, false},
		{"ok 1x5", make([]float32, 15), make([]float32, 5), 1, 5, ok, false},
		{"zero size", nil, nil, 0, 0, ok, true},
		{"negative", nil, nil, -1, 3, ok, true},
		{"short image", make([]float32, 5), make([]float32, 2), 2, 1, ok, true},
		{"short alpha", make([]float32, 6), make([]float32, 1), 2, 1, ok, true},
		{"zero options", make([]float32, 6), make([]float32, 2), 2, 1, ForegroundOptions{}, true},
		{"NaN regularization", make([]float32, 6), make([]float32, 2), 2, 1, bad(func(o *ForegroundOptions) { o.Regularization = float32(math.NaN()) }), true},
		{"negative gradient weight", make([]float32, 6), make([]float32, 2), 2, 1, bad(func(o *ForegroundOptions) { o.GradientWeight = -1 }), true},
		{"huge iterations", make([]float32, 6), make([]float32, 2), 2, 1, bad(func(o *ForegroundOptions) { o.BigIterations = 1 << 30 }), true},
	} {
		_, err := EstimateForeground(c.img, c.alpha, c.w, c.h, c.opt)
		if (err != nil) != c.wantErrorFor {
			t.Errorf("%s: err = %v", c.name, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: %v does not wrap ErrInvalidInput", c.name, err)
		}
	}
}

func fgBenchData(w, h int) (*Result, *image.NRGBA) {
	rng := rand.New(rand.NewSource(11))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	rng.Read(img.Pix)
	alpha := make([]float32, w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			d := math.Hypot(float64(x-w/2), float64(y-h/2)) / float64(min(w, h)/3)
			alpha[y*w+x] = clamp01(float32((1.2-d)*4) + rng.Float32()*0.2 - 0.1)
		}
	}
	return &Result{Width: w, Height: h, Alpha: alpha}, img
}

// BenchmarkForeground1MP estimates the foreground of a 1000x1000 image
// (target: 0.3 s with 2 threads, -cpu 2).
func BenchmarkForeground1MP(b *testing.B) {
	r, img := fgBenchData(1000, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Foreground(img); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCutout12MP makes the cutout of a 12 MP photo (foreground
// estimation included) and encodes it as PNG (PNGFast): the write stage of
// the matte command with -cutout.
func BenchmarkCutout12MP(b *testing.B) {
	r, img := fgBenchData(4000, 3000)
	for y := 0; y < 3000; y++ { // photo-like colours rather than noise
		for x := 0; x < 4000; x++ {
			i := img.PixOffset(x, y)
			img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = uint8(x/16+y%7), uint8(y/12), uint8((x+y)/28), 255
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cut, err := r.Cutout(img)
		if err != nil {
			b.Fatal(err)
		}
		if err := EncodePNG(io.Discard, cut, PNGFast); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFgRow times the pixel update of the estimation (ns per pixel,
// three channels).
func BenchmarkFgRow(b *testing.B) {
	const w = 4096
	rng := rand.New(rand.NewSource(1))
	mk := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = rng.Float32()
		}
		return s
	}
	fb, fbu, fbd, img := mk(8*w), mk(8*w), mk(8*w), mk(4*w)
	a, au, ad := mk(w), mk(w), mk(w)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fgRow(fb, fbu, fbd, img, a, au, ad, 0, w, 1e-5, 1)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*w), "ns/px")
}

// fgRow (assembly where there is one) and fgRowGo agree bit for bit, on
// whole rows and on chunks, at the borders, with NaN and out-of-range
// values.
func TestFgRowKernels(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, w := range []int{1, 2, 3, 7, 64, 1000} {
		mk := func(n int, lane3 bool) []float32 {
			s := make([]float32, n)
			for i := range s {
				s[i] = rng.Float32()*1.2 - 0.1
				if rng.Intn(50) == 0 {
					s[i] = float32(math.NaN())
				}
				if lane3 && i%4 == 3 {
					s[i] = 0
				}
			}
			return s
		}
		fb, fbu, fbd, img := mk(8*w, true), mk(8*w, true), mk(8*w, true), mk(4*w, true)
		a, au, ad := mk(w, false), mk(w, false), mk(w, false)
		for _, span := range [][2]int{{0, w}, {0, (w + 1) / 2}, {w / 3, w}, {w - 1, w}} {
			got, want := append([]float32{}, fb...), append([]float32{}, fb...)
			fgRow(got, fbu, fbd, img, a, au, ad, span[0], span[1], 1e-5, 1)
			fgRowGo(want, fbu, fbd, img, a, au, ad, span[0], span[1], 1e-5, 1)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
					t.Fatalf("w %d, span %v, value %d: %v, want %v", w, span, i, got[i], want[i])
				}
			}
		}
		// The row itself as its own upper and lower neighbour (top and bottom rows).
		got, want := append([]float32{}, fb...), append([]float32{}, fb...)
		fgRow(got, got, got, img, a, a, a, 0, w, 1e-3, 0.5)
		fgRowGo(want, want, want, img, a, a, a, 0, w, 1e-3, 0.5)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("w %d, aliased rows, value %d: %v, want %v", w, i, got[i], want[i])
			}
		}
	}
}

// The sweeps on their own goroutines neither deadlock nor change a value,
// for narrow and wide levels and many sweeps.
func TestForegroundParallelSweeps(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	for _, c := range []struct{ w, h, sweeps int }{
		{40, 900, 2}, {100, 400, 3}, {300, 120, 5}, {1500, 25, 9}, {130, 260, 12},
	} {
		img := make([]float32, c.w*c.h*3)
		alpha := make([]float32, c.w*c.h)
		for i := range img {
			img[i] = rng.Float32()
		}
		for i := range alpha {
			alpha[i] = rng.Float32()
		}
		o := DefaultForegroundOptions()
		o.BigIterations, o.SmallIterations = c.sweeps, c.sweeps
		old := runtime.GOMAXPROCS(1)
		want, _ := EstimateForeground(img, alpha, c.w, c.h, o)
		for _, procs := range []int{2, 4} {
			runtime.GOMAXPROCS(procs)
			done := make(chan []float32)
			go func() {
				got, _ := EstimateForeground(img, alpha, c.w, c.h, o)
				done <- got
			}()
			select {
			case got := <-done:
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%+v, %d threads: value %d differs", c, procs, i)
					}
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("%+v, %d threads: no result after a minute (deadlock?)", c, procs)
			}
		}
		runtime.GOMAXPROCS(old)
	}
}
