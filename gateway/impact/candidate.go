package impact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"testing/fstest"

	"github.com/xborder/xborder/gateway/policy"
)

// Limits of an uploaded candidate.
const (
	MaxUpload    = 4 << 20  // bytes, compressed
	MaxUnpacked  = 16 << 20 // bytes, all files
	MaxFiles     = 1000     // entries of an archive, folders and headers included
	maxFileBytes = 4 << 20
	// maxStream bounds the decompressed archive, headers and padding
	// included: what a header-only archive expands to counts too.
	maxStream = MaxUnpacked + (MaxFiles+1)*2048
)

// ErrCandidate is wrapped by every refusal of an uploaded candidate.
var ErrCandidate = errors.New("impact: candidate")

// Candidate turns an upload into a policy folder: a .tar.gz of the policy
// folder (its files at the top, or under one folder such as policies/), or
// a data.json alone, which replaces the data of base. Paths are checked:
// no "..", no absolute path, no link or device, nothing but regular files
// and folders; sizes and counts are bounded.
func Candidate(base fs.FS, upload []byte) (fs.FS, error) {
	if len(upload) > MaxUpload {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrCandidate, MaxUpload)
	}
	if len(upload) >= 2 && upload[0] == 0x1f && upload[1] == 0x8b {
		return untar(upload)
	}
	trimmed := bytes.TrimSpace(upload)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return withData(base, upload)
	}
	return nil, fmt.Errorf("%w: neither a .tar.gz of the policy folder nor a data.json", ErrCandidate)
}

func withData(base fs.FS, data []byte) (fs.FS, error) {
	out := fstest.MapFS{}
	err := fs.WalkDir(base, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(base, p)
		if err != nil {
			return err
		}
		out[p] = &fstest.MapFile{Data: b, Mode: 0o644}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("impact: base policy: %w", err)
	}
	out[policy.DataFile] = &fstest.MapFile{Data: data, Mode: 0o644}
	return out, nil
}

func untar(upload []byte) (fs.FS, error) {
	zr, err := gzip.NewReader(bytes.NewReader(upload))
	if err != nil {
		return nil, fmt.Errorf("%w: not gzip: %v", ErrCandidate, err)
	}
	stream := &io.LimitedReader{R: zr, N: maxStream + 1}
	tr := tar.NewReader(stream)
	files := map[string][]byte{}
	total, entries := 0, 0
	for {
		h, err := tr.Next()
		if stream.N <= 0 {
			return nil, fmt.Errorf("%w: more than %d bytes unpacked", ErrCandidate, maxStream)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: not a tar archive: %v", ErrCandidate, err)
		}
		// Every header counts, folders included: an archive of folder
		// headers alone is no smaller a job to unpack.
		if entries++; entries > MaxFiles {
			return nil, fmt.Errorf("%w: more than %d entries", ErrCandidate, MaxFiles)
		}
		if h.Typeflag == tar.TypeDir || h.Typeflag == tar.TypeXGlobalHeader {
			continue // folders are implied by the files' paths
		}
		name, err := cleanName(h.Name)
		if err != nil {
			return nil, err
		}
		switch h.Typeflag {
		case tar.TypeReg:
		default:
			return nil, fmt.Errorf("%w: %s is not a regular file (links and devices are refused)", ErrCandidate, name)
		}
		if len(files) >= MaxFiles {
			return nil, fmt.Errorf("%w: more than %d files", ErrCandidate, MaxFiles)
		}
		if h.Size > maxFileBytes || total+int(h.Size) > MaxUnpacked {
			return nil, fmt.Errorf("%w: more than %d bytes unpacked", ErrCandidate, MaxUnpacked)
		}
		b, err := io.ReadAll(io.LimitReader(tr, h.Size+1))
		if err != nil || int64(len(b)) != h.Size {
			return nil, fmt.Errorf("%w: %s could not be read", ErrCandidate, name)
		}
		total += len(b)
		if _, dup := files[name]; dup {
			return nil, fmt.Errorf("%w: %s appears twice", ErrCandidate, name)
		}
		files[name] = b
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: the archive is empty", ErrCandidate)
	}
	// Files under one top folder (policies/...) are taken from there.
	prefix := ""
	for name := range files {
		top, _, found := strings.Cut(name, "/")
		if !found {
			prefix = ""
			break
		}
		if prefix == "" {
			prefix = top + "/"
		} else if prefix != top+"/" {
			prefix = ""
			break
		}
	}
	out := fstest.MapFS{}
	for name, b := range files {
		out[strings.TrimPrefix(name, prefix)] = &fstest.MapFile{Data: b, Mode: 0o644}
	}
	if _, ok := out[policy.DataFile]; !ok {
		return nil, fmt.Errorf("%w: no data.json at the top of the policy folder", ErrCandidate)
	}
	return out, nil
}

// cleanName refuses absolute paths and any ".." element, and returns the
// path in its clean form.
func cleanName(n string) (string, error) {
	if n == "" || strings.HasPrefix(n, "/") || strings.Contains(n, "\\") || strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("%w: path %q is refused", ErrCandidate, n)
	}
	for _, part := range strings.Split(strings.TrimSuffix(n, "/"), "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: path %q is refused (..)", ErrCandidate, n)
		}
	}
	c := path.Clean(strings.TrimPrefix(n, "./"))
	if c == "." || !fs.ValidPath(c) {
		return "", fmt.Errorf("%w: path %q is refused", ErrCandidate, n)
	}
	return c, nil
}
