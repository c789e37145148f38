package edge_test

import (
	"crypto/rand"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/edge"
)

// BenchmarkStoreMessage is one message's life in the edge's store, one at
// a time (no batching): queued with its signed and sealed bytes, then
// accepted with its receipt. It reports the process's CPU (user + system)
// per message, which includes the commits' syscalls.
func BenchmarkStoreMessage(b *testing.B) {
	st, err := edge.OpenStore(filepath.Join(b.TempDir(), "edge.db"), "edge-B", time.Now)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	digest := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	jws, sealed := make([]byte, 1800), make([]byte, 2900)
	rand.Read(jws)
	rand.Read(sealed)
	var ru0, ru1 syscall.Rusage
	b.ResetTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	for i := 0; i < b.N; i++ {
		now := time.Now().UTC()
		o := &edge.Outgoing{ID: uuid.NewString(), To: "KZ-MJ", Type: "identity.verification.request", Purpose: "identity-verification",
			Status: edge.StatusQueued, CreatedAt: now, UpdatedAt: now, Exp: float64(now.Unix() + 3600), JWS: jws, Sealed: sealed, NextAt: now}
		if _, _, err := st.Enqueue(o, "", "", audit.Entry{Kind: audit.KindQueued, MessageID: o.ID, From: "UN-UNICEF", To: o.To,
			Purpose: o.Purpose, Type: o.Type, PayloadSHA256: digest}); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Update(o.ID, func(o *edge.Outgoing) ([]audit.Entry, error) {
			o.Attempts++
			o.Status = edge.StatusAccepted
			o.Receipt = &edge.Receipt{DecisionID: uuid.NewString(), PolicyVersion: "sha256:00", Redacted: []string{}, AcceptedAt: now.Format(time.RFC3339), JWS: string(jws[:600])}
			o.JWS, o.Sealed = nil, nil
			return []audit.Entry{{Kind: audit.KindSent, MessageID: o.ID, From: "UN-UNICEF", To: o.To, PayloadSHA256: digest},
				{Kind: audit.KindAccepted, MessageID: o.ID, From: "UN-UNICEF", To: o.To, DecisionID: o.Receipt.DecisionID}}, nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	b.StopTimer()
	u := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano())
	s := time.Duration(ru1.Stime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(u.Microseconds())/float64(b.N), "user-µs/msg")
	b.ReportMetric(float64(s.Microseconds())/float64(b.N), "sys-µs/msg")
}
