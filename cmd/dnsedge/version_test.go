package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	vcs := func(rev, modified, at string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev},
			{Key: "vcs.modified", Value: modified}, {Key: "vcs.time", Value: at}}
	}
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"go install name@version", debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{"go build in a clean checkout",
			debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261203190000-4af79dd01234"}, Settings: vcs("4af79dd0123456789abcdef", "false", "2026-12-03T19:00:00Z")},
			"4af79dd01234 (2026-12-03T19:00:00Z)"},
		{"go build with changes",
			debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261203190000-4af79dd01234+dirty"}, Settings: vcs("4af79dd0123456789abcdef", "true", "")},
			"4af79dd01234+dirty"},
		{"go build without a module version", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("4af79dd0123456789abcdef", "false", "")},
			"4af79dd01234"},
		{"no module version, no VCS", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fromBuildInfo(&tt.bi); got != tt.want {
				t.Fatalf("fromBuildInfo = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestVersionNamesTheCommit: a binary from a plain go build names the
// commit it was built from, not "dev". The build runs with go's default
// VCS stamping (-buildvcs=auto), since a machine's go env may turn it off.
func TestVersionNamesTheCommit(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse --show-toplevel: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err == nil && !fi.IsDir() {
		// A linked worktree (git worktree add): go build stamps no
		// revision there (Go 1.26), so the binary says "dev".
		t.Skip("a linked git worktree: go build does not stamp its revision")
	}
	bin := filepath.Join(t.TempDir(), "dnsedge")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=auto")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("dnsedge version: %v\n%s", err, out)
	}
	if want := "dnsedge " + strings.TrimSpace(string(head))[:12]; !strings.HasPrefix(string(out), want) {
		t.Fatalf("dnsedge version printed %q, want it to start with %q", out, want)
	}
}
