// Package trust is the trust registry (PROTOCOL §1, §7): who the participants
// are, their roles, their public keys, how deliveries reach them, and which
// certificate authorities vouch for their TLS client certificates. It also
// turns a verified mTLS connection into a participant id.
//
// A Registry is immutable once built; reloads build a new one aside and swap
// it into a Holder.
package trust

import (
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/xborder/xborder/adapters/file"
	"github.com/xborder/xborder/adapters/https"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/xborder/xborder/gateway/envelope"
)

// Participant kinds (PROTOCOL §1).
const (
	KindMemberState = "member-state"
	KindUNEntity    = "un-entity"
)

// Delivery adapters (PROTOCOL §4).
const (
	AdapterInbox = "inbox"
	AdapterHTTPS = "https"
	AdapterFile  = "file"
)

// IDPattern is the participant id syntax of PROTOCOL §1.
const IDPattern = `^(?:[A-Z]{2}|UN)-[A-Z0-9]{2,20}$`

var (
	idRE      = regexp.MustCompile(IDPattern)
	countryRE = regexp.MustCompile(`^[A-Z]{2}$`)
)

// roles are the registry roles of DOMAIN §1.
var roles = []string{
	"consular", "civil-registry", "border-management", "law-enforcement",
	"prosecution", "child-justice", "social-services", "child-protection",
	"health", "humanitarian", "human-rights-monitoring", "compliance",
}

// Roles returns the roles a registry may grant (DOMAIN §1), in the order the
// specification lists them.
func Roles() []string { return slices.Clone(roles) }

// IsRole reports whether role is one of DOMAIN §1.
func IsRole(role string) bool { return slices.Contains(roles, role) }

// ValidID reports whether id has the participant id syntax of PROTOCOL §1.
func ValidID(id string) bool { return idRE.MatchString(id) }

// Delivery says how deliveries reach a participant (PROTOCOL §4).
type Delivery struct {
	Adapter string `yaml:"adapter"`
	URL     string `yaml:"url,omitempty"`
	Dir     string `yaml:"dir,omitempty"`
	// AllowPrivate lets the https adapter reach loopback and private
	// addresses (tests, on-premise receivers).
	AllowPrivate bool `yaml:"allow_private,omitempty"`
}

// Participant is one entry of the registry.
type Participant struct {
	ID        string
	Name      string
	Kind      string // KindMemberState or KindUNEntity
	Country   string // ISO 3166-1 alpha-2; empty for most UN entities
	Roles     []string
	Suspended bool

	SigningKeys   []*envelope.PublicKey
	EncryptionKey *envelope.PublicKey

	Delivery Delivery

	// Optional pinning, on top of the registry's trust anchors. TLSCert: the
	// client certificate must be exactly this one. TLSCA: the verified chain
	// must pass through this CA (same subject and public key).
	TLSCert *x509.Certificate
	TLSCA   *x509.Certificate
}

// HasRole reports whether the participant holds role.
func (p *Participant) HasRole(role string) bool { return slices.Contains(p.Roles, role) }

type keyEntry struct {
	owner string
	key   *envelope.PublicKey
}

// The exchange resolves JWS keys through the registry.
var _ envelope.SigningKeyResolver = (*Registry)(nil)

// Registry is a validated, immutable trust registry. It is safe for
// concurrent use.
type Registry struct {
	anchors []*x509.Certificate
	list    []*Participant // as given, validated
	pool    *x509.CertPool
	byID    map[string]*Participant
	sorted  []*Participant
	byKID   map[string]keyEntry
	// verified remembers client certificate chains this registry has
	// verified (see Identify): a registry never changes once built.
	verified verifiedCache
}

// New builds a registry from parsed trust anchors and participants, and
// validates it. Participants are used as given: the caller must not modify
// them afterwards.
func New(anchors []*x509.Certificate, participants []*Participant) (*Registry, error) {
	r := &Registry{anchors: anchors, list: participants}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	r.index()
	return r, nil
}

func (r *Registry) index() {
	r.pool = x509.NewCertPool()
	for _, c := range r.anchors {
		r.pool.AddCert(c)
	}
	r.byID = make(map[string]*Participant, len(r.list))
	r.byKID = make(map[string]keyEntry)
	for _, p := range r.list {
		r.byID[p.ID] = p
		for _, k := range p.SigningKeys {
			r.byKID[k.KID()] = keyEntry{owner: p.ID, key: k}
		}
	}
	r.sorted = slices.Clone(r.list)
	sort.Slice(r.sorted, func(i, j int) bool { return r.sorted[i].ID < r.sorted[j].ID })
}

// Validate checks the registry against PROTOCOL §1 and §7 and returns every
// problem found, joined with errors.Join.
func (r *Registry) Validate() error {
	return errors.Join(r.validate(reported{})...)
}

// reported names what Load already reported as unreadable, so that the
// resulting absence is not reported a second time.
type reported struct {
	anchors bool                  // every listed trust anchor failed
	keys    map[*Participant]bool // a key file of the participant failed
}

// validate returns the problems found: the trust anchors first, then each
// participant in the order listed.
func (r *Registry) validate(done reported) []error {
	var errs problemList
	r.checkAnchors(&errs, done.anchors)
	seenID := make(map[string]int)
	kidOwner := make(map[string]string)
	for i, p := range r.list {
		if p == nil {
			errs.add("participants[%d]: empty entry", i)
			continue
		}
		at := fmt.Sprintf("participants[%d] (%s)", i, p.ID)
		pf := errs.about(at)
		checkIDAndName(pf, p, i, seenID)
		checkKind(pf, p)
		checkRoles(pf, p.Roles)
		checkSigningKeys(pf, p, kidOwner, done.keys[p])
		checkEncryptionKey(pf, p, kidOwner, done.keys[p])
		errs = append(errs, validateDelivery(at, p.Delivery)...)
		checkPinning(pf, p)
	}
	return errs
}

// problemList collects the problems a check finds, in the order found.
type problemList []error

// add records a problem; format and args are as for fmt.Errorf.
func (l *problemList) add(format string, args ...any) {
	*l = append(*l, fmt.Errorf("trust: "+format, args...))
}

// reportFunc records a problem of one registry entry.
type reportFunc func(format string, args ...any)

// about returns a reportFunc for the entry named at, whose problems it
// prefixes with at.
func (l *problemList) about(at string) reportFunc {
	return func(format string, args ...any) { l.add(at+": "+format, args...) }
}

// checkAnchors requires a trust anchor, unless Load has already reported
// every listed one as unreadable, and requires each to be a CA.
func (r *Registry) checkAnchors(errs *problemList, alreadyReported bool) {
	if len(r.anchors) == 0 && !alreadyReported {
		errs.add("no trust anchor")
	}
	for i, c := range r.anchors {
		if c == nil || !c.BasicConstraintsValid || !c.IsCA {
			errs.add("trust_anchors[%d]: not a CA certificate", i)
		}
	}
}

// checkIDAndName checks the id's syntax and uniqueness (seenID maps each id
// to the index of its first entry) and that the participant has a name.
func checkIDAndName(pf reportFunc, p *Participant, i int, seenID map[string]int) {
	switch {
	case p.ID == "":
		pf("id is missing")
	case !idRE.MatchString(p.ID):
		pf("id does not match %s", IDPattern)
	default:
		if first, dup := seenID[p.ID]; dup {
			pf("duplicate id (first at participants[%d])", first)
		} else {
			seenID[p.ID] = i
		}
	}
	if strings.TrimSpace(p.Name) == "" {
		pf("name is missing")
	}
}

// checkKind checks the kind, and the country and id prefix it requires.
func checkKind(pf reportFunc, p *Participant) {
	// The id prefix is only compared once the id itself is valid.
	prefix, _, _ := strings.Cut(p.ID, "-")
	validID := idRE.MatchString(p.ID)
	switch p.Kind {
	case KindMemberState:
		switch {
		case !countryRE.MatchString(p.Country):
			pf("country must be an ISO 3166-1 alpha-2 code for a member-state")
		case !validID:
		case prefix == "UN":
			pf("a member-state id cannot start with UN-")
		case p.Country != prefix:
			pf("country %q differs from the id prefix %q", p.Country, prefix)
		}
	case KindUNEntity:
		if validID && prefix != "UN" {
			pf("a un-entity id must start with UN-")
		}
		if p.Country != "" && !countryRE.MatchString(p.Country) {
			pf("country must be an ISO 3166-1 alpha-2 code")
		}
	case "":
		pf("kind is missing (%s or %s)", KindMemberState, KindUNEntity)
	default:
		pf("unknown kind %q (%s or %s)", p.Kind, KindMemberState, KindUNEntity)
	}
}

// checkRoles refuses unknown and repeated roles.
func checkRoles(pf reportFunc, roles []string) {
	seenRole := make(map[string]bool)
	for _, role := range roles {
		switch {
		case !IsRole(role):
			pf("unknown role %q", role)
		case seenRole[role]:
			pf("role %q listed twice", role)
		}
		seenRole[role] = true
	}
}

// checkSigningKeys requires at least one signing key, unless Load has
// already reported an unreadable key file of the participant, and checks
// each key's use and kid.
func checkSigningKeys(pf reportFunc, p *Participant, kidOwner map[string]string, keysReported bool) {
	if len(p.SigningKeys) == 0 && !keysReported {
		pf("at least one signing key is required")
	}
	for j, k := range p.SigningKeys {
		what := fmt.Sprintf("signing_keys[%d]", j)
		if k == nil {
			pf("%s: empty", what)
			continue
		}
		if u := k.Use(); u != "" && u != envelope.UseSig {
			pf("%s: key use is %q, want %q", what, u, envelope.UseSig)
		}
		claimKID(pf, kidOwner, p.ID, k, what)
	}
}

// checkEncryptionKey requires the encryption key, unless Load has already
// reported an unreadable key file of the participant, and checks its use,
// type and kid.
func checkEncryptionKey(pf reportFunc, p *Participant, kidOwner map[string]string, keysReported bool) {
	if p.EncryptionKey == nil {
		if !keysReported {
			pf("encryption_key is required")
		}
		return
	}
	if u := p.EncryptionKey.Use(); u != "" && u != envelope.UseEnc {
		pf("encryption_key: key use is %q, want %q", u, envelope.UseEnc)
	}
	if !canEncrypt(p.EncryptionKey) {
		pf("encryption_key: key type cannot be used for encryption")
	}
	claimKID(pf, kidOwner, p.ID, p.EncryptionKey, "encryption_key")
}

// claimKID records k's kid as owner's: a kid is unique across the registry,
// so one already claimed, by this participant or another, is a problem.
func claimKID(pf reportFunc, kidOwner map[string]string, owner string, k *envelope.PublicKey, what string) {
	kid := k.KID()
	prev, seen := kidOwner[kid]
	switch {
	case !seen:
		kidOwner[kid] = owner
	case prev == owner:
		pf("%s: key %s is listed twice", what, kid)
	default:
		pf("%s: key %s is already registered to %s", what, kid, prev)
	}
}

// checkPinning checks the optional tls_cert and tls_ca pins.
func checkPinning(pf reportFunc, p *Participant) {
	if p.TLSCert != nil && p.TLSCA != nil {
		pf("tls_cert and tls_ca are exclusive")
	}
	if p.TLSCert != nil {
		if id, err := identity(p.TLSCert); err != nil || id != p.ID {
			pf("tls_cert does not name this participant (CN or SAN URI %s%s)", URIPrefix, p.ID)
		}
	}
	if p.TLSCA != nil && (!p.TLSCA.BasicConstraintsValid || !p.TLSCA.IsCA) {
		pf("tls_ca is not a CA certificate")
	}
}

func validateDelivery(at string, d Delivery) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("trust: "+at+": delivery: "+format, args...))
	}
	switch d.Adapter {
	case AdapterInbox:
		if d.URL != "" || d.Dir != "" {
			fail("the inbox adapter takes neither url nor dir")
		}
	case AdapterHTTPS:
		// The adapter's own check, so that the registry refuses what the
		// first delivery would (a private address without allow_private,
		// a fragment, credentials).
		if err := https.CheckTarget(d.URL, d.AllowPrivate); err != nil {
			fail("%v", err)
		}
		if d.Dir != "" {
			fail("the https adapter takes no dir")
		}
	case AdapterFile:
		if err := file.CheckDir(d.Dir); err != nil {
			fail("%v", err)
		}
		if d.URL != "" {
			fail("the file adapter takes no url")
		}
	case "":
		fail("adapter is missing (%s, %s or %s)", AdapterInbox, AdapterHTTPS, AdapterFile)
	default:
		fail("unknown adapter %q (%s, %s or %s)", d.Adapter, AdapterInbox, AdapterHTTPS, AdapterFile)
	}
	if d.AllowPrivate && d.Adapter != AdapterHTTPS {
		fail("allow_private applies to the https adapter only")
	}
	return errs
}

// Participant returns the participant with the given id. The participant
// is shared and must not be modified.
func (r *Registry) Participant(id string) (*Participant, bool) {
	p, ok := r.byID[id]
	return p, ok
}

// Participants returns every participant, sorted by id. The slice is a copy;
// the participants are shared and must not be modified.
func (r *Registry) Participants() []*Participant { return slices.Clone(r.sorted) }

// SigningKey returns the owner and the public key of a signing key kid. Keys
// of suspended participants are returned too: suspension is the exchange's
// and the policy's decision (DOMAIN R14), not the key lookup's.
func (r *Registry) SigningKey(kid string) (owner string, key *envelope.PublicKey, ok bool) {
	e, ok := r.byKID[kid]
	if !ok {
		return "", nil, false
	}
	return e.owner, e.key, true
}

// Anchors returns the registry's trust anchors.
func (r *Registry) Anchors() []*x509.Certificate { return slices.Clone(r.anchors) }

// ClientCAs returns the pool of trust anchors for verifying client
// certificates. It is shared: do not add to it.
func (r *Registry) ClientCAs() *x509.CertPool { return r.pool }
