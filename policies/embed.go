// Package policies embeds the xborder policy: the Rego modules beside their
// tests, the policy data (data.json) and the acceptance scenarios.
package policies

import (
	"embed"
	"io/fs"
)

//go:embed *.rego data.json scenarios/*/*.json
var files embed.FS

// FS returns the embedded policy directory, rooted at this package's
// directory: "decision.rego", "data.json", "scenarios/s01/s01.json", ...
func FS() fs.FS { return files }

// DirName is the folder's name in the repository and beside a deployed
// gateway (the config's default "policies").
const DirName = "policies"
