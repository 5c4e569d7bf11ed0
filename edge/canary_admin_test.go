package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOperateEndpoints: the operating endpoints need an admin grant (no
// credentials 401, a write grant 403, neither changes anything), start a
// canary from the re-read configuration file, report it and abort it,
// each action audited.
func TestOperateEndpoints(t *testing.T) {
	cdn, v2, dead := cdnUpstream(t), cdnUpstream(t), deadUpstream(t)
	cfg := canaryConfig(t, cdn, v2, dead, "")
	e := startCanaryEdge(t, cfg, func() (*Config, error) { return cfg, nil })
	base := "http://" + e.srv.AdminAddr().String()
	call := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	for _, c := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"wrong", http.StatusUnauthorized}, {writeToken, http.StatusForbidden}} {
		for _, r := range []struct{ method, path string }{
			{"POST", "/admin/v1/canary"}, {"GET", "/admin/v1/canary"}, {"POST", "/admin/v1/canary/promote"},
			{"DELETE", "/admin/v1/canary"}, {"POST", "/admin/v1/reload"}, {"POST", "/admin/v1/rollback"},
		} {
			if code, body := call(r.method, r.path, c.token, ""); code != c.want {
				t.Fatalf("%s %s with token %q: %d %s, want %d", r.method, r.path, c.token, code, body, c.want)
			}
		}
	}
	if st := e.srv.CanaryStatus(); st.State != CanaryNone {
		t.Fatalf("refused calls changed the canary: %s", st.State)
	}
	if code, body := call("POST", "/admin/v1/canary", opToken, `{"share": 2}`); code != http.StatusBadRequest || !strings.Contains(body, `"field":"share"`) {
		t.Fatalf("share 2: %d %s", code, body)
	}
	if code, body := call("POST", "/admin/v1/canary", opToken, `{"share": 0.5, "window": "10s"}`); code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, body)
	}
	code, body := call("GET", "/admin/v1/canary", opToken, "")
	var st CanaryStatus
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil || st.State != CanaryRunning || st.Source != "file" || st.Share != 0.5 || st.By != "ops" {
		t.Fatalf("status: %d %s", code, body)
	}
	if code, body := call("POST", "/admin/v1/canary", opToken, `{}`); code != http.StatusConflict {
		t.Fatalf("second start: %d %s", code, body)
	}
	if code, body := call("DELETE", "/admin/v1/canary", opToken, ""); code != http.StatusOK || !strings.Contains(body, `"state":"aborted"`) {
		t.Fatalf("abort: %d %s", code, body)
	}
	if code, body := call("POST", "/admin/v1/reload", opToken, ""); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, body)
	}
	if code, body := call("POST", "/admin/v1/rollback", opToken, ""); code != http.StatusOK || !strings.Contains(body, `"reason":"manual"`) {
		t.Fatalf("rollback: %d %s", code, body)
	}
	audit := readAudit(t, cfg)
	for _, a := range []string{`"action":"canary.start","result":"failed"`, `"action":"canary.start","result":"ok"`, `"action":"canary.abort","result":"ok"`, `"action":"reload","result":"ok"`, `"action":"rollback","result":"ok"`} {
		if !strings.Contains(audit, a) {
			t.Fatalf("audit log lacks %s:\n%s", a, audit)
		}
	}
	if strings.Contains(audit, "writer") {
		t.Fatalf("refused calls were audited as actions:\n%s", audit)
	}
}

func readAudit(t *testing.T, cfg *Config) string {
	t.Helper()
	b, err := readFileIn(cfg.stateDir(), OperationsAuditFile)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readFileIn(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	return string(b), err
}

// TestCanaryConfigErrors: bad canary and rollback settings are refused
// with their place in the file.
func TestCanaryConfigErrors(t *testing.T) {
	base := "listeners: [{proto: udp, address: \"127.0.0.1:0\"}]\nupstreams: [{name: up, url: \"udp://127.0.0.1:53\"}]\nbootstrap: [\"127.0.0.1:53\"]\n"
	tests := []struct{ name, text, want string }{
		{"share above 1", "canary: {share: 1.5}\n", "4:17: canary.share"},
		{"answer share above share", "canary: {share: 0.01, answer_share: 0.5}\n", "canary.answer_share"},
		{"no workers", "canary: {workers: -1}\n", "canary.workers"},
		{"threshold", "canary:\n  thresholds: {max_p99_ratio: 0.5}\n", "5:31: canary.thresholds.max_p99_ratio"},
		{"negative watch", "rollback: {watch: -1s}\n", "rollback.watch"},
		{"interval above watch", "rollback: {watch: 5s, interval: 10s}\n", "rollback.interval"},
		{"unknown key", "rollback: {wach: 5s}\n", "wach"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(base+tt.text))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v, want an error at %s", err, tt.want)
			}
		})
	}
	cfg, err := Parse("c.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Rollback.On() || cfg.Rollback.Watch != 60*time.Second {
		t.Fatalf("rollback defaults: %+v", cfg.Rollback)
	}
	off, err := Parse("c.yaml", []byte(base+"rollback: {enabled: false}\n"))
	if err != nil || off.Rollback.On() {
		t.Fatalf("enabled: false: %v %+v", err, off)
	}
}
