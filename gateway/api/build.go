package api

import (
	"runtime"
	"runtime/debug"
)

// Build describes the running binary, from the module and VCS information
// the Go toolchain embeds (debug.ReadBuildInfo).
type Build struct {
	Version   string `json:"version"`            // module version; "(devel)" for a local build
	Revision  string `json:"revision,omitempty"` // VCS commit
	Time      string `json:"time,omitempty"`     // commit time
	Modified  bool   `json:"modified,omitempty"` // built from a work tree with changes
	GoVersion string `json:"go_version"`         // toolchain
}

// ReadBuild reads the binary's build information.
func ReadBuild() Build {
	b := Build{Version: "unknown", GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if info.Main.Version != "" {
		b.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}
