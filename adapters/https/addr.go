package https

import "net/netip"

// forbidden lists the ranges a push may not reach unless the participant's
// delivery allows private targets: loopback, link-local, private (RFC 1918,
// ULA), shared address space (CGNAT), and the special-purpose ranges of the
// IANA registries that are not globally reachable.
var forbidden = prefixes(
	// IPv4
	"0.0.0.0/8",       // "this network", incl. the unspecified address
	"10.0.0.0/8",      // RFC 1918
	"100.64.0.0/10",   // shared address space (CGNAT), RFC 6598
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local, incl. cloud metadata endpoints
	"172.16.0.0/12",   // RFC 1918
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // documentation (TEST-NET-1)
	"192.168.0.0/16",  // RFC 1918
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation (TEST-NET-2)
	"203.0.113.0/24",  // documentation (TEST-NET-3)
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, incl. the limited broadcast address
	// IPv6 (IPv4-mapped addresses are unmapped and checked as IPv4)
	"::/96",          // unspecified, loopback, IPv4-compatible (deprecated)
	"64:ff9b:1::/48", // local-use NAT64
	"100::/64",       // discard-only
	"2001::/32",      // Teredo
	"2001:db8::/32",  // documentation
	"fc00::/7",       // unique local (ULA)
	"fe80::/10",      // link-local
	"fec0::/10",      // site-local (deprecated)
	"ff00::/8",       // multicast
)

// never lists what no push reaches, even with AllowPrivate: none of these
// is a host a recipient listens on.
var never = prefixes(
	"0.0.0.0/32",
	"224.0.0.0/4",
	"255.255.255.255/32",
	"::/128",
	"ff00::/8",
)

// Prefixes whose addresses embed an IPv4 address that the network may
// route to: the embedded address is checked too.
var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052, low 32 bits
	sixTo4 = netip.MustParsePrefix("2002::/16")    // RFC 3056, bits 16-47
)

func prefixes(ss ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	return ps
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// allowed reports whether a push may connect to a. With allowPrivate only
// the unspecified, broadcast and multicast addresses are refused.
func allowed(a netip.Addr, allowPrivate bool) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	if inAny(never, a) {
		return false
	}
	if allowPrivate {
		return true
	}
	if inAny(forbidden, a) {
		return false
	}
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64.Contains(a):
			return allowed(netip.AddrFrom4([4]byte(b[12:16])), false)
		case sixTo4.Contains(a):
			return allowed(netip.AddrFrom4([4]byte(b[2:6])), false)
		}
	}
	return true
}
