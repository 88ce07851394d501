// Command convert rewrites a checkpoint's tensors as numpy arrays: one .npz
// archive, or a directory with one .npy file per tensor. It reads PyTorch
// .pth/.pt files (the released SAM and MAM checkpoints; for MAM the
// "state_dict" is taken and a "module." prefix removed), .npz archives and
// .npy directories, keeping names, shapes, values and element types (int64
// stays int64; bfloat16, which numpy lacks, becomes float32).
//
//	go run ./examples/convert -in sam_vit_b_01ec64.pth -out sam_vit_b.npz
//	go run ./examples/convert -in mam_vitb.pth -out mam_vitb/
//
// Tensors are streamed one at a time, so memory holds the largest tensor,
// not the model. Progress goes to stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/mam-go/mam-go/weights"
)

func main() {
	in := flag.String("in", "", "input checkpoint: .pth/.pt, .npz or a directory of .npy files")
	out := flag.String("out", "", "output: a .npz file, or a directory (ending in /) for one .npy per tensor")
	quiet := flag.Bool("q", false, "print only the summary")
	flag.Parse()
	if *in == "" || *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: convert -in CHECKPOINT -out FILE.npz|DIR/")
		flag.PrintDefaults()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	progress := io.Writer(os.Stderr)
	if *quiet {
		progress = io.Discard
	}
	if err := convert(ctx, *in, *out, progress, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "convert:", err)
		os.Exit(1)
	}
}

// convert streams every tensor of in to out, reporting each tensor to
// progress and a summary to summary.
func convert(ctx context.Context, in, out string, progress, summary io.Writer) (err error) {
	start := time.Now()
	c, err := weights.OpenCheckpoint(in)
	if err != nil {
		return err
	}
	defer c.Close()

	w, finish, err := createWriter(out)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()

	if meta := c.Meta(); len(meta) > 0 {
		keys := make([]string, 0, len(meta))
		for k, v := range meta {
			switch v.(type) {
			case int64, float64, string, bool:
				keys = append(keys, fmt.Sprintf("%s=%v", k, v))
			default:
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		fmt.Fprintf(progress, "%s: %s checkpoint; other entries (not converted): %s\n", in, c.Format(), strings.Join(keys, ", "))
	}
	names := c.Names()
	var bytes int64
	for i, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		t, err := c.Load(n)
		if err != nil {
			return err
		}
		if err := w.Write(n, t); err != nil {
			return err
		}
		size := int64(t.NumElements())
		if t.IsInt() {
			size *= 8
		} else {
			size *= 4
		}
		bytes += size
		fmt.Fprintf(progress, "[%*d/%d] %s %v %s\n", len(fmt.Sprint(len(names))), i+1, len(names), n, t.Shape, t.Stored)
	}
	fmt.Fprintf(summary, "convert: %d tensors (%.1f MB) from %s to %s in %.2fs\n",
		len(names), float64(bytes)/1e6, in, out, time.Since(start).Seconds())
	return nil
}
