package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/dnsedge/dnsedge/internal/consultest"
)

// TestPolicyPush runs `dnsedge policy push` and `policy activate`
// against a real agent: a valid version is written and made active, a
// version that exists is refused (exit 3), an invalid one is refused with
// its file, line and field and writes nothing (exit 1), and activate
// moves active back.
func TestPolicyPush(t *testing.T) {
	a := consultest.Start(t)
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr, Scheme: "http", Token: "-"})
	if err != nil {
		t.Fatal(err)
	}
	version := func(route, weight string) string {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "route.yaml"), []byte(route), 0o644)
		if weight != "" {
			os.WriteFile(filepath.Join(dir, "weight.json"), []byte(weight), 0o644)
		}
		return dir
	}
	run := func(args ...string) (int, string) {
		t.Helper()
		var out bytes.Buffer
		cmd := exec.Command(dnsedgeBin, append([]string{"policy"}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
	}
	active := func() string {
		t.Helper()
		p, _, err := c.KV().Get("gray/strategy/active", nil)
		if err != nil || p == nil {
			t.Fatalf("active: %v %v", p, err)
		}
		return string(p.Value)
	}
	good := version("rules:\n  - name: api\n    match: {qname_suffix: [api.example]}\n", `{"splits": {"api": {"percent": 10, "canary": "canary", "base": "default"}}}`)
	if code, out := run("push", good, "--version", "v1", "-consul", a.HTTPAddr); code != 0 {
		t.Fatalf("push v1: exit %d\n%s", code, out)
	}
	if code, out := run("push", good, "--version", "v2", "-consul", a.HTTPAddr); code != 0 || active() != "v2" {
		t.Fatalf("push v2: exit %d, active %s\n%s", code, active(), out)
	}
	if p, _, _ := c.KV().Get("gray/strategy/v2/weight", nil); p == nil || !strings.Contains(string(p.Value), `"percent": 10`) {
		t.Errorf("v2/weight: %v", p)
	}
	if code, out := run("push", good, "--version", "v2", "-consul", a.HTTPAddr); code != 3 || !strings.Contains(out, "gray/strategy/v2/route") || !strings.Contains(out, "never edited in place") {
		t.Errorf("push of an existing version: exit %d\n%s", code, out)
	}
	bad := version("rules:\n  - name: api\n    match: {qname_suffix: [api.example]}\n", "{\"splits\": {\"api\":\n  {\"percent\": 101, \"canary\": \"canary\", \"base\": \"default\"}}}")
	code, out := run("push", bad, "--version", "v3", "-consul", a.HTTPAddr)
	if code != 1 || !strings.Contains(out, filepath.Join(bad, "weight.json")+":2:15: splits.api.percent") {
		t.Errorf("push of an invalid version: exit %d\n%s", code, out)
	}
	if p, _, _ := c.KV().Get("gray/strategy/v3/route", nil); p != nil || active() != "v2" {
		t.Errorf("an invalid push wrote something: v3/route %v, active %s", p, active())
	}
	if code, out := run("activate", "v1", "-consul", a.HTTPAddr); code != 0 || active() != "v1" {
		t.Errorf("activate v1: exit %d, active %s\n%s", code, active(), out)
	}
	if code, out := run("activate", "v9", "-consul", a.HTTPAddr); code != 1 || !strings.Contains(out, "push it first") || active() != "v1" {
		t.Errorf("activate of a missing version: exit %d, active %s\n%s", code, active(), out)
	}
}
