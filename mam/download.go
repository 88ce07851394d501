package mam

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Checkpoint names a released weight file and where it comes from.
type Checkpoint struct {
	Name string // file name in the cache directory
	URL  string
	// Size in bytes, 0 when not published; SHA256 in hex, "" when not
	// published. Either is checked when known.
	Size   int64
	SHA256 string
}

// Released checkpoints. Segment Anything's are on Meta's download server
// (facebookresearch/segment-anything README). MAM's are published in a
// Google Drive folder (SHI-Labs/Matting-Anything INSTALL.md) with no direct
// link; the URL below is the copy in the authors' Hugging Face Space, and
// any mirror can be given instead. Neither project publishes checksums, so
// only the size reported by the server is checked unless one is set.
var (
	SAMViTB = Checkpoint{Name: "sam_vit_b_01ec64.pth", URL: "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"}
	SAMViTL = Checkpoint{Name: "sam_vit_l_0b3195.pth", URL: "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth"}
	SAMViTH = Checkpoint{Name: "sam_vit_h_4b8939.pth", URL: "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"}
	MAMViTB = Checkpoint{Name: "mam_vitb.pth", URL: "https://huggingface.co/spaces/shi-labs/Matting-Anything/resolve/main/checkpoints/mam_vitb.pth"}

	// GroundingDINO Swin-T OGC, the text-prompt detector MAM's demo runs
	// (IDEA-Research/GroundingDINO release v0.1.0-alpha), and the
	// bert-base-uncased vocabulary its tokenizer reads.
	GDINOSwinT = Checkpoint{Name: "groundingdino_swint_ogc.pth", URL: "https://github.com/IDEA-Research/GroundingDINO/releases/download/v0.1.0-alpha/groundingdino_swint_ogc.pth"}
	BERTVocab  = Checkpoint{Name: "bert-base-uncased-vocab.txt", URL: "https://huggingface.co/bert-base-uncased/resolve/main/vocab.txt",
		Size: 231508, SHA256: "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"}
)

// CacheDir is the directory downloaded checkpoints go to:
// $MAM_CACHE, else the user cache directory's mam-go folder.
func CacheDir() (string, error) {
	if d := os.Getenv("MAM_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("mam: no cache directory: %w (set MAM_CACHE)", err)
	}
	return filepath.Join(d, "mam-go"), nil
}

// DownloadOptions tune Download.
type DownloadOptions struct {
	Client   *http.Client
	Progress io.Writer // a progress bar is drawn here when non-nil
}

// Download fetches c into dir (created if needed) and returns the file's
// path. A complete file already there is kept (its size and checksum are
// checked when known); a partial download (name + ".part") is resumed with
// an HTTP Range request. The result is checked against the published size
// and SHA-256, when known, and against the server's Content-Length.
func Download(ctx context.Context, c Checkpoint, dir string, opt DownloadOptions) (string, error) {
	if err := checkContext(ctx); err != nil {
		return "", err
	}
	if c.Name == "" || c.Name != filepath.Base(c.Name) || c.Name == "." || c.Name == ".." {
		return "", fmt.Errorf("mam: %w: download: checkpoint name %q is not a plain file name", ErrInvalidInput, c.Name)
	}
	if c.URL == "" {
		return "", fmt.Errorf("mam: %w: download %s: no URL", ErrInvalidInput, c.Name)
	}
	if dir == "" {
		return "", fmt.Errorf("mam: %w: download %s: no directory", ErrInvalidInput, c.Name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("mam: download: %w", err)
	}
	dst := filepath.Join(dir, c.Name)
	if fi, err := os.Stat(dst); err == nil && !fi.IsDir() {
		if err := verify(dst, c); err != nil {
			return "", fmt.Errorf("mam: %s is in the cache but %w; delete it to download again", dst, err)
		}
		return dst, nil
	}
	client := opt.Client
	if client == nil {
		client = &http.Client{}
	}
	part := dst + ".part"
	var have int64
	if fi, err := os.Stat(part); err == nil {
		have = fi.Size()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return "", fmt.Errorf("mam: download %s: %w", c.Name, err)
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("mam: download %s: %w", c.Name, ctx.Err())
		}
		cause := err
		if u := errors.Unwrap(err); u != nil {
			cause = u // drop url.Error's repetition of the method and URL
		}
		return "", fmt.Errorf("mam: %w: %s: cannot reach %s (offline?): %w; to skip the download, put the file at %s",
			ErrDownload, c.Name, req.URL.Host, cause, dst)
	}
	defer resp.Body.Close()
	flags := os.O_CREATE | os.O_WRONLY
	total := int64(-1)
	switch resp.StatusCode {
	case http.StatusOK:
		have = 0 // the server ignored the range: start again
		flags |= os.O_TRUNC
		total = resp.ContentLength
	case http.StatusPartialContent:
		flags |= os.O_APPEND
		total = contentRangeTotal(resp.Header.Get("Content-Range"))
		if start := contentRangeStart(resp.Header.Get("Content-Range")); start != have {
			return "", fmt.Errorf("mam: download %s: server resumed at byte %d, asked for %d", c.Name, start, have)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		// The part file is already whole (or longer than the file).
		total = contentRangeTotal(resp.Header.Get("Content-Range"))
		if total != have {
			os.Remove(part)
			return "", fmt.Errorf("mam: download %s: partial file of %d bytes does not fit the server's %d; removed it, run again", c.Name, have, total)
		}
	default:
		return "", fmt.Errorf("mam: %w: %s: %s answered %s", ErrDownload, c.Name, c.URL, resp.Status)
	}
	if c.Size > 0 && total > 0 && total != c.Size {
		return "", fmt.Errorf("mam: download %s: server offers %d bytes, the released file has %d", c.Name, total, c.Size)
	}
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		f, err := os.OpenFile(part, flags, 0o644)
		if err != nil {
			return "", fmt.Errorf("mam: download: %w", err)
		}
		bar := &progress{w: opt.Progress, name: c.Name, done: have, total: total}
		_, err = io.Copy(io.MultiWriter(f, bar), ctxReader{ctx, resp.Body})
		bar.finish()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("mam: download %s (partial file kept, run again to resume): %w", c.Name, err)
		}
	}
	if fi, err := os.Stat(part); err != nil {
		return "", fmt.Errorf("mam: download: %w", err)
	} else if total > 0 && fi.Size() != total {
		return "", fmt.Errorf("mam: download %s: got %d of %d bytes (partial file kept, run again to resume)", c.Name, fi.Size(), total)
	}
	if err := verify(part, c); err != nil {
		os.Remove(part)
		return "", fmt.Errorf("mam: download %s: %w; removed the download", c.Name, err)
	}
	if err := os.Rename(part, dst); err != nil {
		return "", fmt.Errorf("mam: download: %w", err)
	}
	return dst, nil
}

func verify(path string, c Checkpoint) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if c.Size > 0 && fi.Size() != c.Size {
		return fmt.Errorf("has %d bytes, want %d", fi.Size(), c.Size)
	}
	if c.SHA256 == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, c.SHA256) {
		return fmt.Errorf("has SHA-256 %s, want %s", got, c.SHA256)
	}
	return nil
}

// contentRangeTotal parses the total of "bytes a-b/total" (or "bytes */total").
func contentRangeTotal(h string) int64 {
	i := strings.LastIndexByte(h, '/')
	if i < 0 {
		return -1
	}
	n, err := strconv.ParseInt(h[i+1:], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func contentRangeStart(h string) int64 {
	h = strings.TrimPrefix(h, "bytes ")
	i := strings.IndexByte(h, '-')
	if i < 0 {
		return -1
	}
	n, err := strconv.ParseInt(h[:i], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// progress draws a one-line progress bar.
type progress struct {
	w           io.Writer
	name        string
	done, total int64
	last        time.Time
}

func (p *progress) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if p.w != nil && time.Since(p.last) > 200*time.Millisecond {
		p.last = time.Now()
		p.draw()
	}
	return len(b), nil
}

func (p *progress) draw() {
	const width = 30
	if p.total > 0 {
		frac := float64(p.done) / float64(p.total)
		n := int(frac * width)
		fmt.Fprintf(p.w, "\r%s [%s%s] %5.1f%% %s/%s", p.name, strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*frac, mib(p.done), mib(p.total))
	} else {
		fmt.Fprintf(p.w, "\r%s %s", p.name, mib(p.done))
	}
}

func (p *progress) finish() {
	if p.w != nil {
		p.draw()
		fmt.Fprintln(p.w)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// ErrDownload is wrapped by Download's errors when the server cannot be
// reached or refuses the file.
var ErrDownload = errors.New("download failed")
