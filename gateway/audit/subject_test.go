package audit_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store/bolt"
)

// planted personal data of a made-up subject: none of it may be stored.
var canaries = []string{"ref-CANARY-7731", "Amina", "Testperson", "2012-03-04", "Mosul"}

func TestSubjectAndCanary(t *testing.T) {
	for _, bk := range backends {
		t.Run(bk.name, func(t *testing.T) {
			ctx := context.Background()
			b := bk.open(t)
			key := signingKey(t)
			l1 := newLog(t, b, "gw-1", key, time.Now)
			l2 := newLog(t, b, "gw-2", key, time.Now)
			payload := `{"subject":{"ref":"ref-CANARY-7731","names":["Amina Testperson"],"date_of_birth":"2012-03-04","place_of_birth":"Mosul"}}`
			e := sample(l1, audit.KindDelivered, "ref-CANARY-7731", payload)
			// A sender-chosen unknown field name carrying a name is reduced to "*".
			e.Redacted = append(e.Redacted, "record.Amina Testperson", "subject.amina-mosul?")
			if _, err := l1.Record(ctx, e); err != nil {
				t.Fatal(err)
			}
			if _, err := l2.Record(ctx, sample(l2, audit.KindAccepted, "ref-CANARY-7731", payload)); err != nil {
				t.Fatal(err)
			}
			record(t, l1, 3, "ref-other")
			if _, err := l1.Record(ctx, audit.Entry{Kind: audit.KindPolicyChanged, PolicyVersion: "v2"}); err != nil {
				t.Fatal(err)
			}

			got, err := audit.Subject(ctx, b, l1.SubjectHash("ref-CANARY-7731"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0].Replica != "gw-1" || got[1].Replica != "gw-2" {
				t.Fatalf("subject entries: %+v", got)
			}
			if got[0].To != "KZ-MTSZN" || got[0].Purpose != "rehabilitation-referral" || len(got[0].Categories) != 4 {
				t.Fatalf("entry lacks who/what/why: %+v", got[0])
			}
			if r := got[0].Redacted; r[len(r)-2] != "record.*" || r[len(r)-1] != "subject.*" {
				t.Fatalf("redacted paths not cleaned: %v", r)
			}
			if other, _ := audit.Subject(ctx, b, l1.SubjectHash("ref-other")); len(other) != 3 {
				t.Fatalf("%d entries for ref-other, want 3", len(other))
			}
			if _, err := audit.Subject(ctx, b, "ref-CANARY-7731"); err == nil {
				t.Fatal("subject query by clear reference accepted")
			}

			var exp bytes.Buffer
			if err := audit.Export(ctx, b, &exp, key); err != nil {
				t.Fatal(err)
			}
			stored := exp.String()
			if bb, ok := b.(*bolt.Store); ok {
				path := bb.Path()
				bb.Close()
				raw, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				stored += string(raw)
			}
			if !strings.Contains(stored, got[0].SubjectHash) {
				t.Fatal("canary check read nothing")
			}
			for _, c := range canaries {
				if strings.Contains(strings.ToLower(stored), strings.ToLower(c)) {
					t.Errorf("%q stored in the audit log", c)
				}
			}
		})
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "audit.key")
	k1, err := audit.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 || len(k1) != audit.KeySize {
		t.Fatalf("key file %v %v, %d bytes", st.Mode(), err, len(k1))
	}
	k2, err := audit.LoadOrCreateKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatal("second load made another key")
	}
	for name, content := range map[string]string{
		"short":  "abcd\n",
		"no hex": strings.Repeat("z", 64),
		"empty":  "",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			os.WriteFile(p, []byte(content), 0o600)
			if _, err := audit.LoadOrCreateKey(p); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
