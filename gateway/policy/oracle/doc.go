// Package oracle judges what the gateway did with a message: whether it
// had to deny it, and whether what the recipient read holds only what the
// rules let through, unchanged, with every removal listed. It is written
// from DOMAIN.md §3–§8 and PROTOCOL.md §2 and §5.1, and reads the rules'
// data (policies/data.json) for allow-lists, levels, purposes, agreements,
// thresholds and the verification assertions; it never reads the Rego nor
// the gateway's redactor, so that it is an independent judge of both.
//
// Where DOMAIN.md needs reading, the oracle reads it so:
//
//   - R4: the age is in whole years on the UTC day of now; a partial date
//     counts at its latest day, a 29 February birthday on 1 March; only
//     ASCII YYYY-MM-DD, YYYY-MM, YYYY of a day that exists (year 0001 on)
//     is a date; an age_estimate is any JSON number not below zero
//     (fractions, 1.2e1, -0 and 1000000 included); when both are given the
//     date decides. Bad input counts as a child wherever a leaf is judged.
//   - R5: an estimate counts in whole years (12.9 is 12); partial dates at
//     their latest day as for R4; an unknown age asks a representative and
//     child_assent yes (DOMAIN.md §8); given_by other than subject or
//     representative fits no band.
//   - R9: a consent is unexpired while now is before expires_at (RFC 3339);
//     recipients and purposes are JSON arrays that hold the recipient's id
//     and the purpose; an override needs a non-empty bia_ref and
//     approved_by_role equal to the data's approver, and R5 does not apply.
//   - R15: a response needs the accepted request: in_reply_to is its id, its
//     type is the one the data pairs with the response, it went from the
//     response's recipient to its sender, with the same purpose. Answering
//     only what was asked is a matter of content: outcome and decided_by
//     always pass, fields_confirmed answers identity_match,
//     nationality_confirmed and document_valid answer themselves (data:
//     verification); an unasked answer must not reach the requester,
//     whether the gateway removes it or denies.
//   - R16: a referral with consent_withdrawn is denied, whatever its
//     purpose; a consent.withdrawal and a response are not.
//   - R2: a consent.withdrawal is read like a request (sender role, then
//     recipient role); a response reverses the roles.
//   - R3: an agreement is valid from its first to its last day, inclusive,
//     on the UTC day of now.
//   - R7: the country is the sender's; the time of the conduct is
//     offence_date, else now; the age then comes from the birth date, or
//     from the estimate less the years since (of 365.25 days). About a
//     child now, only to a child-justice recipient.
//   - R8 is reported for an L4 section of prosecution-evidence or
//     border-screening although the allow-lists never name one there.
//   - R10: the first member inside subject or record decides; inside a
//     structured subject field only its §4 members pass; an L3 or L4
//     section and health carry free content, so a "psychosocial" nested
//     in record.health passes (no rule can tell). Paths leave array
//     indices out. A consent.withdrawal keeps subject.ref (data) and drops
//     the record (its allow-list is empty).
//   - redacted is exact: every path it lists was in the message and is in
//     no delivered member; every value that is gone is under a path it
//     lists. An empty object or array the sender sent needs no listing; one
//     may be delivered where the sender sent one of the same kind.
//   - The oracle never calls a denial wrong: over-denial leaks nothing.
//
// Readings the text does not settle are strict checks, each named, on by
// default and switched off by Options.Relax (see StrictChecks).
package oracle
