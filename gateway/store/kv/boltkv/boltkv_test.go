package boltkv_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/store/kv"
	"github.com/xborder/xborder/gateway/store/kv/boltkv"
	"github.com/xborder/xborder/gateway/store/kv/kvtest"
)

func open(t testing.TB) *boltkv.DB {
	db, err := boltkv.Open(filepath.Join(t.TempDir(), "kv.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestContract(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.DB { return open(t) }, kvtest.Options{Serial: true})
}

func BenchmarkUpdate(b *testing.B) {
	db := open(b)
	defer db.Close()
	kvtest.BenchUpdate(b, db)
}
