package main

import "runtime/debug"

// version is set by make build with -ldflags "-X main.version=…"; a plain
// go build or go install leaves it "dev", and versionString then asks the
// build information instead.
var version = "dev"

// versionString is what dnsedge version prints after "dnsedge": the
// version set at link time; else the module version of a go install
// name@version; else the VCS commit go build stamped (12 hex digits, with
// "+dirty" for uncommitted changes, and the commit time); else "dev".
func versionString() string {
	if version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) string {
	var rev, at string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		// go install name@version: no VCS stamp, a real module version.
		// (go build in a checkout stamps a pseudo-version from the
		// commit as well; the commit itself says it plainer.)
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		return "dev"
	}
	out := rev[:min(12, len(rev))]
	if dirty {
		out += "+dirty"
	}
	if at != "" {
		out += " (" + at + ")"
	}
	return out
}
