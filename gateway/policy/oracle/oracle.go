package oracle

import (
	"slices"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/policy"
)

// Violation is one thing the gateway did that the rules forbid. Rule is a
// DOMAIN.md rule id (R1–R16) or PROTOCOL-2 (the message rules of PROTOCOL.md
// §2) or PROTOCOL-4 (a delivery carries the message as sent, less the
// removals). Path names a field path of DOMAIN.md; a member name the sender
// chose reads "<unlisted>". Why never repeats a value of the message.
// Strict names the strict check that found it, empty when DOMAIN leaves no
// doubt.
type Violation struct {
	Rule   string
	Path   string
	Why    string
	Strict string
}

func (v Violation) String() string {
	s := v.Rule
	if v.Strict != "" {
		s += " (strict " + v.Strict + ")"
	}
	if v.Path != "" {
		s += " " + v.Path
	}
	return s + ": " + v.Why
}

// Strict checks: readings of DOMAIN.md that are defensible but that the
// text does not settle. Each is on unless Options.Relax names it.
const (
	// StrictResponseAge applies R6 and R7 to responses too: a border-screening
	// or prosecution-evidence answer is about the same person, and with only
	// subject.ref the age is unknown, so a child (R4).
	StrictResponseAge = "response-age"
	// StrictUnknownAgeProsecution denies prosecution evidence when the age at
	// the conduct is unknown: R7 cannot be shown to hold.
	StrictUnknownAgeProsecution = "unknown-age-prosecution"
	// StrictChildAtConduct sends prosecution evidence about conduct before 18
	// only to child justice, even when the subject is an adult now (R7).
	StrictChildAtConduct = "child-at-conduct"
	// StrictOffenceDate denies an offence_date that is not YYYY-MM-DD (R7, R1).
	StrictOffenceDate = "offence-date"
	// StrictEstimateBesideDate denies a bad age_estimate even when a good
	// birth_date decides the age (R4 read word for word).
	StrictEstimateBesideDate = "estimate-beside-date"
	// StrictAdultConsent asks an adult's own consent (given_by subject): R5
	// says "15 and over the child consents", and speaks of children only.
	StrictAdultConsent = "adult-consent"
	// StrictConsentBasis asks a consent for its basis (DOMAIN.md §5: consent
	// or best_interests_override); without one it is read as a consent.
	StrictConsentBasis = "consent-basis"
	// StrictConsentExpiry asks a consent for an expires_at: without one it
	// cannot be shown unexpired (R9).
	StrictConsentExpiry = "consent-expiry"
	// StrictOverrideScope holds a best-interests override to the recipients,
	// purposes and expiry its consent names, when it names them (R9).
	StrictOverrideScope = "override-scope"
	// StrictWithdrawalConsent lets only consent.id through on a
	// consent.withdrawal (PROTOCOL.md §5.1), not every §5 member.
	StrictWithdrawalConsent = "withdrawal-consent"
	// StrictShape refuses content nested under a field that DOMAIN.md §4–§5
	// gives a value (names.primary, sex, notes, consent.id…): a field on
	// the allow-list cannot carry other fields inside it.
	StrictShape = "shape"
	// StrictInReplyTo refuses in_reply_to on a message that is not a
	// response (PROTOCOL.md §2: "responses only").
	StrictInReplyTo = "in-reply-to"
	// StrictParties asks that from and to name the registry's sender and
	// recipient of the input.
	StrictParties = "parties"
	// StrictWithdrawalAgreement applies R3 to a consent.withdrawal too:
	// denying one under an expired agreement keeps the recipients from
	// learning that the consent is gone (R16), yet R3 names no exception.
	StrictWithdrawalAgreement = "withdrawal-agreement"
)

// StrictChecks lists every strict check.
func StrictChecks() []string {
	return []string{StrictResponseAge, StrictUnknownAgeProsecution, StrictChildAtConduct, StrictOffenceDate,
		StrictEstimateBesideDate, StrictAdultConsent, StrictConsentBasis, StrictConsentExpiry, StrictOverrideScope,
		StrictWithdrawalConsent, StrictShape, StrictInReplyTo, StrictParties, StrictWithdrawalAgreement}
}

// Options tunes an oracle.
type Options struct {
	// Relax names the strict checks to switch off.
	Relax []string
}

// Oracle judges decisions and deliveries against the rules' data.
type Oracle struct {
	r     *rules
	relax set
}

// New returns an oracle for the policy data with every strict check on.
func New(dataJSON []byte) (*Oracle, error) { return NewWithOptions(dataJSON, Options{}) }

// NewWithOptions returns an oracle for the policy data.
func NewWithOptions(dataJSON []byte, opts Options) (*Oracle, error) {
	r, err := parseRules(dataJSON)
	if err != nil {
		return nil, err
	}
	return &Oracle{r: r, relax: setOf(opts.Relax)}, nil
}

// Check judges one decision: allowed is the gateway's answer, delivered the
// message the recipient read after opening its delivery (nil when nothing
// was delivered) and redacted the provenance's list of removed paths.
func (o *Oracle) Check(in policy.Input, allowed bool, delivered map[string]any, redacted []string) []Violation {
	f := o.facts(in)
	var out []Violation
	if allowed {
		out = append(out, o.mustDeny(in, f)...)
	}
	if delivered != nil {
		if !allowed {
			out = append(out, Violation{Rule: "R1", Why: "a message the gateway denied reached its recipient"})
		}
		out = append(out, o.checkDelivery(in, f, delivered, redacted)...)
	}
	return o.keep(out)
}

// MustDeny lists why the rules deny in, empty when nothing does. The
// delivery is judged by Check; this is the decision alone.
func (o *Oracle) MustDeny(in policy.Input) []Violation {
	return o.keep(o.mustDeny(in, o.facts(in)))
}

func (o *Oracle) keep(v []Violation) []Violation {
	out := v[:0]
	for _, x := range v {
		if x.Strict == "" || !o.relax[x.Strict] {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// hasRole says whether p holds one of roles.
func hasRole(p policy.Party, roles set) bool { return roles.any(p.Roles) }

// purposeName is the purpose as a reason may print it: a catalogue name,
// never what the sender wrote outside it.
func (o *Oracle) purposeName(f *facts) string {
	if _, ok := o.r.purposes[f.purpose]; ok {
		return f.purpose
	}
	return "a purpose outside the catalogue"
}

func (o *Oracle) typeName(f *facts) string {
	for _, p := range o.r.purposes {
		if p.types[f.typ] {
			return f.typ
		}
	}
	return "an unlisted type"
}

// mustDeny lists the rules that deny the input (DOMAIN.md §6), in rule order.
// Each step below adds the violations of one rule or group of rules, and
// the steps run in the order of the rules so that the list reads that way.
func (o *Oracle) mustDeny(in policy.Input, f *facts) []Violation {
	var out []Violation
	if !f.hasNow {
		out = append(out, Violation{Rule: "R1", Why: "the input has no RFC 3339 decision time: no rule can be applied"})
	}
	out = append(out, messageProblems(in)...)
	out = append(out, o.purposeProblems(in, f)...)
	out = append(out, o.agreementProblems(in, f)...)
	out = append(out, badAgeInput(f)...)
	out = append(out, o.screeningProblems(f)...)

	// R7 age of criminal responsibility.
	if o.r.prosecute.purposes[f.purpose] {
		out = append(out, o.criminalAge(in, f)...)
	}

	// R9 referral consent.
	if p, known := o.r.purposes[f.purpose]; f.typ == "referral" && known && p.consentRequired {
		out = append(out, o.consentProblems(in, f)...)
	}

	out = append(out, suspensionProblems(in)...)
	out = append(out, o.replyProblems(in, f)...)

	// R16 withdrawn consent.
	if in.ConsentWithdrawn && f.typ == "referral" {
		out = append(out, Violation{Rule: "R16", Why: "the referral relies on a withdrawn consent"})
	}
	return out
}

// messageProblems is PROTOCOL.md §2: what makes a message invalid, so that
// the gateway refuses it as invalid_message before the policy runs. The
// oracle still lists it as a denial, since such a message must never go.
func messageProblems(in policy.Input) []Violation {
	var out []Violation
	add := func(strict, why string) {
		out = append(out, Violation{Rule: "PROTOCOL-2", Why: why, Strict: strict})
	}
	msg := in.Message
	if bad := InvalidNames(msg); len(bad) > 0 {
		for _, p := range bad {
			out = append(out, Violation{Rule: "PROTOCOL-2", Path: p, Why: "a member name outside ^[A-Za-z0-9_-]{1,64}$ must be refused before the policy"})
		}
	}
	// One unlisted member is enough: the violation names no member, so
	// listing each would only repeat it.
	for k := range msg {
		if !protocolTopLevel[k] {
			add("", "an unlisted top-level member must be refused before the policy")
			break
		}
	}
	from, _ := msg["from"].(string)
	to, _ := msg["to"].(string)
	if from == to {
		add("", "to must differ from from")
	}
	if from != in.Sender.ID || to != in.Recipient.ID {
		add(StrictParties, "from and to must be the registry's sender and recipient")
	}
	return out
}

// purposeProblems is R2: the purpose is in the catalogue, allows the
// message type, and the parties hold its roles. A response travels the
// other way, so its sender holds a recipient role and the reverse.
func (o *Oracle) purposeProblems(in policy.Input, f *facts) []Violation {
	var out []Violation
	add := func(why string) { out = append(out, Violation{Rule: "R2", Why: why}) }
	p, known := o.r.purposes[f.purpose]
	if !known {
		add("the purpose is outside the catalogue")
		return out
	}
	if !p.types[f.typ] {
		add("the message type is not allowed for " + f.purpose)
	}
	senders, recipients := p.senders, p.recipients
	if f.isResponse {
		senders, recipients = recipients, senders
	}
	if !hasRole(in.Sender, senders) {
		add("the sender holds no sender role for " + f.purpose)
	}
	if !hasRole(in.Recipient, recipients) {
		add("the recipient holds no recipient role for " + f.purpose)
	}
	return out
}

// agreementProblems is R3: an agreement active on the decision's day
// covers both parties and the purpose. Denying a consent.withdrawal for
// it is a strict reading (StrictWithdrawalAgreement), since the withdrawal
// would then not reach the recipients it concerns.
func (o *Oracle) agreementProblems(in policy.Input, f *facts) []Violation {
	if o.agreementCovers(in.Sender.ID, in.Recipient.ID, f.purpose, f.day) {
		return nil
	}
	strict := ""
	if f.typ == "consent.withdrawal" {
		strict = StrictWithdrawalAgreement
	}
	return []Violation{{Rule: "R3", Why: "no active agreement covers both parties and " + o.purposeName(f), Strict: strict}}
}

// badAgeInput is R4: a birth_date or age_estimate that cannot be read is
// denied, never read as an unknown age. A bad estimate beside a birth
// date is a strict reading, since the date alone decides the age.
func badAgeInput(f *facts) []Violation {
	var out []Violation
	if f.badBirth {
		out = append(out, Violation{Rule: "R4", Path: "subject.birth_date", Why: "birth_date is not a real date in YYYY-MM-DD, YYYY-MM or YYYY"})
	}
	if f.badEstimate {
		v := Violation{Rule: "R4", Path: "subject.age_estimate", Why: "age_estimate is not a non-negative number"}
		if f.hasBirth {
			v.Strict = StrictEstimateBesideDate
		}
		out = append(out, v)
	}
	return out
}

// screeningProblems is R6: no child's data for a screening purpose. A bad
// age input is already denied by R4, so it is not counted twice; for a
// response it is a strict reading (StrictResponseAge).
func (o *Oracle) screeningProblems(f *facts) []Violation {
	if !o.r.screening.noChildren[f.purpose] || !f.child || f.badBirth || f.badEstimate {
		return nil
	}
	strict := ""
	if f.isResponse {
		strict = StrictResponseAge
	}
	return []Violation{{Rule: "R6", Why: "a child's data is never sent for " + f.purpose + " (under 18 or age not known: R4)", Strict: strict}}
}

// suspensionProblems is R14: no message from or to a suspended party.
func suspensionProblems(in policy.Input) []Violation {
	var out []Violation
	if in.Sender.Suspended {
		out = append(out, Violation{Rule: "R14", Why: "the sender is suspended"})
	}
	if in.Recipient.Suspended {
		out = append(out, Violation{Rule: "R14", Why: "the recipient is suspended"})
	}
	return out
}

// replyProblems is R15: a response binds to its request, and a message
// that is not a response names no request it would answer (a strict
// reading, StrictInReplyTo).
func (o *Oracle) replyProblems(in policy.Input, f *facts) []Violation {
	if f.isResponse {
		return o.requestProblems(in, f)
	}
	if _, ok := in.Message["in_reply_to"]; ok {
		return []Violation{{Rule: "R15", Why: "in_reply_to on a message that is not a response", Strict: StrictInReplyTo}}
	}
	return nil
}

// agreementCovers is R3: an agreement whose parties hold both ids and whose
// purposes hold the purpose, valid from its first to its last day inclusive
// on the decision's UTC day.
func (o *Oracle) agreementCovers(a, b, purpose, day string) bool {
	for _, ag := range o.r.agreements {
		if ag.parties[a] && ag.parties[b] && ag.purposes[purpose] && ag.validFrom <= day && day <= ag.validUntil {
			return true
		}
	}
	return false
}

// criminalAge is R7: no evidence about conduct under the minimum age of
// criminal responsibility of the sender's country; about a child, only to
// a child-justice recipient.
func (o *Oracle) criminalAge(in policy.Input, f *facts) []Violation {
	var out []Violation
	add := func(strict, why string) {
		if f.isResponse {
			strict = StrictResponseAge
		}
		out = append(out, Violation{Rule: "R7", Why: why, Strict: strict})
	}
	macr := o.r.thresholds.criminal
	if a, ok := o.r.thresholds.criminalByCountry[in.Sender.Country]; ok {
		macr = a
	}
	// The time of the conduct: offence_date, else the decision (DOMAIN.md §8).
	at := f.today
	if v, ok := f.record["offence_date"]; ok {
		if d, good := offenceDay(v); good {
			at = d
		} else {
			out = append(out, Violation{Rule: "R7", Path: "record.offence_date", Why: "offence_date is not a YYYY-MM-DD date", Strict: StrictOffenceDate})
		}
	}
	var ageThen float64
	knownThen := true
	switch {
	case f.badBirth || f.badEstimate:
		knownThen = false
	case f.hasBirth:
		ageThen = float64(yearsBetween(f.birth, at))
	case f.hasEstimate:
		// The estimate is of the age now; take off the time since the
		// conduct, in years of 365.25 days.
		ageThen = f.estimate - f.today.Sub(at).Hours()/24/365.25
	default:
		knownThen = false
	}
	childRole := set{o.r.prosecute.childRole: true}
	toChildJustice := hasRole(in.Recipient, childRole)
	switch {
	case !knownThen:
		if !f.badBirth && !f.badEstimate {
			add(StrictUnknownAgeProsecution, "the age at the conduct is not known, so not shown to be over the minimum age of criminal responsibility")
		}
	case ageThen < float64(macr):
		add("", "the conduct was under the minimum age of criminal responsibility")
	}
	switch {
	case toChildJustice || f.badBirth || f.badEstimate:
	case f.child:
		add("", "evidence about a child goes only to a child-justice recipient")
	case knownThen && ageThen < float64(o.r.thresholds.adult):
		add(StrictChildAtConduct, "evidence about conduct as a child goes only to a child-justice recipient")
	}
	return out
}

// consentProblems is R9 with R5: a consent unexpired now, naming the
// recipient and the purpose, given as the child's age asks; or a
// best-interests override with a bia_ref approved by child protection.
func (o *Oracle) consentProblems(in policy.Input, f *facts) []Violation {
	var out []Violation
	add := func(strict, why string) {
		out = append(out, Violation{Rule: "R9", Path: "consent", Why: why, Strict: strict})
	}
	c := f.consent
	if c == nil {
		add("", "a referral for "+f.purpose+" carries no consent")
		return out
	}
	basis, _ := c["basis"].(string)
	if _, ok := c["basis"]; !ok {
		add(StrictConsentBasis, "the consent names no basis")
		basis = "consent" // read as a consent, the rest still applies
	}
	switch basis {
	case "consent":
		out = append(out, o.consentScope(in, f, "")...)
		if _, ok := c["expires_at"]; !ok {
			add(StrictConsentExpiry, "the consent has no expires_at")
		}
		out = append(out, o.fitsAge(f)...)
	case "best_interests_override":
		ov, ok := c["override"].(map[string]any)
		if !ok {
			add("", "a best-interests override without an override object")
			break
		}
		if s, _ := ov["bia_ref"].(string); s == "" {
			add("", "a best-interests override without a bia_ref")
		}
		if s, _ := ov["approved_by_role"].(string); s != o.r.approver {
			add("", "a best-interests override not approved by "+o.r.approver)
		}
		out = append(out, o.consentScope(in, f, StrictOverrideScope)...)
	default:
		add("", "the consent basis is neither consent nor best_interests_override")
	}
	return out
}

// consentScope checks expiry and that the consent names the recipient and
// the purpose. For an override (strict) it only holds what is written.
func (o *Oracle) consentScope(in policy.Input, f *facts, strict string) []Violation {
	var out []Violation
	add := func(why string) {
		out = append(out, Violation{Rule: "R9", Path: "consent", Why: why, Strict: strict})
	}
	c := f.consent
	if v, ok := c["expires_at"]; ok {
		s, _ := v.(string)
		t, err := parseTime(s)
		switch {
		case err != nil:
			add("expires_at is not an RFC 3339 time")
		case !f.now.Before(t):
			add("the consent has expired at the time of the decision")
		}
	}
	if _, ok := c["recipients"]; ok || strict == "" {
		if !listHas(c["recipients"], in.Recipient.ID) {
			add("the consent's recipients do not name the recipient")
		}
	}
	if _, ok := c["purposes"]; ok || strict == "" {
		if !listHas(c["purposes"], f.purpose) {
			add("the consent's purposes do not name " + f.purpose)
		}
	}
	return out
}

// fitsAge is R5: under 13 a representative consents; 13 and 14 either;
// from 6 to 14, a representative's consent needs child_assent yes; from 15
// the subject consents. An unknown age asks a representative and the
// child's assent (DOMAIN.md §8).
func (o *Oracle) fitsAge(f *facts) []Violation {
	var out []Violation
	add := func(strict, why string) {
		out = append(out, Violation{Rule: "R9", Path: "consent", Why: why + " (R5)", Strict: strict})
	}
	t := o.r.thresholds
	given, _ := f.consent["given_by"].(string)
	assent, _ := f.consent["child_assent"].(string)
	adult := f.ageKnown && !f.badBirth && !f.badEstimate && f.age >= float64(t.adult)
	if adult {
		if given != "subject" {
			add(StrictAdultConsent, "an adult consents for themself")
		}
		return out
	}
	if given != "subject" && given != "representative" {
		add("", "given_by is neither subject nor representative")
		return out
	}
	if !f.ageKnown || f.badBirth || f.badEstimate {
		if given != "representative" || assent != "yes" {
			add("", "with the age unknown a representative consents and the child assents")
		}
		return out
	}
	years := int(f.age) // whole years of an estimate
	assentAge := years >= t.assentFrom && years <= t.assentTo
	switch {
	case years < t.representativeOnlyUnder && given != "representative":
		add("", "under 13 a representative consents")
	case years >= t.childOnlyFrom && given != "subject":
		add("", "from 15 the subject consents")
	case given == "representative" && assentAge && assent != "yes":
		add("", "from 6 to 14 a representative's consent needs the child's assent")
	}
	return out
}

// requestProblems is R15: a response names an accepted request by
// in_reply_to, goes back to its sender and keeps its purpose.
func (o *Oracle) requestProblems(in policy.Input, f *facts) []Violation {
	var out []Violation
	add := func(why string) { out = append(out, Violation{Rule: "R15", Why: why}) }
	req := in.Request
	irt, _ := in.Message["in_reply_to"].(string)
	if req == nil {
		add("a response without an accepted request")
		return out
	}
	if irt == "" || irt != req.ID {
		add("in_reply_to does not name the accepted request")
	}
	if req.Type != o.r.responses[f.typ] {
		add("the request answered is not of the type this response answers")
	}
	if req.From != in.Recipient.ID || req.To != in.Sender.ID {
		add("a response goes back to the request's sender, from its recipient")
	}
	if req.Purpose != f.purpose {
		add("a response keeps the purpose of its request")
	}
	return out
}

// allowList is the R10 allow-list for the input: the child variant for a
// child (R4).
func (o *Oracle) allowList(f *facts) (allowRule, bool) {
	a, ok := o.r.allow[f.purpose][f.typ]
	if ok && f.child && a.child != nil {
		return *a.child, true
	}
	return a, ok
}

// judge says what is wrong with a leaf the recipient can read at comps
// (member names, array indices left out), if anything. container is set
// for an empty object or array.
func (o *Oracle) judge(in policy.Input, f *facts, comps []string, container bool) (Violation, bool) {
	v, _, bad := o.judgeAt(in, f, comps, container)
	return v, bad
}

// judgeAt is judge that also says how many members of comps the
// violation is about: removing comps[:n] would cure it. A relaxed strict
// check finds nothing.
func (o *Oracle) judgeAt(in policy.Input, f *facts, comps []string, container bool) (Violation, int, bool) {
	v, n, bad := o.judgeLeaf(in, f, comps, container)
	if bad && v.Strict != "" && o.relax[v.Strict] {
		return Violation{}, 0, false
	}
	return v, n, bad
}

func (o *Oracle) judgeLeaf(in policy.Input, f *facts, comps []string, container bool) (Violation, int, bool) {
	bad := func(rule string, n int, why, strict string) (Violation, int, bool) {
		return Violation{Rule: rule, Path: safePath(comps[:n]), Why: why, Strict: strict}, n, true
	}
	top := comps[0]
	if !o.r.topLevel[top] {
		return bad("R10", 1, "a top-level member outside the fields that always pass", "")
	}
	switch top {
	case "subject", "record":
		if len(comps) == 1 {
			if container {
				return Violation{}, 0, false
			}
			return bad("R10", 1, top+" is not an object", StrictShape)
		}
		return o.judgeSection(in, f, comps)
	case "consent":
		if len(comps) == 1 {
			if container {
				return Violation{}, 0, false
			}
			return bad("R10", 1, "consent is not an object", StrictShape)
		}
		m := comps[1]
		if !consentMembers[m] {
			return bad("R10", 2, "only the members of DOMAIN.md §5 pass inside consent", "")
		}
		if f.typ == "consent.withdrawal" && m != "id" {
			return bad("R10", 2, "a consent.withdrawal carries only consent.id (PROTOCOL.md §5.1)", StrictWithdrawalConsent)
		}
		if m == "override" && len(comps) > 2 {
			if !overrideMembers[comps[2]] {
				return bad("R10", 3, "only approved_by_role, reason and bia_ref pass inside consent.override", "")
			}
			if len(comps) > 3 {
				return bad("R10", 4, "content nested inside a consent.override member", StrictShape)
			}
		}
		if consentValues[m] && len(comps) > 2 {
			return bad("R10", 3, "content nested inside a consent member that holds a value", StrictShape)
		}
	default:
		if len(comps) > 1 {
			return bad("R10", 2, "content nested inside a top-level field that holds a value", StrictShape)
		}
	}
	return Violation{}, 0, false
}

// judgeSection applies R10 and the rules that narrow it (R6, R8, R11, R12,
// R15) to a leaf inside subject or record.
func (o *Oracle) judgeSection(in policy.Input, f *facts, comps []string) (Violation, int, bool) {
	bad := func(rule string, n int, why, strict string) (Violation, int, bool) {
		return Violation{Rule: rule, Path: safePath(comps[:n]), Why: why, Strict: strict}, n, true
	}
	sec, m := comps[0], comps[1]
	path := sec + "." + m
	rule := "R10"
	if f.typ == "identity.verification.response" {
		rule = "R11"
	}
	a, ok := o.allowList(f)
	if !ok {
		return bad(rule, 2, "nothing inside "+sec+" passes for "+o.typeName(f)+" under "+o.purposeName(f), "")
	}
	list := a.subject
	if sec == "record" {
		list = a.record
	}
	if o.r.l4Paths[path] && o.r.l4.neverPurposes[f.purpose] {
		return bad("R8", 2, "an L4 section is never sent for "+f.purpose, "")
	}
	if !list[m] {
		return bad(rule, 2, "not on the allow-list of "+o.typeName(f)+" for "+o.purposeName(f), "")
	}
	if o.r.l4Paths[path] {
		if !o.r.l4.purposes[f.purpose] || !hasRole(in.Recipient, o.r.l4.recipientRoles) {
			return bad("R10", 2, "an L4 section goes only to child-protection, health or social-services recipients of rehabilitation-referral", "")
		}
	}
	if path == "subject.biometrics" {
		bio, _ := f.subject["biometrics"].(map[string]any)
		mode, _ := bio["mode"].(string)
		dpia, _ := bio["dpia_id"].(string)
		if !o.r.biometrics.purposes[f.purpose] || !o.r.biometrics.types[f.typ] || mode != o.r.biometrics.mode || dpia == "" {
			return bad("R12", 2, "biometrics pass only for an identity-verification request with mode 1:1 and a dpia_id", "")
		}
		if f.child && hasRole(in.Recipient, o.r.screening.noChildBiometricsRoles) {
			return bad("R6", 2, "a child's biometrics never reach a law-enforcement, border-management or prosecution recipient", "")
		}
	}
	if c, ok := a.when[path]; ok {
		v, _ := lookup(in.Message, c.path)
		if s, _ := v.(string); !c.in[s] {
			return bad("R10", 2, "passes only when "+c.path+" is one of the listed values", "")
		}
	}
	if f.isResponse {
		if asks, ok := o.r.answers[m]; ok && sec == "record" {
			asked := in.Request != nil && slices.ContainsFunc(asks, func(a string) bool { return slices.Contains(in.Request.RequestedAssertions, a) })
			if !asked {
				return bad("R15", 2, "answers an assertion the request did not ask", "")
			}
		}
	}
	if sec == "subject" {
		if members, ok := structured[m]; ok && len(comps) > 2 {
			if !members[comps[2]] {
				return bad("R10", 3, "only the members of DOMAIN.md §4 pass inside subject."+m, "")
			}
			if len(comps) > 3 {
				return bad("R10", 4, "content nested inside a member of subject."+m, StrictShape)
			}
		}
	}
	if valueFields[path] && len(comps) > 2 {
		return bad("R10", 3, "content nested inside a field that holds a value", StrictShape)
	}
	return Violation{}, 0, false
}

// joinPath is a DOMAIN field path: member names joined by dots.
func joinPath(comps []string) string { return strings.Join(comps, ".") }

// parseTime reads an RFC 3339 time (consent obtained_at, expires_at).
func parseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339, s) }
