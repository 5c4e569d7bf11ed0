package edgetls

import (
	"errors"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/dnsedge/dnsedge/internal/field"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	acme := func(f func(a *ACMESpec)) *ACMESpec {
		a := &ACMESpec{Email: "ops@example.com", Domains: []string{"dns.example.com"}}
		if f != nil {
			f(a)
		}
		return a
	}
	off := false
	tests := []struct {
		name string
		spec Spec
		want []string // error messages, in order; none means valid
	}{
		{name: "files", spec: Spec{CertFile: "c.pem", KeyFile: "k.pem"}},
		{name: "self-signed", spec: Spec{SelfSigned: true}},
		{name: "self-signed hosts", spec: Spec{SelfSigned: true, Hosts: []string{"localhost", "dns.lan", "10.0.0.1", "fe80::1"}}},
		{name: "acme", spec: Spec{ACME: acme(nil)}},
		{name: "acme full", spec: Spec{ACME: acme(func(a *ACMESpec) {
			a.CA = "https://127.0.0.1:14000/dir"
			a.Challenges = []string{"http-01", "tls-alpn-01"}
			a.HTTPAddress = "127.0.0.1:80"
			a.TLSALPNAddress = "127.0.0.1:443"
			a.CARoot = "root.pem"
			a.OCSPStapling = &off
		})}},
		{name: "mtls require", spec: Spec{SelfSigned: true, ClientCA: "ca.pem", ClientAuth: "require"}},
		{name: "mtls request without ca", spec: Spec{SelfSigned: true, ClientAuth: "request"}},
		{name: "client auth none", spec: Spec{SelfSigned: true, ClientAuth: "none"}},

		{name: "empty", spec: Spec{}, want: []string{
			"cert_file: one of cert_file+key_file, self_signed or acme is required"}},
		{name: "files and self-signed", spec: Spec{CertFile: "c", KeyFile: "k", SelfSigned: true}, want: []string{
			"self_signed: cannot be combined with cert_file"}},
		{name: "all three", spec: Spec{CertFile: "c", KeyFile: "k", SelfSigned: true, ACME: acme(nil)}, want: []string{
			"self_signed: cannot be combined with cert_file or acme"}},
		{name: "self-signed and acme", spec: Spec{SelfSigned: true, ACME: acme(nil)}, want: []string{
			"acme: cannot be combined with self_signed"}},
		{name: "key without cert", spec: Spec{KeyFile: "k"}, want: []string{
			"key_file: set without cert_file"}},
		{name: "cert without key", spec: Spec{CertFile: "c"}, want: []string{
			"key_file: required with cert_file"}},
		{name: "hosts without self-signed", spec: Spec{CertFile: "c", KeyFile: "k", Hosts: []string{"a"}}, want: []string{
			"hosts: only used with self_signed"}},
		{name: "bad host", spec: Spec{SelfSigned: true, Hosts: []string{"ok", "bad name", "-x.y", "*.dns.test", "a.*.b"}}, want: []string{
			`hosts[1]: "bad name" is neither an IP address nor a DNS name`,
			`hosts[2]: "-x.y" is neither an IP address nor a DNS name`,
			`hosts[4]: "a.*.b" is neither an IP address nor a DNS name`}},
		{name: "unknown client auth", spec: Spec{SelfSigned: true, ClientAuth: "verify"}, want: []string{
			`client_auth: unknown value "verify" (want none, request or require)`}},
		{name: "require without ca", spec: Spec{SelfSigned: true, ClientAuth: "require"}, want: []string{
			"client_ca: required when client_auth is require"}},
		{name: "ca without client auth", spec: Spec{SelfSigned: true, ClientCA: "ca.pem"}, want: []string{
			"client_auth: must be request or require when client_ca is set"}},
		{name: "acme empty", spec: Spec{ACME: &ACMESpec{}}, want: []string{
			"acme.email: required", "acme.domains: required"}},
		{name: "acme bad fields", spec: Spec{ACME: acme(func(a *ACMESpec) {
			a.CA = "http://ca.example/dir"
			a.Email = "nobody"
			a.Domains = []string{"a.example", "*.b.example", "x", "A.example"}
		})}, want: []string{
			`acme.ca: "http://ca.example/dir" is not an https URL`,
			`acme.email: "nobody" is not an email address`,
			`acme.domains[1]: "*.b.example": wildcards need the dns-01 challenge, which is not supported`,
			`acme.domains[2]: "x" is not a DNS name`,
			`acme.domains[3]: "A.example" is listed twice`}},
		{name: "acme bad challenges", spec: Spec{ACME: acme(func(a *ACMESpec) {
			a.Challenges = []string{"dns-01", "http-01", "http-01"}
		})}, want: []string{
			`acme.challenges[0]: unknown challenge "dns-01" (want tls-alpn-01 or http-01)`,
			`acme.challenges[2]: "http-01" is listed twice`}},
		{name: "acme bad http address", spec: Spec{ACME: acme(func(a *ACMESpec) { a.HTTPAddress = "localhost:80" })}, want: []string{
			`acme.http_address: "localhost:80": host must be an IP address or empty`}},
		{name: "acme http address without port", spec: Spec{ACME: acme(func(a *ACMESpec) { a.HTTPAddress = "127.0.0.1" })}, want: []string{
			`acme.http_address: "127.0.0.1" is not ip:port: address 127.0.0.1: missing port in address`}},
		{name: "acme http address bad port", spec: Spec{ACME: acme(func(a *ACMESpec) { a.HTTPAddress = ":http" })}, want: []string{
			`acme.http_address: ":http": port must be a number from 1 to 65535`}},
		{name: "acme http address without http-01", spec: Spec{ACME: acme(func(a *ACMESpec) {
			a.Challenges = []string{"tls-alpn-01"}
			a.HTTPAddress = ":8080"
		})}, want: []string{"acme.http_address: set but http-01 is not enabled"}},
		{name: "acme hosts differ", spec: Spec{ACME: acme(func(a *ACMESpec) { a.HTTPAddress = "127.0.0.1:80" })}, want: []string{
			`acme.tls_alpn_address: host "" differs from http_address host "127.0.0.1"; with both challenges on they must be equal`}},
		{name: "acme hosts differ one challenge", spec: Spec{ACME: acme(func(a *ACMESpec) {
			a.Challenges = []string{"http-01"}
			a.HTTPAddress = "127.0.0.1:80"
		})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, err := range field.Flatten(tt.spec.Validate()) {
				var fe *field.Error
				if !errors.As(err, &fe) {
					t.Errorf("error %v is not a *field.Error", err)
				}
				got = append(got, err.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Validate() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestSpecYAML checks that the yaml tags decode the documented section in
// strict mode, the way the caller decodes it.
func TestSpecYAML(t *testing.T) {
	t.Parallel()
	const doc = `
client_ca: /etc/dnsedge/clients.pem
client_auth: require
acme:
  ca: https://127.0.0.1:14000/dir
  email: ops@example.com
  domains: [dns.example.com]
  challenges: [tls-alpn-01]
  tls_alpn_address: ":443"
  ca_root: /etc/dnsedge/acme-root.pem
  ocsp_stapling: false
`
	var s Spec
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if s.ACME == nil || s.ACME.Domains[0] != "dns.example.com" || s.ACME.OCSPStapling == nil || *s.ACME.OCSPStapling ||
		s.ACME.TLSALPNAddress != ":443" || s.ClientAuth != "require" {
		t.Errorf("decoded %+v, acme %+v", s, s.ACME)
	}
}

// TestSpecCheckFiles: every file the section names that would not load is
// reported at its key.
func TestSpecCheckFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := issue(t, nil, "ca", true)
	leaf := issue(t, ca, "dns.example", false)
	cert, key, caFile, junk := dir+"/cert.pem", dir+"/key.pem", dir+"/ca.pem", dir+"/junk.pem"
	writeFile(t, cert, leaf.certPEM())
	writeFile(t, key, leaf.keyPEM(t))
	writeFile(t, caFile, ca.certPEM())
	writeFile(t, junk, []byte("not pem"))
	missing := dir + "/missing.pem"
	tests := []struct {
		name string
		spec Spec
		want []string // paths of the problems
	}{
		{"good", Spec{CertFile: cert, KeyFile: key, ClientCA: caFile, ClientAuth: "require"}, nil},
		{"missing cert", Spec{CertFile: missing, KeyFile: key}, []string{"cert_file"}},
		{"missing key", Spec{CertFile: cert, KeyFile: missing}, []string{"key_file"}},
		{"not a certificate", Spec{CertFile: junk, KeyFile: key}, []string{"cert_file"}},
		{"bad client CA", Spec{CertFile: cert, KeyFile: key, ClientCA: junk, ClientAuth: "require"}, []string{"client_ca"}},
		{"missing ACME root", Spec{ACME: &ACMESpec{Email: "a@b.c", Domains: []string{"dns.example"}, CARoot: missing}}, []string{"acme.ca_root"}},
		{"self-signed has no files", Spec{SelfSigned: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, err := range field.Flatten(tt.spec.CheckFiles()) {
				var fe *field.Error
				if !errors.As(err, &fe) {
					t.Fatalf("%v is not a *field.Error", err)
				}
				got = append(got, fe.Path)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("problems at %q, want %q", got, tt.want)
			}
		})
	}
}
