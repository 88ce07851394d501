package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/weights"
)

// TestConvertGolden converts the golden tiny checkpoints and checks the
// result against numpy's copy of the same tensors: names, shapes, stored
// types and identical values.
func TestConvertGolden(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ in, out, ref string }{
		{"sam.pth", filepath.Join(dir, "sam.npz"), "sam.npz"},
		{"mam.pth", filepath.Join(dir, "mam.npz"), "mam.npz"},
		{"sam.pth", filepath.Join(dir, "sam_npy") + "/", "sam.npz"},
		{"mam.npz", filepath.Join(dir, "mam_npy") + "/", "mam.npz"},
	}
	for _, tc := range cases {
		t.Run(tc.in+" to "+filepath.Base(tc.out), func(t *testing.T) {
			var log strings.Builder
			if err := convert(context.Background(), testutil.Golden("tiny", "weights", tc.in), tc.out, &log, &log); err != nil {
				t.Fatal(err)
			}
			got, err := weights.Open(tc.out)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := weights.Open(testutil.Golden("tiny", "weights", tc.ref))
			if err != nil {
				t.Fatal(err)
			}
			testutil.SameStore(t, got, ref)
			if !strings.Contains(log.String(), "convert: ") {
				t.Errorf("no summary in %q", log.String())
			}
		})
	}
}

func TestConvertErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pth")
	os.WriteFile(bad, []byte("not a checkpoint"), 0o644)
	sam := testutil.Golden("tiny", "weights", "sam.pth")
	cases := []struct{ name, in, out, msg string }{
		{"missing input", filepath.Join(dir, "none.pth"), filepath.Join(dir, "x.npz"), "no such file"},
		{"not a checkpoint", bad, filepath.Join(dir, "x.npz"), "format"},
		{"unknown output kind", sam, filepath.Join(dir, "x.bin"), ".npz"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := convert(context.Background(), tc.in, tc.out, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %v, want one mentioning %q", err, tc.msg)
			}
			if _, serr := os.Stat(filepath.Join(dir, "x.npz")); serr == nil {
				t.Errorf("partial output left behind")
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(dir, "cancelled.npz")
	if err := convert(ctx, sam, out, io.Discard, io.Discard); err == nil {
		t.Error("cancelled conversion: no error")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("cancelled conversion left its output")
	}
	if _, err := os.Stat(out + ".partial"); err == nil {
		t.Error("cancelled conversion left its partial output")
	}
}
