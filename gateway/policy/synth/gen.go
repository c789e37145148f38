package synth

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/xborder/xborder/gateway/policy"
)

// DefaultNow is the decision time of a generator unless Options says
// otherwise, so that decisions are reproducible.
var DefaultNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// Mix weighs the two kinds of case: realistic ones (well-formed messages of
// the federation, some of which the rules must deny) and adversarial ones
// (unknown or forbidden member names, values of the wrong type, bad dates).
type Mix struct {
	Realistic   int
	Adversarial int
}

// Options tunes a generator. The zero value gives DefaultNow and 60/40.
type Options struct {
	Now time.Time
	Mix Mix
}

// Tags say what a case exercises, one dimension each, for Coverage.
type Tags struct {
	PurposeType string   // "purpose/type"
	RolePair    string   // "purpose/type:sender-role→recipient-role"
	Age         string   // an age band of AgeBands, or ref-only / no-subject
	Consent     []string // the consent case first, then its modifiers
	Sections    []string // L3 and L4 field paths present
	Other       []string // agreement, suspension, response, service, biometrics, offence, adversarial kinds
}

// Case is one generated decision input.
type Case struct {
	Input       policy.Input
	Raw         []byte // the message as its sender signs it; decodes (UseNumber) to Input.Message
	Label       string // purpose/type/sender-role→recipient-role/age/consent
	Tags        Tags
	Adversarial bool
	// Invalid is set when a member name under subject, record or consent is
	// outside ^[A-Za-z0-9_-]{1,64}$: the gateway must refuse the message
	// before the policy runs (PROTOCOL.md §2).
	Invalid bool
}

// Generator makes cases; the same seed, spec, parties and options give the
// same cases in the same order. A Generator is not safe for concurrent use.
type Generator struct {
	r       *rand.Rand
	spec    *Spec
	parties []policy.Party
	mix     Mix
	now     time.Time
	today   time.Time
	nowStr  string
	nowUnix int64

	allTypes   []string
	pairs      map[string][]rolePair // "purpose/type" → role pairs
	bands      []band
	goodBands  []int
	badBands   []int
	sections   [][2]string // L3 and L4 field paths, split
	recordSecs []string    // the record's L3 and L4 sections
	purposes   []string    // catalogue purposes, for consents naming another one
	consentP   []string    // purposes that need a consent (R9)
	buf        []byte
}

// unknownPurposes are purposes outside any catalogue (R2).
var unknownPurposes = []string{"intelligence-sharing", "Identity-Verification", "border_screening", "research", ""}

// protocolTypes are the message types of PROTOCOL.md §2 and one it does not know.
var protocolTypes = []string{"identity.verification.request", "identity.verification.response", "referral", "referral.response", "consent.withdrawal", "case.transfer"}

// New returns a generator over spec for the parties (DemoFederation when nil).
func New(seed int64, spec *Spec, parties []policy.Party, opts Options) *Generator {
	if parties == nil {
		parties = DemoFederation()
	}
	if opts.Now.IsZero() {
		opts.Now = DefaultNow
	}
	if opts.Mix.Realistic <= 0 && opts.Mix.Adversarial <= 0 {
		opts.Mix = Mix{Realistic: 60, Adversarial: 40}
	}
	opts.Mix.Realistic = max(opts.Mix.Realistic, 0)
	opts.Mix.Adversarial = max(opts.Mix.Adversarial, 0)
	now := opts.Now.UTC()
	g := &Generator{
		r:       rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)),
		spec:    spec,
		parties: parties,
		mix:     opts.Mix,
		now:     now,
		today:   time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC),
		nowStr:  now.Format(time.RFC3339),
		nowUnix: now.Unix(),
		pairs:   map[string][]rolePair{},
	}
	types := slices.Clone(protocolTypes)
	for _, p := range spec.Purposes {
		g.purposes = append(g.purposes, p.Name)
		if p.ConsentRequired {
			g.consentP = append(g.consentP, p.Name)
		}
		types = append(types, p.Types...)
	}
	slices.Sort(types)
	g.allTypes = slices.Compact(types)
	day := ymd(g.today)
	for _, p := range spec.Purposes {
		for _, t := range g.allTypes {
			rps := spec.pairsFor(p, t, parties)
			for i := range rps {
				for _, ij := range rps[i].parties {
					switch spec.agreementState(parties[ij[0]].ID, parties[ij[1]].ID, p.Name, day) {
					case "active":
						rps[i].active = append(rps[i].active, ij)
					case "expired":
						rps[i].expired = append(rps[i].expired, ij)
					}
				}
			}
			g.pairs[p.Name+"/"+t] = rps
		}
	}
	for _, path := range spec.Sections() {
		if sec, field, ok := cut(path); ok {
			g.sections = append(g.sections, [2]string{sec, field})
			if sec == "record" {
				g.recordSecs = append(g.recordSecs, field)
			}
		}
	}
	g.buildBands()
	return g
}

// Now returns the decision time of every case.
func (g *Generator) Now() time.Time { return g.now }

func (g *Generator) chance(p float64) bool { return g.r.Float64() < p }

func (g *Generator) pick(list []string) string { return list[g.r.IntN(len(list))] }

func (g *Generator) uuid() string {
	var b [16]byte
	a, c := g.r.Uint64(), g.r.Uint64()
	for i := range 8 {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	out := make([]byte, 36)
	j := 0
	for i, x := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexDigits[x>>4], hexDigits[x&0xf]
		j += 2
	}
	return string(out)
}

// Next returns the next case.
func (g *Generator) Next() Case {
	b := &builder{g: g}
	b.tags.Other = make([]string, 0, 16)
	b.adv = g.r.IntN(g.mix.Realistic+g.mix.Adversarial) >= g.mix.Realistic
	b.choosePurpose()
	b.chooseParties()
	b.chooseAge()
	b.build()
	if b.adv {
		b.mutate()
	}
	b.tagSections()

	c := Case{
		Input: policy.Input{
			Now:              g.nowStr,
			Message:          b.msg,
			Sender:           b.sender,
			Recipient:        b.recipient,
			Request:          b.req,
			ConsentWithdrawn: b.withdrawn,
		},
		Adversarial: b.adv,
		Tags:        b.tags,
	}
	if b.adv { // a realistic case uses only the names of DOMAIN.md
		for _, sec := range []string{"subject", "record", "consent"} {
			if invalidNames(b.msg[sec]) {
				c.Invalid = true
			}
		}
	}
	if c.Invalid {
		c.Tags.Other = append(c.Tags.Other, "invalid-name")
	}
	if b.adv {
		c.Tags.Other = append(c.Tags.Other, "kind:adversarial")
	} else {
		c.Tags.Other = append(c.Tags.Other, "kind:realistic")
	}
	g.buf = appendJSON(g.buf[:0], b.msg)
	c.Raw = slices.Clone(g.buf)
	consent := "none"
	if len(b.tags.Consent) > 0 {
		consent = b.tags.Consent[0]
	}
	c.Label = b.purpose + "/" + b.typ + "/" + b.sRole + "→" + b.rRole + "/" + b.tags.Age + "/" + consent
	return c
}

// validName is the member-name rule of PROTOCOL.md §2: ^[A-Za-z0-9_-]{1,64}$.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// invalidNames says whether v holds, at any depth, a member name outside
// the rule of PROTOCOL.md §2.
func invalidNames(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if !validName(k) || invalidNames(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if invalidNames(e) {
				return true
			}
		}
	}
	return false
}

// builder holds one case while it is made.
type builder struct {
	g   *Generator
	adv bool

	purpose   string
	p         Purpose
	known     bool
	typ       string
	sender    policy.Party
	recipient policy.Party
	sRole     string
	rRole     string
	age       age

	msg       map[string]any
	subject   map[string]any
	record    map[string]any
	consent   map[string]any
	req       *policy.Request
	withdrawn bool
	tags      Tags
}

func (b *builder) other(tag string) { b.tags.Other = append(b.tags.Other, tag) }

// choosePurpose: mostly a purpose of the catalogue with a type it allows;
// else a type it does not allow, or a purpose outside it (R2).
func (b *builder) choosePurpose() {
	g := b.g
	r := g.r.Float64()
	switch {
	case r < 0.85:
		b.p = g.spec.Purposes[g.r.IntN(len(g.spec.Purposes))]
		b.known = true
		b.typ = g.pick(b.p.Types)
		b.other("pt:allowed")
	case r < 0.95:
		b.p = g.spec.Purposes[g.r.IntN(len(g.spec.Purposes))]
		b.known = true
		var not []string
		for _, t := range g.allTypes {
			if !slices.Contains(b.p.Types, t) {
				not = append(not, t)
			}
		}
		b.typ = g.pick(not)
		b.other("pt:type-not-allowed")
	default:
		b.p = Purpose{Name: g.pick(unknownPurposes)}
		b.typ = g.pick(g.allTypes)
		b.other("pt:unknown-purpose")
	}
	b.purpose = b.p.Name
	b.tags.PurposeType = b.purpose + "/" + b.typ
}

// chooseParties: mostly two parties holding the roles the purpose asks
// (reversed for a response), preferring those an active agreement covers;
// else any two parties (R2, R3). A few are suspended (R14).
func (b *builder) chooseParties() {
	g := b.g
	rps := g.pairs[b.purpose+"/"+b.typ]
	if b.known && len(rps) > 0 && g.chance(0.85) {
		rp := rps[g.r.IntN(len(rps))]
		cands := rp.parties
		switch r := g.r.Float64(); {
		case r < 0.7 && len(rp.active) > 0:
			cands = rp.active
		case r < 0.85 && len(rp.expired) > 0:
			cands = rp.expired // TJ-UN-2020 in the demo federation
		}
		ij := cands[g.r.IntN(len(cands))]
		b.sender, b.recipient = g.parties[ij[0]], g.parties[ij[1]]
		b.sRole, b.rRole = rp.sRole, rp.rRole
		b.other("pair:catalogue")
	} else {
		i := g.r.IntN(len(g.parties))
		j := g.r.IntN(len(g.parties) - 1)
		if j >= i {
			j++
		}
		b.sender, b.recipient = g.parties[i], g.parties[j]
		senders, recipients := g.spec.roles(b.p, b.typ)
		b.sRole = roleFor(b.sender, senders)
		b.rRole = roleFor(b.recipient, recipients)
		b.other("pair:any")
	}
	b.tags.RolePair = b.purpose + "/" + b.typ + ":" + b.sRole + "→" + b.rRole
	b.other("agr:" + g.spec.agreementState(b.sender.ID, b.recipient.ID, b.purpose, ymd(g.today)))
	switch r := g.r.Float64(); {
	case r < 0.025:
		b.sender.Suspended = true
		b.other("suspended:sender")
	case r < 0.05:
		b.recipient.Suspended = true
		b.other("suspended:recipient")
	default:
		b.other("suspended:none")
	}
}

// roleFor names the party's role the purpose asks for, or its first role.
func roleFor(p policy.Party, want []string) string {
	for _, r := range p.Roles {
		if slices.Contains(want, r) {
			return r
		}
	}
	if len(p.Roles) == 0 {
		return "none"
	}
	return p.Roles[0]
}

func (b *builder) chooseAge() {
	g := b.g
	var i int
	if b.adv && g.chance(0.35) {
		i = g.badBands[g.r.IntN(len(g.badBands))]
	} else {
		i = g.goodBands[g.r.IntN(len(g.goodBands))]
	}
	b.age = g.bands[i].make(g)
	b.tags.Age = b.age.band
}

// allow returns the R10 allow-list of the case's purpose and type, if any.
func (b *builder) allow() AllowList {
	if byType, ok := b.g.spec.AllowLists[b.purpose]; ok {
		return byType[b.typ]
	}
	return AllowList{}
}

func (b *builder) tagSections() {
	for _, sf := range b.g.sections {
		var m map[string]any
		switch sf[0] {
		case "subject":
			m = b.subject
		case "record":
			m = b.record
		}
		if _, ok := m[sf[1]]; ok {
			b.tags.Sections = append(b.tags.Sections, sf[0]+"."+sf[1])
		}
	}
}

func cut(path string) (string, string, bool) {
	for i := 0; i < len(path); i++ {
		if path[i] == '.' {
			return path[:i], path[i+1:], true
		}
	}
	return path, "", false
}

// numericDate writes a NumericDate: whole seconds, or with a fraction
// (RFC 7519 allows it).
func numericDate(sec int64, frac string) json.Number {
	return json.Number(strconv.FormatInt(sec, 10) + frac)
}
