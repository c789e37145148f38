package policy

import (
	"bytes"
	"encoding/json"
	"errors"
)

// ErrNotInput is returned by ParseInput for JSON that is neither a
// decision input nor a scenario file.
var ErrNotInput = errors.New("policy: not a decision input (DOMAIN.md §7) or a scenario file")

// ParseInput reads a decision input (DOMAIN.md §7) or a scenario file
// ({"name", "input", "expect"}), whichever raw is: what `xborder policy
// eval`, POST /v1/policy/evaluate and the console accept alike. Numbers
// keep their JSON text.
func ParseInput(raw []byte) (Input, error) {
	var probe struct {
		Input json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return Input{}, ErrNotInput
	}
	body := raw
	if len(probe.Input) > 0 && !bytes.Equal(bytes.TrimSpace(probe.Input), []byte("null")) {
		body = probe.Input
	}
	var in Input
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil || in.Message == nil {
		return Input{}, ErrNotInput
	}
	return in, nil
}
