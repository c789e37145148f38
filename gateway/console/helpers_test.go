package console_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io/fs"
	"testing"

	"github.com/xborder/xborder/policies"
)

func evilTar(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	body := []byte("{}")
	if err := tw.WriteHeader(&tar.Header{Name: "../data.json", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func policyFile(t *testing.T, name string) ([]byte, error) {
	t.Helper()
	b, err := fs.ReadFile(policies.FS(), name)
	if err != nil {
		t.Fatal(err)
	}
	return b, nil
}
