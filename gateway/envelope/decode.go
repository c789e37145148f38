package envelope

import (
	"encoding/json"
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// Details of the malformed_envelope errors DecodeStrict returns.
const (
	detailJSON         = "json"
	detailDuplicateKey = "duplicate_key"
	detailDepth        = "depth"
	detailTrailing     = "trailing_data"
)

var (
	errSyntax       = errors.New("envelope: json: syntax error")
	errBadUTF8      = errors.New("envelope: json: invalid UTF-8")
	errBadEscape    = errors.New("envelope: json: invalid escape or lone surrogate")
	errDuplicateKey = errors.New("envelope: json: duplicate object key")
	errTooDeep      = errors.New("envelope: json: nesting too deep")
	errTrailing     = errors.New("envelope: json: data after the top-level value")
)

// DecodeStrict decodes one RFC 8259 JSON value, as encoding/json would into
// an any with UseNumber (objects are map[string]any, arrays []any, numbers
// json.Number), but refuses what encoding/json lets through: duplicate object
// keys (compared after unescaping), nesting deeper than maxDepth (the
// top-level object or array is depth 1; maxDepth ≤ 0 means 32), data after
// the value, invalid UTF-8, and lone UTF-16 surrogates in escapes. Errors are
// *Error with code malformed_envelope; they never quote the input.
func DecodeStrict(data []byte, maxDepth int) (any, error) {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	d := strictDecoder{data: data, maxDepth: maxDepth}
	d.skipSpace()
	v, err := d.value()
	if err != nil {
		return nil, d.fail(err)
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, d.fail(errTrailing)
	}
	return v, nil
}

type strictDecoder struct {
	data     []byte
	pos      int
	depth    int
	maxDepth int
}

type offsetError struct {
	err    error
	offset int
}

func (e *offsetError) Error() string {
	return e.err.Error() + " at offset " + itoa(e.offset)
}

func (e *offsetError) Unwrap() error { return e.err }

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

func (d *strictDecoder) fail(err error) *Error {
	detail := detailJSON
	switch err {
	case errDuplicateKey:
		detail = detailDuplicateKey
	case errTooDeep:
		detail = detailDepth
	case errTrailing:
		detail = detailTrailing
	}
	return newError(CodeMalformedEnvelope, detail, &offsetError{err: err, offset: d.pos})
}

func (d *strictDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *strictDecoder) value() (any, error) {
	if d.pos >= len(d.data) {
		return nil, errSyntax
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return d.str()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	default:
		return nil, errSyntax
	}
}

func (d *strictDecoder) literal(lit string) error {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return errSyntax
	}
	d.pos += len(lit)
	return nil
}

func (d *strictDecoder) enter() error {
	d.depth++
	if d.depth > d.maxDepth {
		return errTooDeep
	}
	return nil
}

func (d *strictDecoder) object() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '{'
	m := make(map[string]any)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		d.depth--
		return m, nil
	}
	for {
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, errSyntax
		}
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, errDuplicateKey
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, errSyntax
		}
		d.pos++
		d.skipSpace()
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		m[k] = v
		done, err := d.next('}')
		if err != nil {
			return nil, err
		}
		if done {
			return m, nil
		}
	}
}

func (d *strictDecoder) array() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '['
	a := make([]any, 0, 4)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		d.depth--
		return a, nil
	}
	for {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		done, err := d.next(']')
		if err != nil {
			return nil, err
		}
		if done {
			return a, nil
		}
	}
}

// next reads what follows a member or an element: ',' (more follow) or
// the closing byte (done).
func (d *strictDecoder) next(closing byte) (done bool, err error) {
	d.skipSpace()
	if d.pos >= len(d.data) {
		return false, errSyntax
	}
	switch d.data[d.pos] {
	case ',':
		d.pos++
		d.skipSpace()
		return false, nil
	case closing:
		d.pos++
		d.depth--
		return true, nil
	}
	return false, errSyntax
}

// str decodes a string starting at the opening quote.
func (d *strictDecoder) str() (string, error) {
	d.pos++ // '"'
	start := d.pos
	ascii := true
	// Fast path: no escapes.
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			s := d.data[start:d.pos]
			if !ascii && !utf8.Valid(s) {
				return "", errBadUTF8
			}
			d.pos++
			return string(s), nil
		case c == '\\':
			return d.strSlow(start)
		case c < 0x20:
			return "", errSyntax
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.pos++
	}
	return "", errSyntax
}

func (d *strictDecoder) strSlow(start int) (string, error) {
	buf := make([]byte, 0, d.pos-start+16)
	buf = append(buf, d.data[start:d.pos]...)
	if !utf8.Valid(buf) {
		return "", errBadUTF8
	}
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return string(buf), nil
		case c < 0x20:
			return "", errSyntax
		case c == '\\':
			if d.pos+1 >= len(d.data) {
				return "", errSyntax
			}
			e := d.data[d.pos+1]
			d.pos += 2
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := d.hex4()
				if !ok {
					return "", errBadEscape
				}
				if utf16.IsSurrogate(r) {
					if r >= 0xDC00 || d.pos+1 >= len(d.data) || d.data[d.pos] != '\\' || d.data[d.pos+1] != 'u' {
						return "", errBadEscape
					}
					d.pos += 2
					r2, ok := d.hex4()
					if !ok {
						return "", errBadEscape
					}
					r = utf16.DecodeRune(r, r2)
					if r == utf8.RuneError {
						return "", errBadEscape
					}
				}
				buf = utf8.AppendRune(buf, r)
			default:
				return "", errBadEscape
			}
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			d.pos++
		default:
			r, size := utf8.DecodeRune(d.data[d.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", errBadUTF8
			}
			buf = append(buf, d.data[d.pos:d.pos+size]...)
			d.pos += size
		}
	}
	return "", errSyntax
}

func (d *strictDecoder) hex4() (rune, bool) {
	if len(d.data)-d.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range d.data[d.pos : d.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	d.pos += 4
	return r, true
}

func (d *strictDecoder) digits() int {
	n := 0
	for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
		d.pos++
		n++
	}
	return n
}

// number checks the RFC 8259 number grammar and keeps the text.
func (d *strictDecoder) number() (any, error) {
	start := d.pos
	if d.data[d.pos] == '-' {
		d.pos++
	}
	if d.pos >= len(d.data) {
		return nil, errSyntax
	}
	if d.data[d.pos] == '0' {
		d.pos++
	} else if d.digits() == 0 {
		return nil, errSyntax
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if d.digits() == 0 {
			return nil, errSyntax
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if d.digits() == 0 {
			return nil, errSyntax
		}
	}
	return json.Number(d.data[start:d.pos]), nil
}
