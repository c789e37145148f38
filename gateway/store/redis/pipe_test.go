package redis

import (
	"bufio"
	"reflect"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	tests := []struct {
		name, in string
		want     any
		bad      bool
	}{
		{"simple string", "+OK\r\n", "OK", false},
		{"error", "-NOSCRIPT No matching script\r\n", replyError("NOSCRIPT No matching script"), false},
		{"integer", ":-42\r\n", int64(-42), false},
		{"bulk", "$5\r\nab\r\nc\r\n", "ab\r\nc", false},
		{"empty bulk", "$0\r\n\r\n", "", false},
		{"nil bulk", "$-1\r\n", nil, false},
		{"nested array", "*3\r\n+ok\r\n*2\r\n:1\r\n$-1\r\n*0\r\n", []any{"ok", []any{int64(1), nil}, []any{}}, false},
		{"error inside an array", "*1\r\n-ERR x\r\n", []any{error(replyError("ERR x"))}, false},
		{"truncated bulk", "$5\r\nab", nil, true},
		{"bad length", "$x\r\n", nil, true},
		{"no CRLF", "+OK\n", nil, true},
		{"unknown type", "!3\r\n", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readReply(bufio.NewReader(strings.NewReader(tc.in)))
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v, want error %v", err, tc.bad)
			}
			if !tc.bad && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}
