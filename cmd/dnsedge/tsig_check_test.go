package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestCheckHidesTSIGSecrets: dnsedge check never shows a TSIG secret,
// whether the file is good or every key in it is wrong.
func TestCheckHidesTSIGSecrets(t *testing.T) {
	const good = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 0123456789abcdef0123456789abcdef
	const short = "c2hvcnRzZWNyZXQ="                            // shortsecret
	const notB64 = "s3cr3t!not-base64"
	tests := []struct {
		name     string
		keys     string
		wantCode int
		want     string
	}{
		{"good", `{name: k.example., secret: "` + good + `"}`, 0, "ok (2 listeners"},
		{"short", `{name: k.example., secret: "` + short + `"}`, 1, "tsig.keys[0].secret: secret of 11 bytes is too short"},
		{"not base64", `{name: k.example., secret: "` + notB64 + `"}`, 1, "tsig.keys[0].secret: secret is not valid base64"},
		{"bad algorithm", `{name: k.example., algorithm: hmac-md5, secret: "` + good + `"}`, 1, "tsig.keys[0].algorithm: unknown algorithm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeFile(t, "dnsedge.yaml", "listeners:\n  - {proto: udp, address: \"127.0.0.1:8053\"}\n  - {proto: tcp, address: \"127.0.0.1:8053\"}\nupstreams:\n  - {name: a, url: \"udp://192.0.2.1\"}\ntsig:\n  keys:\n    - "+tt.keys+"\n")
			var stdout, stderr bytes.Buffer
			code := check([]string{cfg}, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tt.wantCode || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, want %d; output:\n%s\nwant it to contain %q", code, tt.wantCode, out, tt.want)
			}
			for _, s := range []string{good, short, notB64, "shortsecret", "0123456789abcdef"} {
				if strings.Contains(out, s) {
					t.Errorf("check output shows the secret %q:\n%s", s, out)
				}
			}
		})
	}
}
