package https

import (
	"net/http"
	"net/netip"
	"testing"
	"time"
)

func TestAllowed(t *testing.T) {
	for _, tc := range []struct {
		addr        string
		public      bool // allowed without AllowPrivate
		withPrivate bool // allowed with AllowPrivate
	}{
		{"8.8.8.8", true, true},
		{"1.1.1.1", true, true},
		{"2606:4700::1111", true, true},
		{"::ffff:8.8.8.8", true, true},
		{"64:ff9b::808:808", true, true}, // NAT64 of 8.8.8.8
		{"2002:808:808::1", true, true},  // 6to4 of 8.8.8.8
		{"100.63.255.255", true, true},   // just below CGNAT
		{"100.128.0.0", true, true},      // just above CGNAT
		{"172.15.255.255", true, true},   // just below 172.16/12
		{"172.32.0.0", true, true},       // just above 172.16/12
		{"127.0.0.1", false, true},
		{"127.255.255.254", false, true},
		{"::1", false, true},
		{"::ffff:127.0.0.1", false, true},
		{"::127.0.0.1", false, true}, // IPv4-compatible
		{"10.0.0.1", false, true},
		{"172.16.0.1", false, true},
		{"172.31.255.255", false, true},
		{"192.168.0.1", false, true},
		{"::ffff:192.168.0.1", false, true},
		{"100.64.0.1", false, true},
		{"100.127.255.255", false, true},
		{"169.254.169.254", false, true},
		{"fe80::1", false, true},
		{"fe80::1%eth0", false, true},
		{"fc00::1", false, true},
		{"fdff:ffff::1", false, true},
		{"fec0::1", false, true},
		{"64:ff9b::7f00:1", false, true},    // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", false, true}, // NAT64 of 169.254.169.254
		{"2002:a00:1::1", false, true},      // 6to4 of 10.0.0.1
		{"64:ff9b:1::1", false, true},
		{"192.0.2.1", false, true},
		{"198.18.0.1", false, true},
		{"2001:db8::1", false, true},
		{"0.1.2.3", false, true},
		{"240.0.0.1", false, true},
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"::ffff:0.0.0.0", false, false},
		{"255.255.255.255", false, false},
		{"224.0.0.1", false, false},
		{"239.255.255.250", false, false},
		{"ff02::1", false, false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tc.addr)
			if got := allowed(a, false); got != tc.public {
				t.Errorf("allowed(%s, false) = %v, want %v", a, got, tc.public)
			}
			if got := allowed(a, true); got != tc.withPrivate {
				t.Errorf("allowed(%s, true) = %v, want %v", a, got, tc.withPrivate)
			}
		})
	}
	if allowed(netip.Addr{}, true) {
		t.Error("allowed(invalid address) = true")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name, v string
		want    time.Duration
	}{
		{"absent", "", 0},
		{"seconds", "120", 2 * time.Minute},
		{"zero", "0", 0},
		{"negative", "-5", 0},
		{"http date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"date in the past", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"garbage", "soon", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryAfter(tc.v, now); got != tc.want {
				t.Errorf("retryAfter(%q) = %v, want %v", tc.v, got, tc.want)
			}
		})
	}
}
