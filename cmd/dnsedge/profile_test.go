package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/tls/pebbletest"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// runDnsedge runs the binary with args and env added to the test's
// environment, and returns its exit code, stdout and stderr.
func runDnsedge(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dnsedgeBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("dnsedge %s: %v", strings.Join(args, " "), err)
	return 0, "", ""
}

// testCert issues a certificate from tmpl, signed by parent (self-signed
// when parent is nil), and returns it with its key.
func testCert(t *testing.T, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		if tmpl.SerialNumber, err = rand.Int(rand.Reader, big.NewInt(1<<62)); err != nil {
			t.Fatal(err)
		}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func caTemplate(name string) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
}

func writePEM(t *testing.T, name string, blocks ...*pem.Block) string {
	t.Helper()
	var b []byte
	for _, bl := range blocks {
		b = append(b, pem.EncodeToMemory(bl)...)
	}
	return writeFile(t, name, string(b))
}

func certBlock(c *x509.Certificate) *pem.Block {
	return &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}
}

func keyBlock(t *testing.T, k *ecdsa.PrivateKey) *pem.Block {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}

// checkPlist is run by python3: it reads a profile with plistlib and
// asserts what the JSON in argv[2] expects of it.
const checkPlist = `
import json, plistlib, re, sys
p = plistlib.load(open(sys.argv[1], 'rb'))
want = json.loads(sys.argv[2])
U = re.compile(r'^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$')
assert p['PayloadType'] == 'Configuration', p['PayloadType']
assert p['PayloadVersion'] == 1, p['PayloadVersion']
assert p['PayloadIdentifier'] == want['id'], p['PayloadIdentifier']
dns = [c for c in p['PayloadContent'] if c['PayloadType'] == 'com.apple.dnsSettings.managed']
assert len(dns) == 1, p['PayloadContent']
d = dns[0]
assert d['PayloadVersion'] == 1 and d['PayloadIdentifier'].startswith(want['id'] + '.'), d
assert d['DNSSettings'] == want['settings'], d['DNSSettings']
assert d.get('OnDemandRules') == want['rules'], d.get('OnDemandRules')
roots = [c for c in p['PayloadContent'] if c['PayloadType'] == 'com.apple.security.root']
assert [r['PayloadContent'].hex() for r in roots] == want['roots'], [r['PayloadContent'].hex() for r in roots]
assert len(roots) + 1 == len(p['PayloadContent']), p['PayloadContent']
uuids = [p['PayloadUUID']] + [c['PayloadUUID'] for c in p['PayloadContent']]
for u in uuids:
    assert U.match(u), u
assert len(set(uuids)) == len(uuids), uuids
print('ok', d['DNSSettings']['DNSProtocol'])
`

// TestProfileApple: profiles for DoH and DoT read back with Python's
// plistlib with each protocol's keys; an http:// DoH URL and a DoT server
// without a name are refused; a signed profile verifies with openssl and
// holds the unsigned profile.
func TestProfileApple(t *testing.T) {
	python, openssl := tool(t, "python3"), tool(t, "openssl")
	root, _ := testCert(t, caTemplate("Corp DNS Root"), nil, nil)
	rootFile := writePEM(t, "corp-root.pem", certBlock(root))
	dir := t.TempDir()

	tests := []struct {
		name string
		args []string
		want map[string]any
	}{
		{
			name: "doh with addresses, match domains, on-demand rules and a root",
			args: []string{"--doh", "https://dns.corp.example/dns-query", "--address", "192.0.2.53", "--address", "2001:db8::53",
				"--match-domain", "corp.example", "--match-domain", "*.svc.example", "--on-demand", "wifi,cellular", "--except-ssid", "Office", "--ca", rootFile},
			want: map[string]any{
				"id": "dnsedge.dns.corp.example",
				"settings": map[string]any{"DNSProtocol": "HTTPS", "ServerURL": "https://dns.corp.example/dns-query",
					"ServerAddresses": []string{"192.0.2.53", "2001:db8::53"}, "SupplementalMatchDomains": []string{"corp.example", "*.svc.example"}},
				"rules": []any{
					map[string]any{"Action": "Disconnect", "InterfaceTypeMatch": "WiFi", "SSIDMatch": []string{"Office"}},
					map[string]any{"Action": "Connect", "InterfaceTypeMatch": "WiFi"},
					map[string]any{"Action": "Connect", "InterfaceTypeMatch": "Cellular"},
					map[string]any{"Action": "Disconnect"},
				},
				"roots": []string{hex.EncodeToString(root.Raw)},
			},
		},
		{
			name: "dot with addresses, match domains, on-demand rules and a root",
			args: []string{"--dot", "dns.corp.example", "--address", "192.0.2.53", "--match-domain", "corp.example",
				"--except-ssid", "Home", "--ca", rootFile, "--identifier", "com.example.dns"},
			want: map[string]any{
				"id": "com.example.dns",
				"settings": map[string]any{"DNSProtocol": "TLS", "ServerName": "dns.corp.example",
					"ServerAddresses": []string{"192.0.2.53"}, "SupplementalMatchDomains": []string{"corp.example"}},
				"rules": []any{
					map[string]any{"Action": "Disconnect", "InterfaceTypeMatch": "WiFi", "SSIDMatch": []string{"Home"}},
					map[string]any{"Action": "Connect"},
				},
				"roots": []string{hex.EncodeToString(root.Raw)},
			},
		},
		{
			name: "dot alone",
			args: []string{"--dot", "dns.corp.example"},
			want: map[string]any{"id": "dnsedge.dns.corp.example", "settings": map[string]any{"DNSProtocol": "TLS", "ServerName": "dns.corp.example"}, "rules": nil, "roots": []string{}},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, fmt.Sprintf("p%d.mobileconfig", i))
			if code, _, stderr := runDnsedge(t, nil, append([]string{"profile", "apple", "-o", out}, tt.args...)...); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			want, err := json.Marshal(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			if res, err := exec.Command(python, "-c", checkPlist, out, string(want)).CombinedOutput(); err != nil {
				t.Fatalf("plistlib: %v\n%s", err, res)
			}
			// The check can fail: the same profile against another server.
			tt.want["id"] = "dnsedge.elsewhere.example"
			other, _ := json.Marshal(tt.want)
			if res, err := exec.Command(python, "-c", checkPlist, out, string(other)).CombinedOutput(); err == nil {
				t.Fatalf("plistlib check passed with a wrong identifier:\n%s", res)
			}
		})
	}

	refused := []struct {
		name string
		args []string
		want string
	}{
		{"http DoH URL", []string{"--doh", "http://dns.corp.example/dns-query"}, "http:// would send queries in the clear"},
		{"DoH URL without a path", []string{"--doh", "https://dns.corp.example"}, "no path"},
		{"DoH URL without a host", []string{"--doh", "https:///dns-query"}, "no host"},
		{"DoT without a name", []string{"--dot", ""}, "-dot is empty"},
		{"DoT with an address for a name", []string{"--dot", "192.0.2.53"}, "an IP address; DoT needs the host name"},
		{"neither", []string{"--address", "192.0.2.53"}, "give exactly one of a DoH URL or a DoT server name"},
		{"bad address", []string{"--dot", "dns.corp.example", "--address", "dns.corp.example"}, "not an IPv4 or IPv6 address"},
		{"unknown interface", []string{"--dot", "dns.corp.example", "--on-demand", "bluetooth"}, "unknown interface type"},
	}
	for _, tt := range refused {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			out := filepath.Join(dir, "refused.mobileconfig")
			code, stdout, stderr := runDnsedge(t, nil, append([]string{"profile", "apple", "-o", out}, tt.args...)...)
			if code != 2 || !strings.Contains(stderr, tt.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || stdout != "" {
				t.Fatalf("exit %d, stderr %q, want exit 2 and one line saying %q", code, stderr, tt.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a refused profile was written: %v", err)
			}
		})
	}

	t.Run("README example", func(t *testing.T) {
		readme, err := os.ReadFile("../../README.md")
		if err != nil {
			t.Fatal(err)
		}
		_, rest, ok := strings.Cut(string(readme), "\ndnsedge profile apple ")
		block, _, ok2 := strings.Cut(rest, "\n```")
		if !ok || !ok2 {
			t.Fatal("no dnsedge profile apple example in README.md")
		}
		args := strings.Fields(strings.ReplaceAll(block, "\\\n", " "))
		for i, a := range args {
			switch a {
			case "corp-root.pem":
				args[i] = rootFile
			case "dnsedge.mobileconfig":
				args[i] = filepath.Join(dir, a)
			}
		}
		if code, _, stderr := runDnsedge(t, nil, append([]string{"profile", "apple"}, args...)...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		if res, err := exec.Command(python, "-c", "import plistlib, sys; plistlib.load(open(sys.argv[1], 'rb'))", filepath.Join(dir, "dnsedge.mobileconfig")).CombinedOutput(); err != nil {
			t.Fatalf("plistlib: %v\n%s", err, res)
		}
	})

	t.Run("signed", func(t *testing.T) {
		signRoot, signRootKey := testCert(t, caTemplate("Profile Signing Root"), nil, nil)
		inter, interKey := testCert(t, caTemplate("Profile Signing Intermediate"), signRoot, signRootKey)
		signer, signerKey := testCert(t, &x509.Certificate{
			Subject:   pkix.Name{CommonName: "dnsedge profiles"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature,
		}, inter, interKey)
		caFile := writePEM(t, "sign-root.pem", certBlock(signRoot))
		certFile := writePEM(t, "signer.pem", certBlock(signer))
		keyFile := writePEM(t, "signer-key.pem", keyBlock(t, signerKey))
		chainFile := writePEM(t, "chain.pem", certBlock(inter))
		base := []string{"profile", "apple", "--dot", "dns.corp.example", "--ca", rootFile, "--uuid-seed", "fleet-1"}
		unsigned, signed := filepath.Join(dir, "unsigned.mobileconfig"), filepath.Join(dir, "signed.mobileconfig")
		if code, _, stderr := runDnsedge(t, nil, append(base, "-o", unsigned)...); code != 0 {
			t.Fatalf("unsigned: exit %d: %s", code, stderr)
		}
		if code, _, stderr := runDnsedge(t, nil, append(base, "-o", signed, "--sign-cert", certFile, "--sign-key", keyFile, "--sign-chain", chainFile)...); code != 0 {
			t.Fatalf("signed: exit %d: %s", code, stderr)
		}
		want, err := os.ReadFile(unsigned)
		if err != nil {
			t.Fatal(err)
		}
		for _, verify := range [][]string{
			{"smime", "-verify", "-inform", "DER", "-in", signed, "-CAfile", caFile},
			{"cms", "-verify", "-inform", "DER", "-in", signed, "-CAfile", caFile},
		} {
			out := filepath.Join(dir, verify[0]+".plist")
			if res, err := exec.Command(openssl, append(verify, "-out", out)...).CombinedOutput(); err != nil {
				t.Fatalf("openssl %s: %v\n%s", strings.Join(verify, " "), err, res)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("openssl %s: the signed content is not the unsigned profile:\n%s", verify[0], got)
			}
		}
		// The verification can fail: against another root.
		if res, err := exec.Command(openssl, "smime", "-verify", "-inform", "DER", "-in", signed, "-CAfile", rootFile, "-out", os.DevNull).CombinedOutput(); err == nil {
			t.Fatalf("openssl verified the profile against a root that did not sign it:\n%s", res)
		}
		code, _, stderr := runDnsedge(t, nil, append(base, "-o", filepath.Join(dir, "x"), "--sign-cert", certFile, "--sign-key", writePEM(t, "k.pem", keyBlock(t, interKey)))...)
		if code != 2 || !strings.Contains(stderr, "does not belong to the certificate") {
			t.Fatalf("a key of another certificate: exit %d: %s", code, stderr)
		}
	})
}

// androidDomain is the Private DNS host name of TestProfileAndroid: under
// pebbletest.Zone, so pebble validates it at 127.0.0.1.
const androidDomain = "dot.dnsedge.test"

// gstaticZone is the upstream's: the probe's name does not exist in it.
const gstaticZone = `$ORIGIN metric.gstatic.com.
@    60 IN SOA ns hostmaster 1 3600 600 86400 30
ns   60 IN A 192.0.2.1
`

// androidConfig serves DoT on pebble's TLS-ALPN port with a certificate
// pebble issues for androidDomain, and UDP with a zone that gives
// androidDomain and other.dnsedge.test the address 127.0.0.1, for the
// check's -resolver. policy is appended as it is.
func androidConfig(p *pebbletest.Pebble, state, upstream, policy string) string {
	return fmt.Sprintf(`listeners:
  - {proto: dot, address: "127.0.0.1:%[1]d"}
  - {proto: udp, address: "127.0.0.1:0"}
state_dir: %[2]q
tls:
  acme:
    ca: %[3]q
    email: ops@dnsedge.test
    domains: [%[4]s]
    challenges: [tls-alpn-01]
    tls_alpn_address: "127.0.0.1:%[1]d"
    ca_root: %[5]q
upstreams:
  - {name: up, url: "udp://%[6]s"}
zones:
  - origin: dnsedge.test.
    records: ["dot 60 IN A 127.0.0.1", "other 60 IN A 127.0.0.1"]
log:
  level: info
%[7]s`, p.TLSPort, state, p.DirURL, androidDomain, p.CARoot, upstream, policy)
}

// refuseProbe is a policy rule answering REFUSED to Android's probe.
const refuseProbe = `policy:
  version: "refuse-probe"
  rules:
    - name: no-metrics
      match: {qname_suffix: [metric.gstatic.com]}
      answer: {rcode: REFUSED}
`

// TestProfileAndroid runs "dnsedge profile android" against dnsedge's DoT
// listener with a certificate pebble issued, pebble's root as the roots
// (by -ca and by SSL_CERT_FILE), and the host name resolved by dnsedge's
// own UDP listener: the check passes, also when a policy answers the
// probe REFUSED (Android accepts any reply with the question). It names
// the failing step for a wrong host name, an expired certificate, a
// closed port, and servers that refuse the probe without the question or
// close the connection on it.
func TestProfileAndroid(t *testing.T) {
	p := pebbletest.Start(t)
	up := transporttest.StartFault(t, gstaticZone)
	rootFile := writeFile(t, "pebble-root.pem", string(p.RootPEM(t)))
	state := t.TempDir()
	cfgFile := writeFile(t, "dnsedge.yaml", androidConfig(p, state, up.AddrV4().String(), ""))
	srv := startServe(t, cfgFile)
	resolver := srv.addr("udp")
	port := fmt.Sprint(p.TLSPort)

	type outcome struct {
		code     int
		contains []string
	}
	pass := func(probe string) outcome {
		return outcome{0, []string{"resolve OK   " + androidDomain + ": 127.0.0.1 (resolver " + resolver + ")", "connect OK", "tls     OK", "probe   OK", probe, "PASS: Android's Private DNS would validate"}}
	}
	failAt := func(step, why string) outcome {
		return outcome{1, []string{"FAIL at step " + step, why}}
	}
	_, closedPort := hostPort(freeAddr(t))
	otherCA, _ := testCert(t, caTemplate("Not Pebble"), nil, nil)
	otherFile := writePEM(t, "other.pem", certBlock(otherCA))
	tests := []struct {
		name string
		env  []string
		args []string
		want outcome
	}{
		{"pebble root by -ca", nil, []string{androidDomain, "-resolver", resolver, "-port", port, "-ca", rootFile}, pass("NXDOMAIN, 1 question, 0 answers")},
		{"pebble root as the system roots", []string{"SSL_CERT_FILE=" + rootFile, "SSL_CERT_DIR=" + t.TempDir()}, []string{androidDomain, "-resolver", resolver, "-port", port}, pass("NXDOMAIN, 1 question")},
		{"other system roots", []string{"SSL_CERT_FILE=" + otherFile, "SSL_CERT_DIR=" + t.TempDir()}, []string{androidDomain, "-resolver", resolver, "-port", port}, failAt("tls", "certificate signed by unknown authority")},
		{"wrong host name", nil, []string{"other.dnsedge.test", "-resolver", resolver, "-port", port, "-ca", rootFile}, failAt("tls", "not other.dnsedge.test")},
		{"closed port", nil, []string{androidDomain, "-resolver", resolver, "-port", closedPort, "-ca", rootFile}, failAt("connect", "connection refused")},
		{"name that does not resolve", nil, []string{"none.dnsedge.test", "-resolver", resolver, "-port", port, "-ca", rootFile}, failAt("resolve", "no A or AAAA record")},
	}
	run := func(t *testing.T, env, args []string, want outcome) {
		t.Helper()
		code, stdout, stderr := runDnsedge(t, env, append([]string{"profile", "android"}, args...)...)
		t.Logf("dnsedge profile android %s:\n%s", strings.Join(args, " "), stdout)
		if code != want.code {
			t.Fatalf("exit %d, want %d\n%s%s", code, want.code, stdout, stderr)
		}
		for _, s := range want.contains {
			if !strings.Contains(stdout, s) {
				t.Fatalf("output does not say %q:\n%s", s, stdout)
			}
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, tt.env, tt.args, tt.want) })
	}

	withCA := []string{androidDomain, "-resolver", resolver, "-ca", rootFile}
	t.Run("policy answering the probe REFUSED", func(t *testing.T) {
		if err := os.WriteFile(cfgFile, []byte(androidConfig(p, state, up.AddrV4().String(), refuseProbe)), 0o644); err != nil {
			t.Fatal(err)
		}
		reloads := strings.Count(srv.stderr.String(), "configuration reloaded")
		srv.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, "the reload", func() bool { return strings.Count(srv.stderr.String(), "configuration reloaded") > reloads })
		run(t, nil, append(withCA, "-port", port), pass("REFUSED, 1 question, 0 answers"))
	})

	// Servers that refuse the probe the ways Android does not accept, with
	// the certificate pebble issued, so that only the probe fails.
	cert := acmeCert(t, state, androidDomain)
	t.Run("refused without the question", func(t *testing.T) {
		ap := startRefusingDoT(t, cert, func(q *dns.Msg) []byte {
			r := new(dns.Msg).SetRcode(q, dns.RcodeRefused)
			r.Question = nil
			b, _ := r.Pack()
			return b
		})
		run(t, nil, append(withCA, "-port", fmt.Sprint(ap.Port)), failAt("probe", "the reply (REFUSED) has 0 questions; Android needs exactly 1"))
	})
	t.Run("connection closed on the probe", func(t *testing.T) {
		ap := startRefusingDoT(t, cert, func(*dns.Msg) []byte { return nil })
		run(t, nil, append(withCA, "-port", fmt.Sprint(ap.Port)), failAt("probe", "closed the connection before replying, 3 times"))
	})

	t.Run("expired certificate", func(t *testing.T) {
		ca, caKey := testCert(t, caTemplate("Expired Test Root"), nil, nil)
		leaf, leafKey := testCert(t, &x509.Certificate{
			Subject:   pkix.Name{CommonName: androidDomain},
			DNSNames:  []string{androidDomain},
			NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}, ca, caKey)
		caFile := writePEM(t, "expired-root.pem", certBlock(ca))
		expired := startServe(t, writeFile(t, "expired.yaml", fmt.Sprintf(`listeners:
  - {proto: dot, address: "127.0.0.1:0"}
tls:
  cert_file: %q
  key_file: %q
upstreams:
  - {name: up, url: "udp://%s"}
`, writePEM(t, "expired.pem", certBlock(leaf)), writePEM(t, "expired-key.pem", keyBlock(t, leafKey)), up.AddrV4())))
		_, dotPort := hostPort(expired.addr("dot"))
		run(t, nil, []string{androidDomain, "-resolver", resolver, "-port", dotPort, "-ca", caFile}, failAt("tls", "certificate has expired"))
	})
}

// acmeCert loads the certificate certmagic keeps for domain under
// dnsedge's state directory.
func acmeCert(t *testing.T, state, domain string) tls.Certificate {
	t.Helper()
	var certFile, keyFile string
	filepath.WalkDir(state, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return nil
		case d.Name() == domain+".crt":
			certFile = path
		case d.Name() == domain+".key":
			keyFile = path
		}
		return nil
	})
	if certFile == "" || keyFile == "" {
		t.Fatalf("no certificate and key for %s under %s", domain, state)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// startRefusingDoT serves DoT on a loopback port with cert and answers
// every query with what reply returns, closing the connection instead
// when it returns nil. It stops in t.Cleanup.
func startRefusingDoT(t *testing.T, cert tls.Certificate, reply func(*dns.Msg) []byte) *net.TCPAddr {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				for {
					var l [2]byte
					if _, err := io.ReadFull(c, l[:]); err != nil {
						return
					}
					b := make([]byte, binary.BigEndian.Uint16(l[:]))
					if _, err := io.ReadFull(c, b); err != nil {
						return
					}
					q := new(dns.Msg)
					if q.Unpack(b) != nil {
						return
					}
					r := reply(q)
					if r == nil {
						return
					}
					c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(r))), r...))
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().(*net.TCPAddr)
}

// TestProfileUsage: usage mistakes exit 2 with a line that says what is
// wrong, before anything is resolved or written.
func TestProfileUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no platform", nil, "usage:"},
		{"unknown platform", []string{"windows"}, `unknown platform "windows"`},
		{"android without a host", []string{"android"}, "give one HOST"},
		{"android with an address", []string{"android", "192.0.2.1"}, "an IP address"},
		{"android with a port in the host", []string{"android", "dns.example:853"}, "without port"},
		{"android with two hosts", []string{"android", "a.example", "b.example"}, "give one HOST"},
		{"android with port 0", []string{"android", "a.example", "-port", "0"}, "is not a port"},
		{"android with a missing ca file", []string{"android", "-ca", "/nonexistent/ca.pem", "a.example"}, "-ca: open /nonexistent/ca.pem"},
		{"apple with an extra argument", []string{"apple", "--dot", "a.example", "extra"}, `unexpected argument "extra"`},
		{"apple signing without a key", []string{"apple", "--dot", "a.example", "--sign-cert", "x.pem"}, "both -sign-cert and -sign-key"},
		{"apple with a missing ca file", []string{"apple", "--dot", "a.example", "--ca", "/nonexistent/ca.pem"}, "-ca: open /nonexistent/ca.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := profileCmd(tt.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.want) || stdout.Len() != 0 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2 saying %q", code, stdout.String(), stderr.String(), tt.want)
			}
		})
	}
}
