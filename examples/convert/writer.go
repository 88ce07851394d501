package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mam-go/mam-go/weights"
)

// createWriter opens the output; finish closes it, and on failure removes a
// partial .npz (a .npz is written under a temporary name and renamed).
func createWriter(out string) (weights.TensorWriter, func(error) error, error) {
	if fi, err := os.Stat(out); strings.HasSuffix(out, "/") || strings.HasSuffix(out, string(os.PathSeparator)) || (err == nil && fi.IsDir()) {
		w, err := weights.CreateNPYDir(out)
		if err != nil {
			return nil, nil, err
		}
		return w, func(err error) error { return errors.Join(err, w.Close()) }, nil
	}
	if !strings.EqualFold(filepath.Ext(out), ".npz") {
		return nil, nil, fmt.Errorf("output %q: want a .npz file or a directory ending in /", out)
	}
	tmp := out + ".partial"
	w, err := weights.CreateNPZ(tmp)
	if err != nil {
		return nil, nil, err
	}
	return w, func(err error) error {
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
			return err
		}
		return os.Rename(tmp, out)
	}, nil
}
