package transport

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// TestValidateEncryptedUpstreams checks the TLS fields of an upstream: each
// problem is a *field.Error at the field's path.
func TestValidateEncryptedUpstreams(t *testing.T) {
	t.Parallel()
	ca := transporttest.NewCA(t)
	good := ca.WritePEM(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	cases := []struct {
		name string
		spec UpstreamSpec
		want []string // "field: message part"
	}{
		{"plain dot", UpstreamSpec{URL: "tls://dns.example"}, nil},
		{"doh with path and http3", UpstreamSpec{URL: "https://dns.example/q", HTTP3: true}, nil},
		{"doq with pins", UpstreamSpec{URL: "quic://192.0.2.1", SPKI: []string{ca.LeafPin(), ca.CAPin()}}, nil},
		{"ca file and server name", UpstreamSpec{URL: "tls://192.0.2.1", CAFile: good, TLSServerName: "dns.test"}, nil},
		{"IP server name", UpstreamSpec{URL: "tls://dns.example", TLSServerName: "192.0.2.1"}, nil},
		{"tls fields on udp", UpstreamSpec{URL: "udp://192.0.2.1", TLSServerName: "x.test", SPKI: []string{ca.LeafPin()}, CAFile: good, HTTP3: true},
			[]string{"upstreams[0].tls_server_name: only applies", "upstreams[0].spki: only applies", "upstreams[0].ca_file: only applies", "upstreams[0].http3: only applies"}},
		{"http3 on dot", UpstreamSpec{URL: "tls://dns.example", HTTP3: true}, []string{"upstreams[0].http3: only applies to https://"}},
		{"bad server name", UpstreamSpec{URL: "tls://dns.example", TLSServerName: "a b"}, []string{"upstreams[0].tls_server_name: \"a b\" is neither"}},
		{"server name with port", UpstreamSpec{URL: "tls://dns.example", TLSServerName: "dns.test:853"}, []string{"upstreams[0].tls_server_name:"}},
		{"bad pins", UpstreamSpec{URL: "quic://dns.example", SPKI: []string{ca.LeafPin(), "AAAA", "!!"}},
			[]string{"upstreams[0].spki[1]: decode spki pin", "upstreams[0].spki[2]: decode spki pin"}},
		{"missing ca file", UpstreamSpec{URL: "https://dns.example", CAFile: filepath.Join(dir, "nope.pem")}, []string{"upstreams[0].ca_file: read ca file"}},
		{"ca file without PEM", UpstreamSpec{URL: "https://dns.example", CAFile: notPEM}, []string{"upstreams[0].ca_file: read ca file " + notPEM + ": no PEM"}},
		{"ca file with pins", UpstreamSpec{URL: "tls://dns.example", CAFile: good, SPKI: []string{ca.LeafPin()}}, []string{"upstreams[0].ca_file: has no effect with spki"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Name = "up"
			c := Config{Upstreams: []UpstreamSpec{tc.spec}}
			var got []string
			if err := c.Validate(); err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe *field.Error
					if !errors.As(e, &fe) {
						t.Fatalf("%v is not a *field.Error", e)
					}
					got = append(got, e.Error())
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("errors %q, want %q", got, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("error %d = %q, want it to start with %q", i, got[i], w)
				}
			}
			if len(tc.want) == 0 {
				if _, err := tc.spec.TLSOptions(); err != nil {
					t.Errorf("TLSOptions of a valid spec: %v", err)
				}
			}
		})
	}
}
