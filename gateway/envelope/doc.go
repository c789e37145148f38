// Package envelope is the only importer of go-jose: it seals messages
// (Sign, Encrypt, Seal: a compact JWS inside a compact JWE) and opens them
// (Decrypt, Verify, ParseMessage, and Opener.Open for the whole road of
// PROTOCOL.md §3), with the JOSE profile of the protocol enforced by
// allow-lists and by its own strict reading of the protected headers.
//
// Every failure to open is an *Error whose Code is one of the stable codes
// of PROTOCOL.md §3.2 and whose Detail names a header or field, never a
// value: errors are safe to log and to return to a client.
package envelope
