package exchange_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/exchange"
)

func TestMaskMessage(t *testing.T) {
	const msg = `{"id":"m1","type":"referral","from":"KZ-MTSZN","to":"UN-UNICEF","purpose":"rehabilitation-referral",
	 "subject":{"ref":"S-1","names":{"primary":"CANARYNAME"},"birth_date":"2011-02-03","documents":[{"number":"CANARYDOC"}],
	   "biometrics":{"template_ref":"CANARYTPL"},"location":{"country":"SYR"},"unknown":"CANARYUNKNOWN"},
	 "record":{"service_type":"mhpss","notes":"CANARYNOTES","psychosocial":{"a":"CANARYPSY"},"allegations":{"s":"CANARYALLEG"}},
	 "consent":{"id":"C-1","basis":"best_interests_override","override":{"approved_by_role":"child-protection","reason":"CANARYREASON","bia_ref":"BIA-1"}}}`
	var m map[string]any
	if err := json.Unmarshal([]byte(msg), &m); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(exchange.MaskMessage(m))
	s := string(out)
	if strings.Contains(s, "CANARY") || strings.Contains(s, "2011-02-03") {
		t.Errorf("personal data survives masking: %s", s)
	}
	for _, keep := range []string{`"ref":"S-1"`, `"service_type":"mhpss"`, `"id":"C-1"`, `"bia_ref":"BIA-1"`, `"names":"[masked]"`, `"purpose":"rehabilitation-referral"`} {
		if !strings.Contains(s, keep) {
			t.Errorf("masked message lacks %s: %s", keep, s)
		}
	}
	if _, err := json.Marshal(m); err != nil || !strings.Contains(func() string { b, _ := json.Marshal(m); return string(b) }(), "CANARYNAME") {
		t.Error("the input was modified")
	}
}

func TestKeysOfTheSendersChoosingAreNotShown(t *testing.T) {
	var m map[string]any
	_ = json.Unmarshal([]byte(`{"id":"1","canarytop":"x","subject":{"ref":"S","canaryname":"x","names":{"primary":"P"}},"record":{"notes":"n","canarysection":{"a":1}}}`), &m)
	out, _ := json.Marshal(exchange.MaskMessage(m))
	if strings.Contains(string(out), "canary") {
		t.Errorf("masked message shows a sender's key: %s", out)
	}
	paths := exchange.LogPaths([]string{"subject.canaryname", "record.canarysection.a", "subject.names", "canarytop", "record.gbv"})
	got, _ := json.Marshal(paths)
	if strings.Contains(string(got), "canary") || !strings.Contains(string(got), `"subject.names"`) || !strings.Contains(string(got), `"record.gbv"`) {
		t.Errorf("log paths %s", got)
	}
}
