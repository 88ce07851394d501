package mam

import (
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
)

// AtomicFile is a file written under a temporary name in its target's
// directory and renamed to the target by Commit, so that the target is
// either left as it was or replaced by a complete file: a failed or
// interrupted write leaves no partial file under the target's name. A
// target that is a symbolic link is written through the link; one that
// exists and is not a regular file (a device such as /dev/null, a named
// pipe) is written directly.
type AtomicFile struct {
	f      *os.File
	path   string
	direct bool
	done   bool
}

// CreateAtomic starts writing the file at path. The directory must exist.
func CreateAtomic(path string) (*AtomicFile, error) {
	if path == "" {
		return nil, fmt.Errorf("mam: %w: create: empty path", ErrInvalidInput)
	}
	target := path
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if t, err := filepath.EvalSymlinks(path); err == nil {
			target = t
		}
	}
	if fi, err := os.Stat(target); err == nil {
		if fi.IsDir() {
			return nil, fmt.Errorf("mam: %w: create %s: is a directory", ErrInvalidInput, path)
		}
		if !fi.Mode().IsRegular() {
			f, err := os.OpenFile(target, os.O_WRONLY, 0)
			if err != nil {
				return nil, fmt.Errorf("mam: cannot write %s: %w", path, unwrapPath(err))
			}
			return &AtomicFile{f: f, path: target, direct: true}, nil
		}
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("mam: cannot write %s: %w", path, unwrapPath(err))
	}
	// CreateTemp makes the file private; give it os.Create's mode less the
	// usual umask.
	_ = f.Chmod(0o644)
	return &AtomicFile{f: f, path: target}, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Write writes to the temporary file.
func (a *AtomicFile) Write(p []byte) (int, error) {
	if a == nil || a.f == nil || a.done {
		return 0, fmt.Errorf("mam: %w: write to a closed or nil file", ErrInvalidInput)
	}
	return a.f.Write(p)
}

// Path returns the target path.
func (a *AtomicFile) Path() string {
	if a == nil {
		return ""
	}
	return a.path
}

// Commit closes the temporary file and renames it to the target. On error
// the temporary file is removed.
func (a *AtomicFile) Commit() error {
	if a == nil || a.f == nil || a.done {
		return fmt.Errorf("mam: %w: commit of a closed or nil file", ErrInvalidInput)
	}
	a.done = true
	if a.direct {
		if err := a.f.Close(); err != nil {
			return fmt.Errorf("mam: write %s: %w", a.path, err)
		}
		return nil
	}
	tmp := a.f.Name()
	if err := a.f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mam: write %s: %w", a.path, err)
	}
	if err := os.Rename(tmp, a.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mam: write %s: %w", a.path, err)
	}
	return nil
}

// Abort closes and removes the temporary file; the target is untouched.
// It does nothing after Commit or a first Abort.
func (a *AtomicFile) Abort() {
	if a == nil || a.f == nil || a.done {
		return
	}
	a.done = true
	a.f.Close()
	if !a.direct {
		os.Remove(a.f.Name())
	}
}

// WriteFileAtomic writes the file at path with write, through an
// AtomicFile: on any error the target is left as it was.
func WriteFileAtomic(path string, write func(w io.Writer) error) error {
	if write == nil {
		return fmt.Errorf("mam: %w: write %s: nil write function", ErrInvalidInput, path)
	}
	a, err := CreateAtomic(path)
	if err != nil {
		return err
	}
	if err := write(a); err != nil {
		a.Abort()
		return err
	}
	return a.Commit()
}

// SavePNG encodes img as PNG (PNGDefault) into the file at path, which is
// replaced only once the whole file is written.
func SavePNG(path string, img image.Image) error {
	return SavePNGWith(path, img, PNGDefault)
}

// SavePNGWith is SavePNG with a choice of compression.
func SavePNGWith(path string, img image.Image, c PNGCompression) error {
	if err := checkImage(img); err != nil {
		return fmt.Errorf("mam: save %s: %w", path, err)
	}
	return WriteFileAtomic(path, func(w io.Writer) error { return EncodePNG(w, img, c) })
}
