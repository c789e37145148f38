package synth

import (
	"slices"
	"strconv"
	"time"

	"github.com/xborder/xborder/gateway/policy"
)

var (
	legalBases    = []string{"agreement on file", "agreement KZ-UN-PRR-2019", "Law on Civil Registration, art. 12", "UNSCR 2396 (2017)", "mandate"}
	surnames      = []string{"ABENOVA", "SARINA", "KARIMOV", "ALIYEVA", "RAHIMOV", "NURLANOVA", "HASSAN", "TOKTAROV"}
	givenNames    = []string{"AIGERIM", "AIDA", "TIMUR", "MADINA", "YUSUF", "DANIYAR", "ZARINA"}
	scripts       = []string{"Абенова Айгерим", "Каримов Тимур", "حسن يوسف", "Рахимов Даниёр"}
	countries     = []string{"SYR", "IRQ", "KAZ", "UZB", "TJK", "TUR"}
	localities    = []string{"Raqqa", "al-Hol", "Almaty", "Mosul", "Tashkent", "Dushanbe"}
	facilities    = []string{"camp", "detention", "reception-centre", "foster-family"}
	nationalities = []string{"KAZ", "UZB", "TJK", "IRQ", "XXA", "XXX"}
	docCodes      = []string{"P", "ID", "BC"}
	relations     = []string{"mother", "father", "sibling", "grandmother", "uncle"}
	modalities    = []string{"face", "fingerprint", "iris"}
	needsCodes    = []string{"psychosocial-support", "schooling", "vocational-training", "medical-care", "documentation", "family-reunification"}
	priorities    = []string{"low", "medium", "high", "urgent"}
	notesText     = []string{"returned 2019, lives with grandmother", "awaiting documents", "case 2026/114", "follow-up in three months", ""}
	serviceTypes  = []string{"mhpss", "health", "education", "legal_aid", "alternative_care", "tracing", "livelihood", "prosecution", "monitoring", "travel"}
	statuses      = []string{"accepted", "rejected", "done"}
	deciders      = []string{"registrar", "civil-registry officer", "consular officer", "border officer"}
	bases         = []string{"document", "declared", "assessed"}
	relationsRep  = []string{"mother", "grandmother", "guardian", "aunt"}
)

func (b *builder) build() {
	g := b.g
	frac := ""
	if g.chance(0.25) {
		frac = g.pick([]string{".25", ".5", ".125", ".999"})
	}
	life := int64(60 + g.r.IntN(3541)) // exp - iat ≤ 3600 (PROTOCOL.md §2)
	b.msg = map[string]any{
		"id":          g.uuid(),
		"type":        b.typ,
		"from":        b.sender.ID,
		"to":          b.recipient.ID,
		"purpose":     b.purpose,
		"legal_basis": g.pick(legalBases),
		"iat":         numericDate(g.nowUnix, frac),
		"exp":         numericDate(g.nowUnix+life, frac),
	}
	if g.spec.IsResponse(b.typ) {
		b.makeRequest()
	}
	b.makeSubject()
	b.makeRecord()
	b.makeConsent()
	if b.subject != nil {
		b.msg["subject"] = b.subject
	}
	if b.record != nil {
		b.msg["record"] = b.record
	}
	if b.consent != nil {
		b.msg["consent"] = b.consent
	}
}

func (b *builder) ref() string { return "S-" + strconv.Itoa(1000+b.g.r.IntN(9000)) }

// makeRequest sets the accepted request a response answers (R15), right
// or wrong in one way.
func (b *builder) makeRequest() {
	g := b.g
	req := &policy.Request{
		ID: g.uuid(), Type: g.spec.Responses[b.typ],
		From: b.recipient.ID, To: b.sender.ID, Purpose: b.purpose,
	}
	if req.Type == "identity.verification.request" {
		req.RequestedAssertions = b.assertions()
	}
	inReplyTo := req.ID
	switch r := g.r.Float64(); {
	case r < 0.70:
		b.other("resp:match")
	case r < 0.76:
		req = nil
		b.other("resp:no-request")
	case r < 0.81:
		req.From, req.To = b.sender.ID, b.recipient.ID
		b.other("resp:same-direction")
	case r < 0.86:
		req.Purpose = g.pick(slices.DeleteFunc(slices.Clone(g.purposes), func(p string) bool { return p == b.purpose }))
		b.other("resp:other-purpose")
	case r < 0.91:
		inReplyTo = g.uuid()
		b.other("resp:other-id")
	case r < 0.95:
		inReplyTo = ""
		b.other("resp:no-in-reply-to")
	default:
		req.Type = g.pick(slices.DeleteFunc(slices.Clone(g.allTypes), func(t string) bool { return t == req.Type }))
		b.other("resp:other-type")
	}
	b.req = req
	if inReplyTo != "" {
		b.msg["in_reply_to"] = inReplyTo
	}
}

// assertions is a non-empty subset of the assertions a verification asks.
func (b *builder) assertions() []string {
	all := b.g.spec.Assertions
	var out []string
	for len(out) == 0 {
		out = out[:0]
		for _, a := range all {
			if b.g.chance(0.5) {
				out = append(out, a)
			}
		}
	}
	return out
}

func strings2any(s []string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}

// makeSubject writes the §4 subject: the fields the allow-list names, most
// of the time, and others now and then, so that R10 has work to do.
// Each step draws from the generator in turn, so their order is part of
// what a seed means: moving one changes every case that follows.
func (b *builder) makeSubject() {
	if b.shortSubject() {
		return
	}
	in := b.fieldChance(b.allow().Subject)
	s := make(map[string]any, 12)
	s["ref"] = b.ref()
	b.subjectNames(s, in)
	b.subjectAge(s)
	b.subjectOrigin(s, in)
	b.subjectDocuments(s, in)
	b.subjectTies(s, in)
	b.subjectBiometrics(s)
	b.subject = s
}

// shortSubject leaves out the subject, or writes its ref alone, as a
// consent.withdrawal or a response often does; it says whether it did.
// A response names the person by ref only (R11), so its age is unknown.
func (b *builder) shortSubject() bool {
	g := b.g
	switch {
	case b.typ == "consent.withdrawal":
		switch r := g.r.Float64(); {
		case r < 0.3:
			b.tags.Age = "no-subject"
			return true
		case r < 0.7:
			b.subject = map[string]any{"ref": b.ref()}
			b.tags.Age = "ref-only"
			return true
		}
	case g.spec.IsResponse(b.typ) && g.chance(0.5):
		b.subject = map[string]any{"ref": b.ref()}
		b.tags.Age = "ref-only"
		return true
	}
	return false
}

// fieldChance returns the draw that decides whether a field is written: a
// field on the allow-list most of the time, any other with chance pNot.
func (b *builder) fieldChance(listed []string) func(field string, pNot float64) bool {
	g := b.g
	return func(field string, pNot float64) bool {
		if slices.Contains(listed, field) {
			return g.chance(0.85)
		}
		return g.chance(pNot)
	}
}

func (b *builder) subjectNames(s map[string]any, in func(string, float64) bool) {
	g := b.g
	if in("names", 0.3) {
		n := map[string]any{"primary": g.pick(surnames), "secondary": g.pick(givenNames)}
		if g.chance(0.3) {
			n["original_script"] = g.pick(scripts)
		}
		s["names"] = n
	}
}

// subjectAge writes the age case chosen for the message, and most of the
// time the basis of its birth date ("unknown" when there is none).
func (b *builder) subjectAge(s map[string]any) {
	g := b.g
	if b.age.hasBirth {
		s["birth_date"] = b.age.birth
	}
	if b.age.hasEst {
		s["age_estimate"] = b.age.est
	}
	switch {
	case b.age.hasBirth && g.chance(0.8):
		s["birth_date_basis"] = g.pick(bases)
	case !b.age.hasBirth && g.chance(0.6):
		s["birth_date_basis"] = "unknown"
	}
}

// subjectOrigin writes sex, place of birth and the nationality claimed.
func (b *builder) subjectOrigin(s map[string]any, in func(string, float64) bool) {
	g := b.g
	if in("sex", 0.3) {
		s["sex"] = g.pick([]string{"F", "M", "X"})
	}
	if in("place_of_birth", 0.25) {
		s["place_of_birth"] = map[string]any{"country": g.pick(countries), "locality": g.pick(localities)}
	}
	if in("nationality_claimed", 0.3) {
		s["nationality_claimed"] = g.pick(nationalities)
	}
}

// subjectDocuments writes one or two identity documents.
func (b *builder) subjectDocuments(s map[string]any, in func(string, float64) bool) {
	g := b.g
	if in("documents", 0.3) {
		docs := make([]any, 1+g.r.IntN(2))
		for i := range docs {
			docs[i] = map[string]any{
				"code": g.pick(docCodes), "issuing_state": g.pick(nationalities[:4]),
				"number": "N" + strconv.Itoa(1000000+g.r.IntN(9000000)),
				"expiry": ymd(b.g.today.AddDate(g.r.IntN(8)-2, g.r.IntN(12), 0)),
			}
		}
		s["documents"] = docs
	}
}

// subjectTies writes the subject's relatives and where the subject is now.
func (b *builder) subjectTies(s map[string]any, in func(string, float64) bool) {
	g := b.g
	if in("relationships", 0.3) {
		rels := make([]any, 1+g.r.IntN(2))
		for i := range rels {
			rels[i] = map[string]any{"relation": g.pick(relations), "ref": b.ref()}
		}
		s["relationships"] = rels
	}
	if in("location", 0.35) {
		s["location"] = map[string]any{"country": g.pick(countries), "facility_type": g.pick(facilities)}
	}
}

// subjectBiometrics writes biometrics now and then, more often on an
// identity verification request, whatever the allow-list says: R12 lets
// them through only 1:1 with a DPIA, so some go 1:N or without a dpia_id.
func (b *builder) subjectBiometrics(s map[string]any) {
	g := b.g
	pBio := 0.15
	if b.typ == "identity.verification.request" {
		pBio = 0.6
	}
	if !g.chance(pBio) {
		return
	}
	bio := map[string]any{"modality": g.pick(modalities), "template_ref": "tpl-" + strconv.Itoa(g.r.IntN(1000))}
	mode := "1:1"
	if g.chance(0.3) {
		mode = "1:N"
	}
	bio["mode"] = mode
	dpia := "dpia"
	switch r := g.r.Float64(); {
	case r < 0.75:
		bio["dpia_id"] = "DPIA-2026-" + strconv.Itoa(10+g.r.IntN(90))
	case r < 0.85:
		bio["dpia_id"] = ""
		dpia = "empty-dpia"
	default:
		dpia = "no-dpia"
	}
	s["biometrics"] = bio
	b.other("bio:" + mode + "/" + dpia)
}

func (b *builder) makeRecord() {
	g := b.g
	switch b.typ {
	case "identity.verification.request":
		b.record = map[string]any{"requested_assertions": strings2any(b.assertions())}
	case "identity.verification.response":
		b.verificationAnswer()
	case "referral", "case.transfer":
		b.referralRecord()
	case "referral.response":
		b.record = map[string]any{"status": g.pick(statuses)}
		if g.chance(0.6) {
			b.record["notes"] = g.pick(notesText)
		}
		if g.chance(0.15) { // an answer that tries to carry protection data
			sec := g.pick(b.recordSections())
			b.record[sec] = section(g, sec)
			b.other("resp:extra-section")
		}
	case "consent.withdrawal":
		if g.chance(0.5) {
			b.record = map[string]any{"notes": g.pick(notesText), "service_type": g.pick(serviceTypes)}
		}
	}
}

// verificationAnswer writes an identity.verification.response record: the
// outcome, who decided, and the assertions asked (R11, R15), and now and
// then an assertion nobody asked or the registry record itself.
func (b *builder) verificationAnswer() {
	g := b.g
	rec := map[string]any{"outcome": g.pick(g.spec.Outcomes), "decided_by": g.pick(deciders)}
	var asked []string
	if b.req != nil {
		asked = b.req.RequestedAssertions
	} else {
		asked = b.assertions()
	}
	answer := func(a string) {
		for _, f := range g.spec.Answers[a] {
			if f == "fields_confirmed" {
				rec[f] = []any{"names", "birth_date"}
			} else {
				rec[f] = g.chance(0.7)
			}
		}
	}
	var unasked []string
	for _, a := range g.spec.Assertions {
		if slices.Contains(asked, a) {
			answer(a)
		} else {
			unasked = append(unasked, a)
		}
	}
	if len(unasked) > 0 && g.chance(0.3) {
		answer(g.pick(unasked))
		b.other("resp:unasked-assertion")
	}
	if g.chance(0.3) {
		rec["registry_record"] = map[string]any{"address": "Almaty, Abai 10", "father": g.pick(givenNames)}
		b.other("resp:registry-record")
	}
	b.record = rec
}

// recordSections lists the record's L3 and L4 sections (DOMAIN.md §3).
func (b *builder) recordSections() []string { return b.g.recordSecs }

// section writes the free content of a record section.
func section(g *Generator, name string) map[string]any {
	switch name {
	case "psychosocial":
		return map[string]any{"assessment": "trauma symptoms, sleep problems"}
	case "gbv":
		return map[string]any{"disclosed": true, "notes": "disclosure recorded by caseworker"}
	case "trafficking":
		return map[string]any{"indicators": []any{"debt bondage", "document withheld"}}
	case "best_interests":
		return map[string]any{"determination": "kinship care", "bia_ref": "BIA-2026-0" + strconv.Itoa(g.r.IntN(100))}
	case "child_statement":
		return map[string]any{"text": "I want to go to school", "recorded": "2026-05-02"}
	case "health":
		return map[string]any{"conditions": []any{"malnutrition (resolved)"}}
	case "legal_status":
		return map[string]any{"status": g.pick([]string{"no charges", "under investigation", "convicted"})}
	case "allegations":
		return map[string]any{"summary": "membership of a listed group"}
	}
	return map[string]any{"summary": "section content"}
}

// referralRecord writes a referral: service, priority, needs, notes and the
// L3/L4 sections; offence_date for prosecution evidence (R7).
func (b *builder) referralRecord() {
	g := b.g
	rec := make(map[string]any, 12)
	service := g.pick(serviceTypes)
	switch {
	case b.purpose == "prosecution-evidence" && g.chance(0.7):
		service = "prosecution"
	case g.chance(0.3):
		service = "legal_aid"
	}
	if g.chance(0.95) {
		rec["service_type"] = service
		if service == "legal_aid" {
			b.other("service:legal_aid")
		} else {
			b.other("service:other")
		}
	} else {
		b.other("service:none")
	}
	if g.chance(0.85) {
		rec["priority"] = g.pick(priorities)
	}
	if g.chance(0.8) {
		rec["needs"] = []any{g.pick(needsCodes), g.pick(needsCodes)}
	}
	if g.chance(0.8) {
		rec["notes"] = g.pick(notesText)
	}
	p := 0.35
	if b.purpose == "rehabilitation-referral" {
		p = 0.5
	}
	for _, sec := range b.recordSections() {
		if g.chance(p) {
			rec[sec] = section(g, sec)
		}
	}
	if b.purpose == "prosecution-evidence" {
		b.offenceDate(rec)
	}
	b.record = rec
}

// criminalAge is the minimum age of criminal responsibility of the sender's
// country (R7).
func (b *builder) criminalAge() int {
	t := b.g.spec.Thresholds
	if a, ok := t.CriminalByCountry[b.sender.Country]; ok {
		return a
	}
	return t.CriminalResponsibility
}

// offenceDate writes record.offence_date around the minimum age of criminal
// responsibility (R7), a bad one, or none (then the age at Now counts).
func (b *builder) offenceDate(rec map[string]any) {
	g := b.g
	switch r := g.r.Float64(); {
	case r < 0.65:
		years := b.age.years
		if years < 0 {
			years = 20
		}
		macr := b.criminalAge()
		at := g.pick([]string{"under", "under", "at", "over"})
		a := map[string]int{"under": macr - 1, "at": macr, "over": macr + 2}[at]
		back := max(years-a, 0)
		d := g.today.AddDate(-back, 0, -g.r.IntN(120))
		rec["offence_date"] = ymd(d)
		b.other("offence:" + at + "-macr")
	case r < 0.75:
		rec["offence_date"] = g.pick([]string{"2016-3-1", "2016-03", "unknown"})
		b.other("offence:bad")
	default:
		b.other("offence:none")
	}
}

// ConsentCases lists the consent cases a generator makes: who gave it and
// the child's assent (R5), best-interests overrides (R9), none, and the
// withdrawal message (R16); then the modifiers of scope and expiry (R9) and
// a withdrawn consent (R16).
func ConsentCases() []string {
	out := []string{"none", "withdrawal-message"}
	out = append(out, consentPrimaries...)
	return append(out, "scope:ok", "scope:no-recipient", "scope:no-purpose",
		"expiry:unexpired", "expiry:expired", "expiry:at-now", "expiry:missing", "withdrawn")
}

var consentPrimaries = []string{
	"given:subject/assent:n/a", "given:subject/assent:yes", "given:subject/assent:no", "given:subject/assent:missing",
	"given:representative/assent:yes", "given:representative/assent:no", "given:representative/assent:n/a", "given:representative/assent:missing",
	"given:missing/assent:missing", "given:other/assent:yes", "basis:missing",
	"override:ok", "override:no-bia", "override:empty-bia", "override:role-other", "override:role-missing", "override:no-object",
}

// fittingConsent is who gives consent at the case's age under R5: a
// representative under 13 (with the assent of a child of 6 to 14), either
// at 13 and 14, the subject from 15; with an unknown age a representative
// and the child's assent (DOMAIN.md §8).
func (b *builder) fittingConsent() string {
	t := b.g.spec.Thresholds
	y := b.age.years
	switch {
	case y < 0:
		return "given:representative/assent:yes"
	case y < t.ChildAssentFrom:
		return b.g.pick([]string{"given:representative/assent:n/a", "given:representative/assent:no"})
	case y < t.RepresentativeOnlyUnder:
		return "given:representative/assent:yes"
	case y < t.ChildOnlyFrom:
		return b.g.pick([]string{"given:representative/assent:yes", "given:subject/assent:n/a"})
	}
	return "given:subject/assent:n/a"
}

// makeConsent writes the §5 consent: on a referral that needs one most of
// the time, rarely elsewhere. A fitting consent is the common case; the
// rest are wrong in one way each (R5, R9), so every denial has its cases.
// The steps draw from the generator in turn, so their order is part of
// what a seed means.
func (b *builder) makeConsent() {
	g := b.g
	id := "C-2026-" + strconv.Itoa(100+g.r.IntN(900))
	switch {
	case b.typ == "consent.withdrawal":
		b.withdrawalConsent(id)
		return
	case b.typ == "referral" && b.p.ConsentRequired && g.chance(0.93),
		b.typ == "referral" && g.chance(0.1), g.chance(0.03):
	default:
		b.noConsent()
		return
	}
	fit := g.chance(0.7)
	primary := b.primaryConsent(fit)
	c := b.consentGiven(id, primary)
	mods := []string{primary}
	mods = append(mods, b.consentScope(c, fit))
	c["obtained_at"] = g.now.AddDate(0, 0, -1-g.r.IntN(300)).Format(time.RFC3339)
	mods = append(mods, b.consentExpiry(c, fit))
	if g.chance(0.06) {
		b.withdrawn = true
		mods = append(mods, "withdrawn")
	}
	b.consent = c
	b.tags.Consent = mods
}

// withdrawalConsent is the consent of a consent.withdrawal message: its id,
// now and then with members PROTOCOL.md §5.1 does not let through.
func (b *builder) withdrawalConsent(id string) {
	g := b.g
	b.consent = map[string]any{"id": id}
	b.tags.Consent = []string{"withdrawal-message"}
	if g.chance(0.2) {
		b.consent["recipients"] = []any{b.recipient.ID, "UN-IOM"}
		b.consent["given_by"] = "representative"
		b.other("withdrawal:extra-members")
	}
	if g.chance(0.1) {
		b.withdrawn = true
		b.tags.Consent = append(b.tags.Consent, "withdrawn")
	}
}

// noConsent leaves the consent out. The gateway may still say a consent
// was withdrawn, since it knows the subject and not the message (R16).
func (b *builder) noConsent() {
	b.tags.Consent = []string{"none"}
	if b.g.chance(0.02) { // the gateway says so even without a consent here
		b.withdrawn = true
		b.tags.Consent = append(b.tags.Consent, "withdrawn")
	}
}

// primaryConsent chooses the consent case: when it should fit, a
// best-interests override now and then, else who R5 asks at the case's
// age; otherwise any case, whether it fits or not.
func (b *builder) primaryConsent(fit bool) string {
	g := b.g
	switch {
	case fit && g.chance(0.1):
		return "override:ok"
	case fit:
		return b.fittingConsent()
	default:
		return g.pick(consentPrimaries)
	}
}

// consentGiven writes the consent's id, basis and who gave it as the
// primary case says: a best-interests override with its override object,
// or a consent with given_by and the child's assent.
func (b *builder) consentGiven(id, primary string) map[string]any {
	g := b.g
	c := map[string]any{"id": id, "basis": "consent"}
	switch primary {
	case "basis:missing":
		delete(c, "basis")
		c["given_by"] = "subject"
	case "override:ok", "override:no-bia", "override:empty-bia", "override:role-other", "override:role-missing", "override:no-object":
		c["basis"] = "best_interests_override"
		o := map[string]any{"approved_by_role": "child-protection", "reason": "no reachable caregiver", "bia_ref": "BIA-2026-031"}
		switch primary {
		case "override:no-bia":
			delete(o, "bia_ref")
		case "override:empty-bia":
			o["bia_ref"] = ""
		case "override:role-other":
			o["approved_by_role"] = g.pick([]string{"social-services", "consular", "Child-Protection", "humanitarian"})
		case "override:role-missing":
			delete(o, "approved_by_role")
		}
		if primary != "override:no-object" {
			c["override"] = o
		}
	default:
		given, assent := splitConsent(primary)
		switch given {
		case "other":
			c["given_by"] = "caseworker"
		case "missing":
		default:
			c["given_by"] = given
		}
		if given == "representative" {
			c["representative_relation"] = g.pick(relationsRep)
		}
		if assent != "missing" {
			c["child_assent"] = assent
		}
	}
	return c
}

// consentScope writes the recipients and purposes the consent names and
// returns the scope case: right most of the time when the consent should
// fit, else leaving out the recipient or the purpose half of the time (R9).
func (b *builder) consentScope(c map[string]any, fit bool) string {
	g := b.g
	scope := "scope:ok"
	if r := g.r.Float64(); (fit && r < 0.15) || (!fit && r < 0.5) {
		scope = g.pick([]string{"scope:no-recipient", "scope:no-purpose"})
	}
	recipients := []any{b.recipient.ID}
	purposes := []any{b.purpose}
	switch scope {
	case "scope:no-recipient":
		recipients = []any{g.pick([]string{"UN-IOM", "KZ-GP", "UN-OHCHR"})}
		if recipients[0] == b.recipient.ID {
			recipients[0] = "XX-NOBODY"
		}
	case "scope:no-purpose":
		other := g.pick(g.consentP)
		if other == b.purpose {
			other = "repatriation-logistics"
		}
		purposes = []any{other}
	}
	if g.chance(0.3) {
		recipients = append(recipients, "UN-IOM")
	}
	c["recipients"] = recipients
	c["purposes"] = purposes
	return scope
}

// consentExpiry writes when the consent expires and returns the expiry
// case: unexpired most of the time when the consent should fit, else
// expired, expiring at the decision time, or without an expires_at (R9).
func (b *builder) consentExpiry(c map[string]any, fit bool) string {
	g := b.g
	expiry := "expiry:unexpired"
	if r := g.r.Float64(); (fit && r < 0.15) || (!fit && r < 0.5) {
		expiry = g.pick([]string{"expiry:expired", "expiry:at-now", "expiry:missing"})
	}
	switch expiry {
	case "expiry:unexpired":
		c["expires_at"] = g.now.Add(time.Duration(1+g.r.IntN(400*24)) * time.Hour).Format(time.RFC3339)
	case "expiry:expired":
		c["expires_at"] = g.now.Add(-time.Duration(1+g.r.IntN(60*24)) * time.Hour).Format(time.RFC3339)
	case "expiry:at-now":
		c["expires_at"] = g.nowStr
	}
	return expiry
}

func splitConsent(primary string) (given, assent string) {
	// "given:X/assent:Y"
	const gp, ap = "given:", "/assent:"
	rest := primary[len(gp):]
	for i := 0; i+len(ap) <= len(rest); i++ {
		if rest[i:i+len(ap)] == ap {
			return rest[:i], rest[i+len(ap):]
		}
	}
	return rest, "missing"
}
