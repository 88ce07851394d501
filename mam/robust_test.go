package mam

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
)

// panicImage is an image.Image whose pixels cannot be read.
type panicImage struct{}

func (panicImage) ColorModel() color.Model { return color.RGBAModel }
func (panicImage) Bounds() image.Rectangle { return image.Rect(0, 0, 8, 8) }
func (panicImage) At(x, y int) color.Color { panic("no pixels") }

// Every public call on nil or zero values returns an error (or, for the
// calls without one, an empty value), never a panic.
func TestNilAndZeroValues(t *testing.T) {
	m := tinyModel(t)
	img := testutil.Image(t, testutil.Golden("tiny", "dog_240", "image.png"))
	ctx := context.Background()
	pt := Prompt{Points: []Point{{X: 10, Y: 10, Label: 1}}}
	var nilModel *Model
	var nilSession *Session
	var nilResult *Result
	var typedNil *image.RGBA
	good := &Result{Width: 2, Height: 2, Alpha: []float32{0, 0.5, 1, 0.2}, Mask: []uint8{0, 1, 1, 0}}
	small := image.NewRGBA(image.Rect(0, 0, 2, 2))
	//lint:ignore SA1012 a nil context is what is tested
	var nilCtx context.Context
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"Matte nil ctx", func() error { _, err := m.Matte(nilCtx, img, pt); return err }},
		{"Matte nil image", func() error { _, err := m.Matte(ctx, nil, pt); return err }},
		{"Matte typed-nil image", func() error { _, err := m.Matte(ctx, typedNil, pt); return err }},
		{"Matte zero image", func() error { _, err := m.Matte(ctx, &image.RGBA{}, pt); return err }},
		{"Matte short Pix", func() error {
			_, err := m.Matte(ctx, &image.RGBA{Rect: image.Rect(0, 0, 50, 50), Stride: 200}, pt)
			return err
		}},
		{"Matte unreadable pixels", func() error { _, err := m.Matte(ctx, panicImage{}, pt); return err }},
		{"Matte nil model", func() error { _, err := nilModel.Matte(ctx, img, pt); return err }},
		{"Matte zero model", func() error { _, err := (&Model{}).Matte(ctx, img, pt); return err }},
		{"MatteAll nil model", func() error { _, err := nilModel.MatteAll(ctx, img, []Prompt{pt}); return err }},
		{"MatteAll nil image", func() error { _, err := m.MatteAll(ctx, nil, []Prompt{pt}); return err }},
		{"NewSession nil model", func() error { _, err := nilModel.NewSession(ctx, img); return err }},
		{"NewSession nil ctx", func() error { _, err := m.NewSession(nilCtx, img); return err }},
		{"NewSession nil image", func() error { _, err := m.NewSession(ctx, nil); return err }},
		{"Session nil", func() error { _, err := nilSession.Matte(ctx, pt); return err }},
		{"Session zero", func() error { _, err := (&Session{}).Matte(ctx, pt); return err }},
		{"Cutout nil image", func() error { _, err := good.Cutout(nil); return err }},
		{"Cutout typed-nil image", func() error { _, err := good.Cutout(typedNil); return err }},
		{"Cutout nil result", func() error { _, err := nilResult.Cutout(small); return err }},
		{"Cutout zero result", func() error { _, err := (&Result{}).Cutout(small); return err }},
		{"Cutout short alpha", func() error { _, err := (&Result{Width: 2, Height: 2, Alpha: []float32{1}}).Cutout(small); return err }},
		{"Cutout huge size", func() error {
			_, err := (&Result{Width: math.MaxInt32, Height: math.MaxInt32}).Cutout(small)
			return err
		}},
		{"Cutout negative size", func() error { _, err := (&Result{Width: -2, Height: -2}).Cutout(small); return err }},
		{"Cutout unreadable pixels", func() error {
			r := &Result{Width: 8, Height: 8, Alpha: make([]float32, 64)}
			_, err := r.Cutout(panicImage{})
			return err
		}},
		{"CutoutPremultiplied nil", func() error { _, err := nilResult.CutoutPremultiplied(nil); return err }},
		{"Foreground nil", func() error { _, err := nilResult.Foreground(nil); return err }},
		{"Foreground bad options", func() error {
			_, err := good.Foreground(small, WithForegroundOptions(ForegroundOptions{}))
			return err
		}},
		{"Composite nil colour", func() error { _, err := good.Composite(small, nil); return err }},
		{"Composite nil image", func() error { _, err := good.Composite(nil, color.Black); return err }},
		{"CompositeOver nil background", func() error { _, err := good.CompositeOver(small, nil); return err }},
		{"CompositeOver typed-nil background", func() error { _, err := good.CompositeOver(small, typedNil); return err }},
		{"CompositeOver nil result", func() error { _, err := nilResult.CompositeOver(small, small); return err }},
		{"WriteAlphaPNG nil writer", func() error { return good.WriteAlphaPNG(nil, 8) }},
		{"WriteAlphaPNG nil result", func() error { return nilResult.WriteAlphaPNG(&bytes.Buffer{}, 8) }},
		{"WriteAlphaPNG 12 bits", func() error { return good.WriteAlphaPNG(&bytes.Buffer{}, 12) }},
		{"EncodePNG nil image", func() error { return EncodePNG(&bytes.Buffer{}, nil, PNGFast) }},
		{"EncodePNG bad level", func() error { return EncodePNG(&bytes.Buffer{}, small, PNGCompression(42)) }},
		{"SavePNG nil image", func() error { return SavePNG(filepath.Join(t.TempDir(), "x.png"), nil) }},
		{"SavePNG empty path", func() error { return SavePNG("", small) }},
		{"WriteFileAtomic nil func", func() error { return WriteFileAtomic(filepath.Join(t.TempDir(), "x"), nil) }},
		{"AtomicFile nil commit", func() error { var a *AtomicFile; return a.Commit() }},
		{"AtomicFile nil write", func() error { var a *AtomicFile; _, err := a.Write(nil); return err }},
		{"DecodeImage nil", func() error { _, _, err := DecodeImage(nil); return err }},
		{"DecodeImage typed-nil", func() error { var b *bytes.Reader; _, _, err := DecodeImage(b); return err }},
		{"Orient nil", func() error { _, err := Orient(nil, 6); return err }},
		{"EstimateForeground nil", func() error { _, err := EstimateForeground(nil, nil, 0, 0, DefaultForegroundOptions()); return err }},
		{"ValidateFor zero size", func() error { return pt.ValidateFor(0, 0) }},
		{"Download nil ctx", func() error { _, err := Download(nilCtx, SAMViTB, t.TempDir(), DownloadOptions{}); return err }},
		{"Download zero checkpoint", func() error {
			_, err := Download(ctx, Checkpoint{}, t.TempDir(), DownloadOptions{})
			return err
		}},
		{"Download path in name", func() error {
			_, err := Download(ctx, Checkpoint{Name: "../x.pth", URL: "http://127.0.0.1:1/x"}, t.TempDir(), DownloadOptions{})
			return err
		}},
		{"New nil stores", func() error { _, err := New(nil, nil); return err }},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("panic: %v", p)
				}
			}()
			err := c.call()
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalidInput) && !errors.Is(err, ErrBadPrompt) && !errors.Is(err, ErrImageTooLarge) {
				t.Logf("%v (no sentinel)", err)
			}
		})
	}
	// A nil option is ignored.
	if _, err := m.Matte(ctx, img, pt, nil); err != nil {
		t.Errorf("nil option: %v", err)
	}
	// The calls without an error give empty values.
	for _, r := range []*Result{nil, {}, {Width: 3, Height: 3, Alpha: []float32{1}}} {
		if r.Gray().Bounds().Dx() != 0 || r.Gray16().Bounds().Dx() != 0 || r.MaskImage().Bounds().Dx() != 0 {
			t.Errorf("%+v: non-empty image", r)
		}
	}
	if nilSession.Predictor() != nil {
		t.Error("nil session's predictor")
	}
	var a *AtomicFile
	a.Abort()
	if a.Path() != "" {
		t.Error("nil AtomicFile path")
	}
}

// Points and boxes are judged alike against the image: an error when
// wholly outside, otherwise kept unclipped; a reversed box says so.
func TestPromptValidateFor(t *testing.T) {
	for _, c := range []struct {
		name string
		p    Prompt
		ok   bool
	}{
		{"point inside", Prompt{Points: []Point{{X: 10, Y: 20, Label: 1}}}, true},
		{"point on the far edge", Prompt{Points: []Point{{X: 100, Y: 50, Label: 0}}}, true},
		{"point left", Prompt{Points: []Point{{X: -0.5, Y: 20, Label: 1}}}, false},
		{"point below", Prompt{Points: []Point{{X: 10, Y: 50.5, Label: 1}}}, false},
		{"box inside", Prompt{Box: &Box{X0: 1, Y0: 2, X1: 30, Y1: 40}}, true},
		{"box partly outside", Prompt{Box: &Box{X0: -20, Y0: -5, X1: 30, Y1: 400}}, true},
		{"box around the image", Prompt{Box: &Box{X0: -20, Y0: -5, X1: 300, Y1: 400}}, true},
		{"degenerate box", Prompt{Box: &Box{X0: 5, Y0: 5, X1: 5, Y1: 5}}, true},
		{"box right", Prompt{Box: &Box{X0: 101, Y0: 2, X1: 130, Y1: 40}}, false},
		{"box above", Prompt{Box: &Box{X0: 1, Y0: -40, X1: 30, Y1: -2}}, false},
		{"reversed x", Prompt{Box: &Box{X0: 30, Y0: 2, X1: 1, Y1: 40}}, false},
		{"reversed y", Prompt{Box: &Box{X0: 1, Y0: 40, X1: 30, Y1: 2}}, false},
		{"box in, point out", Prompt{Box: &Box{X0: 1, Y0: 2, X1: 30, Y1: 40}, Points: []Point{{X: 200, Y: 1, Label: 1}}}, false},
		{"empty", Prompt{}, false},
		{"Inf", Prompt{Points: []Point{{X: math.Inf(1), Y: 1, Label: 1}}}, false},
	} {
		err := c.p.ValidateFor(100, 50)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
		if err != nil && !errors.Is(err, ErrBadPrompt) {
			t.Errorf("%s: %v does not wrap ErrBadPrompt", c.name, err)
		}
	}
	err := Prompt{Box: &Box{X0: 30, Y0: 2, X1: 1, Y1: 40}}.Validate()
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("reversed")) {
		t.Errorf("reversed box: %v", err)
	}
}

// AtomicFile leaves the target untouched until Commit and removes its
// temporary file on Abort or a failed write.
func TestAtomicFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "out.png")
	os.WriteFile(target, []byte("old"), 0o644)
	a, err := CreateAtomic(target)
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("new"))
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Fatal("target changed before Commit")
	}
	a.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("Abort left %d files", len(ents))
	}
	failing := errors.New("disk on fire")
	err = WriteFileAtomic(target, func(w io.Writer) error {
		w.Write([]byte("half"))
		return failing
	})
	if !errors.Is(err, failing) {
		t.Fatalf("failed write: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Fatal("failed write changed the target")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("failed write left %d files", len(ents))
	}
	if err := SavePNG(target, image.NewGray(image.Rect(0, 0, 3, 3))); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("SavePNG left %d files", len(ents))
	}
	if _, err := ReadImage(target); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateAtomic(filepath.Join(dir, "no", "such", "dir.png")); err == nil {
		t.Fatal("missing directory: no error")
	}
}

// A device is written directly (never replaced by a file); a symbolic link
// is written through.
func TestAtomicFileSpecialTargets(t *testing.T) {
	a, err := CreateAtomic(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("x"))
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(os.DevNull); err != nil || fi.Mode().IsRegular() {
		t.Fatalf("%s became %v (%v)", os.DevNull, fi.Mode(), err)
	}
	dir := t.TempDir()
	real := filepath.Join(dir, "real.png")
	link := filepath.Join(dir, "link.png")
	os.WriteFile(real, []byte("old"), 0o644)
	if err := os.Symlink(real, link); err != nil {
		t.Skip(err)
	}
	if err := WriteFileAtomic(link, func(w io.Writer) error { _, err := w.Write([]byte("new")); return err }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(real); string(b) != "new" {
		t.Errorf("through the link: %q", b)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the link was replaced")
	}
}
