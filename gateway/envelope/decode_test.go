package envelope_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/envelope"
)

func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		depth  int
		want   any    // when detail is ""
		detail string // malformed_envelope detail
	}{
		{"object", `{"a":1,"b":[true,false,null],"c":"x"}`, 0,
			map[string]any{"a": json.Number("1"), "b": []any{true, false, nil}, "c": "x"}, ""},
		{"whitespace around", " \t\r\n{}\n ", 0, map[string]any{}, ""},
		{"scalar top level", `"x"`, 0, "x", ""},
		{"numbers kept as text", `[0,-0,1.50,-2e10,3E+2,4e-1]`, 0,
			[]any{json.Number("0"), json.Number("-0"), json.Number("1.50"), json.Number("-2e10"), json.Number("3E+2"), json.Number("4e-1")}, ""},
		{"escapes", `"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"`, 0, "a\"\\/\b\f\n\r\té😀", ""},
		{"raw utf-8", `"Алматы"`, 0, "Алматы", ""},
		{"empty key", `{"":1}`, 0, map[string]any{"": json.Number("1")}, ""},
		{"depth at limit", `[[[]]]`, 3, []any{[]any{[]any{}}}, ""},

		{"empty input", ``, 0, nil, "json"},
		{"only spaces", `   `, 0, nil, "json"},
		{"truncated", `{"a":`, 0, nil, "json"},
		{"single quotes", `{'a':1}`, 0, nil, "json"},
		{"trailing comma", `{"a":1,}`, 0, nil, "json"},
		{"trailing comma array", `[1,]`, 0, nil, "json"},
		{"leading zero", `[01]`, 0, nil, "json"},
		{"plus sign", `[+1]`, 0, nil, "json"},
		{"bare dot", `[1.]`, 0, nil, "json"},
		{"NaN", `[NaN]`, 0, nil, "json"},
		{"bad literal", `[tru]`, 0, nil, "json"},
		{"control char in string", "\"a\x01\"", 0, nil, "json"},
		{"bad escape", `"\x"`, 0, nil, "json"},
		{"short unicode escape", `"\u12"`, 0, nil, "json"},
		{"lone high surrogate", `"\ud83d"`, 0, nil, "json"},
		{"lone low surrogate", `"\ude00"`, 0, nil, "json"},
		{"high surrogate then letter", `"\ud83dx"`, 0, nil, "json"},
		{"invalid utf-8", "\"\xff\"", 0, nil, "json"},
		{"invalid utf-8 after escape", "\"\\n\xc3\"", 0, nil, "json"},
		{"byte order mark", "\ufeff{}", 0, nil, "json"},
		{"comment", `{} // x`, 0, nil, "trailing_data"},
		{"two values", `{}{}`, 0, nil, "trailing_data"},
		{"duplicate key", `{"a":1,"a":1}`, 0, nil, "duplicate_key"},
		{"duplicate key after unescaping", `{"a":1,"\u0061":2}`, 0, nil, "duplicate_key"},
		{"duplicate key nested", `{"a":{"b":1,"b":2}}`, 0, nil, "duplicate_key"},
		{"depth over limit", `[[[[]]]]`, 3, nil, "depth"},
		{"default depth 32", strings.Repeat("[", 32) + strings.Repeat("]", 32), 0, nil, ""},
		{"default depth 33", strings.Repeat("[", 33) + strings.Repeat("]", 33), 0, nil, "depth"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := envelope.DecodeStrict([]byte(tc.in), tc.depth)
			if tc.detail == "" {
				if err != nil {
					t.Fatalf("DecodeStrict: %v", err)
				}
				if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
					t.Errorf("got %#v, want %#v", got, tc.want)
				}
				return
			}
			var e *envelope.Error
			if !asError(err, &e) || e.Code != envelope.CodeMalformedEnvelope || e.Detail != tc.detail {
				t.Fatalf("err = %v, want malformed_envelope (%s)", err, tc.detail)
			}
		})
	}
}

// FuzzDecodeStrict checks DecodeStrict against encoding/json: whatever it
// accepts, encoding/json accepts with the same value.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e3,"x\u00e9"],"b":{"c":null}}`, `"\ud83d\ude00"`, `[{"a":1,"a":2}]`, `-0.0e-0`, `{"":""}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := envelope.DecodeStrict(data, 0)
		if err != nil {
			if envelope.CodeOf(err) != envelope.CodeMalformedEnvelope {
				t.Fatalf("error without code: %v", err)
			}
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var want any
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("DecodeStrict accepted what encoding/json refuses: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("DecodeStrict %#v, encoding/json %#v", got, want)
		}
	})
}
