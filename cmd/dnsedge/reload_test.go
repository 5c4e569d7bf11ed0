package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

func TestParseShare(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		err  bool
	}{
		{"5%", 0.05, false}, {"0.05", 0.05, false}, {"100%", 1, false}, {"1", 1, false}, {" 2.5 %", 0.025, false},
		{"5", 0, true}, {"0", 0, true}, {"NaN", 0, true}, {"NaN%", 0, true}, {"-1%", 0, true}, {"half", 0, true}, {"", 0, true},
	}
	for _, tt := range tests {
		got, err := parseShare(tt.in)
		if (err != nil) != tt.err || (!tt.err && (got < tt.want-1e-12 || got > tt.want+1e-12)) {
			t.Errorf("parseShare(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// TestReloadCommand drives a running dnsedge through dnsedge reload: a
// canary from the file it runs with, its status, abort, a plain reload,
// and the refusals: no token, a wrong one, a grant that may not operate.
func TestReloadCommand(t *testing.T) {
	up := transporttest.StartFault(t, zone)
	admin := freeAddr(t)
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	path := writeFile(t, "dnsedge.yaml", serveConfig(up.AddrV4().String())+fmt.Sprintf(`admin:
  address: %q
  tokens:
    - {id: ops, access: admin, zones: ["*"], sha256: %s}
    - {id: ci, access: write, zones: ["*"], sha256: %s}
`, admin, sum("ops-token"), sum("ci-token")))
	p := startServe(t, path)
	run := func(env []string, args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(dnsedgeBin, append([]string{"reload", "-admin", "http://" + admin}, args...)...)
		cmd.Env = append(env, "PATH=/usr/bin:/bin")
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out)
	}
	ops := []string{"DNSEDGE_ADMIN_TOKEN=ops-token"}
	if code, out := run(nil, "-status"); code != 2 || !strings.Contains(out, "no token") {
		t.Fatalf("without a token: %d %s", code, out)
	}
	if code, out := run(nil, "-token", "nope", "-status"); code != 1 || !strings.Contains(out, "401") {
		t.Fatalf("wrong token: %d %s", code, out)
	}
	if code, out := run([]string{"DNSEDGE_ADMIN_TOKEN=ci-token"}, "-canary", "5%"); code != 1 || !strings.Contains(out, "403") {
		t.Fatalf("write grant: %d %s", code, out)
	}
	if code, out := run(ops, "-canary", "500%"); code != 2 || !strings.Contains(out, "not a share") {
		t.Fatalf("bad share: %d %s", code, out)
	}
	if code, out := run(ops, "-canary", "50%", "-manual"); code != 0 || !strings.Contains(out, `"state": "running"`) || !strings.Contains(out, `"share": 0.5`) {
		t.Fatalf("canary: %d %s", code, out)
	}
	if code, out := run(ops, "-status"); code != 0 || !strings.Contains(out, `"canary": {`) || !strings.Contains(out, `"rollback": {`) {
		t.Fatalf("status: %d %s", code, out)
	}
	if code, out := run(ops, "-abort"); code != 0 || !strings.Contains(out, `"state": "aborted"`) {
		t.Fatalf("abort: %d %s", code, out)
	}
	if code, out := run(ops, "-abort"); code != 1 || !strings.Contains(out, "no canary") {
		t.Fatalf("abort twice: %d %s", code, out)
	}
	if code, out := run(ops); code != 0 || !strings.Contains(out, "reloaded") {
		t.Fatalf("reload: %d %s", code, out)
	}
	waitFor(t, "reload logged", func() bool { return strings.Contains(p.stderr.String(), "configuration reloaded") })
	if !strings.Contains(p.stderr.String(), `"action":"canary.start"`) {
		t.Fatalf("no audit log line for the canary:\n%s", p.stderr.String())
	}
}

// FuzzParseShare: any input is a share in (0, 1] or an error.
func FuzzParseShare(f *testing.F) {
	for _, s := range []string{"5%", "0.05", "1", "100%", "1e-3", "NaN", "+Inf%", "-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseShare(s)
		if err == nil && !(v > 0 && v <= 1) {
			t.Fatalf("parseShare(%q) = %v without an error", s, v)
		}
	})
}
