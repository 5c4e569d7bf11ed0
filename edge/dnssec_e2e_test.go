package edge_test

// End-to-end tests of DNSSEC validation (issue 13) against the signed
// tree of internal/signedzones, served by a real named, with unbound as
// the oracle. The harness itself is proven by internal/signedzones'
// TestUnboundOracle.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/internal/signedzones"
	"github.com/miekg/dns"
)

type signedEdge struct {
	udp, doh netip.AddrPort
	audit    string
	logs     *syncBuffer
}

// startSignedEdge runs dnsedge in-process with UDP, TCP and cleartext DoH
// listeners, validating with the tree's anchor, forwarding to named.
func startSignedEdge(t *testing.T, z *signedzones.Zones, named string, cache bool) *signedEdge {
	t.Helper()
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	anchors, _ := json.Marshal(z.Anchors)
	conf := fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: tcp, address: "127.0.0.1:0"}
  - {proto: doh, address: "127.0.0.1:0", h2c: true}
upstreams:
  - {name: up, url: "udp://%s"}
cache: {enabled: %v}
dnssec:
  validate: true
  trust_anchors: %s
  negative_trust_anchors: []
  audit_log: {path: %q}
`, named, cache, anchors, audit)
	cfg, err := edge.Parse("dnssec.yaml", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	logs := new(syncBuffer)
	srv, err := edge.New(cfg, edge.Options{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	a := srv.Addrs()
	return &signedEdge{udp: a["udp"][0], doh: a["doh"][0], audit: audit, logs: logs}
}

func (e *signedEdge) ask(t *testing.T, proto string, q *dns.Msg) *dns.Msg {
	t.Helper()
	if proto == "doh" {
		q = q.Copy()
		q.Id = 0
		m, _ := dohPost(t, e.doh, q, nil)
		return m
	}
	m, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(q, e.udp.String())
	if err != nil {
		t.Fatalf("%s: %v", q.Question[0].Name, err)
	}
	return m
}

// TestDNSSECE2EVerdicts asks every case over UDP, then over DoH (from the
// cache, which must keep the verdict), with DO set: rcode, AD and EDE as
// the zone was built to produce.
func TestDNSSECE2EVerdicts(t *testing.T) {
	z, named := signedzones.Start(t)
	e := startSignedEdge(t, z, named.Addr, true)
	for _, proto := range []string{"udp", "doh"} {
		t.Run(proto, func(t *testing.T) {
			for _, c := range signedzones.Cases {
				m := e.ask(t, proto, signedzones.Query(c, true, false, false))
				if err := signedzones.Check(c, m, true, c.EDE); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestDNSSECE2EDifferential: for every case, dnsedge's rcode and AD bit
// equal unbound's, both validating with the same anchor against the same
// named, for a query with DO, one with AD only, and a plain one.
func TestDNSSECE2EDifferential(t *testing.T) {
	z, named := signedzones.Start(t)
	u := z.Unbound(t, named.Addr)
	e := startSignedEdge(t, z, named.Addr, true)
	c := &dns.Client{Timeout: 5 * time.Second}
	flags := []struct {
		name   string
		do, ad bool
	}{{"do", true, false}, {"ad", false, true}, {"plain", false, false}}
	for _, f := range flags {
		for _, tc := range signedzones.Cases {
			q := signedzones.Query(tc, f.do, f.ad, false)
			want, _, err := c.Exchange(q, u.Addr)
			if err != nil {
				t.Fatalf("unbound %s: %v", tc, err)
			}
			got := e.ask(t, "udp", q)
			if got.Rcode != want.Rcode || got.AuthenticatedData != want.AuthenticatedData {
				t.Errorf("%s %s: dnsedge %s AD=%v, unbound %s AD=%v", f.name, tc, dns.RcodeToString[got.Rcode], got.AuthenticatedData, dns.RcodeToString[want.Rcode], want.AuthenticatedData)
			}
		}
	}
}

func find(name string) signedzones.Case {
	for _, c := range signedzones.Cases {
		if c.String() == name {
			return c
		}
	}
	panic("no case " + name)
}

// TestDNSSECE2EADCD is the AD/CD table (RFC 4035 §3.1.6, §3.2.2; RFC 6840
// §5.7–5.9), in the manner of ISC's genreport: asked in order over UDP
// against one dnsedge with its cache on, so each row also proves that the
// cache replays neither AD nor a verdict to the wrong client.
func TestDNSSECE2EADCD(t *testing.T) {
	z, named := signedzones.Start(t)
	e := startSignedEdge(t, z, named.Addr, true)
	secure, insecure, bogus := find("www.nsec.test./A"), find("www.insecure.test./A"), find("www.tampered.test./A")
	tests := []struct {
		name       string
		c          signedzones.Case
		do, ad, cd bool
		rcode      int
		wantAD     bool
		rrsig      bool // the answer carries RRSIGs (only for DO, RFC 4035 §3.2.1)
	}{
		{"secure with DO sets AD", secure, true, false, false, dns.RcodeSuccess, true, true},
		{"secure plain after a DO query: no AD replayed", secure, false, false, false, dns.RcodeSuccess, false, false},
		{"secure with AD only sets AD", secure, false, true, false, dns.RcodeSuccess, true, false},
		{"secure plain after an AD query: no AD replayed", secure, false, false, false, dns.RcodeSuccess, false, false},
		{"secure with DO again keeps AD", secure, true, false, false, dns.RcodeSuccess, true, true},
		{"secure with CD: unvalidated, CD copied", secure, true, false, true, dns.RcodeSuccess, false, true},
		{"insecure with DO: no AD", insecure, true, false, false, dns.RcodeSuccess, false, false},
		{"insecure with AD: no AD", insecure, false, true, false, dns.RcodeSuccess, false, false},
		{"bogus with DO: SERVFAIL", bogus, true, false, false, dns.RcodeServerFailure, false, false},
		{"bogus plain: SERVFAIL", bogus, false, false, false, dns.RcodeServerFailure, false, false},
		{"bogus with CD: the unvalidated answer, CD copied", bogus, true, false, true, dns.RcodeSuccess, false, true},
		{"bogus with DO after a CD query: SERVFAIL again", bogus, true, false, false, dns.RcodeServerFailure, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := e.ask(t, "udp", signedzones.Query(tt.c, tt.do, tt.ad, tt.cd))
			if m.Rcode != tt.rcode || m.AuthenticatedData != tt.wantAD || m.CheckingDisabled != tt.cd {
				t.Errorf("rcode %s AD=%v CD=%v, want %s AD=%v CD=%v\n%s", dns.RcodeToString[m.Rcode], m.AuthenticatedData, m.CheckingDisabled, dns.RcodeToString[tt.rcode], tt.wantAD, tt.cd, m)
			}
			sigs := 0
			for _, rr := range m.Answer {
				if rr.Header().Rrtype == dns.TypeRRSIG {
					sigs++
				}
			}
			if (sigs > 0) != tt.rrsig {
				t.Errorf("%d RRSIGs in the answer, want them: %v\n%s", sigs, tt.rrsig, m)
			}
		})
	}
}

// auditLine is what the audit log must hold for a validation.
type auditLine map[string]any

func (l auditLine) str(k string) string {
	if v, ok := l[k]; ok && v != nil {
		return fmt.Sprint(v)
	}
	return ""
}

// readAudit waits, at most 10 s, for n lines in the audit log: it is
// written off the query path.
func readAudit(t *testing.T, path string, n int) []auditLine {
	t.Helper()
	var lines []auditLine
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines = lines[:0]
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var l auditLine
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					f.Close()
					t.Fatalf("audit line is not JSON: %v: %s", err, sc.Text())
				}
				lines = append(lines, l)
			}
			f.Close()
		}
		if len(lines) >= n || time.Now().After(deadline) {
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// oneOf reports whether got spells want as a name or a number (the audit
// log may write qtype and rcode either way).
func oneOf(got string, names ...string) bool {
	for _, n := range names {
		if strings.EqualFold(got, n) {
			return true
		}
	}
	return false
}

// TestDNSSECE2EAuditLog: with the cache off, each case is one validation
// and one audit line with the seed's fields: timestamp, qname, qtype,
// rcode, validation_status, signer_key_id, rrsig_ttl, signer, reason, ede.
func TestDNSSECE2EAuditLog(t *testing.T) {
	z, named := signedzones.Start(t)
	e := startSignedEdge(t, z, named.Addr, false)
	start := time.Now().Add(-time.Second)
	for _, c := range signedzones.Cases {
		e.ask(t, "udp", signedzones.Query(c, true, false, false))
	}
	lines := readAudit(t, e.audit, len(signedzones.Cases))
	byQuestion := make(map[string]auditLine)
	for _, l := range lines {
		byQuestion[dns.Fqdn(strings.ToLower(l.str("qname")))+"/"+l.str("qtype")] = l
	}
	for _, c := range signedzones.Cases {
		t.Run(c.String(), func(t *testing.T) {
			l, ok := byQuestion[c.String()]
			if !ok {
				l, ok = byQuestion[fmt.Sprintf("%s/%d", c.Name, c.Type)]
			}
			if !ok {
				t.Fatalf("no audit line for %s among %d lines", c, len(lines))
			}
			ts, err := time.Parse(time.RFC3339Nano, l.str("timestamp"))
			if err != nil || ts.Before(start) || ts.After(time.Now().Add(time.Second)) {
				t.Errorf("timestamp %q (%v), want RFC 3339 within the test", l.str("timestamp"), err)
			}
			if got := l.str("validation_status"); got != c.Verdict {
				t.Errorf("validation_status %q, want %q (reason %q)", got, c.Verdict, l.str("reason"))
			}
			if got := l.str("rcode"); !oneOf(got, dns.RcodeToString[c.Rcode], fmt.Sprint(c.Rcode)) {
				t.Errorf("rcode %q, want %s", got, dns.RcodeToString[c.Rcode])
			}
			ede := l.str("ede")
			switch {
			case c.EDE == signedzones.NoEDE && ede != "" && ede != "0":
				t.Errorf("ede %q, want none", ede)
			case c.EDE != signedzones.NoEDE && ede != fmt.Sprint(c.EDE):
				t.Errorf("ede %q, want %d", ede, c.EDE)
			}
			switch c.Verdict {
			case signedzones.Bogus:
				if l.str("reason") == "" {
					t.Error("bogus without a reason")
				}
			case signedzones.Secure:
				keys := z.Keys[c.Zone()]
				tag := l.str("signer_key_id")
				if !oneOf(tag, fmt.Sprint(keys[0].KeyTag()), fmt.Sprint(keys[1].KeyTag())) {
					t.Errorf("signer_key_id %q, want a key tag of %s (%d, %d)", tag, c.Zone(), keys[0].KeyTag(), keys[1].KeyTag())
				}
				if got := dns.Fqdn(strings.ToLower(l.str("signer"))); got != c.Zone() {
					t.Errorf("signer %q, want %s", got, c.Zone())
				}
				if c.Rcode == dns.RcodeSuccess && c.Type == dns.TypeA && l.str("rrsig_ttl") != "300" {
					t.Errorf("rrsig_ttl %q, want 300 (the zone's TTL)", l.str("rrsig_ttl"))
				}
			}
		})
	}
}

// TestDNSSECE2EReloadTrust: answers cached under one trust are never
// served under another. A tampered answer cached while validation is off
// is SERVFAIL once a reload turns validation on; a reload that changes
// only the audit log keeps the validated answers (served from the cache:
// no new audit line).
func TestDNSSECE2EReloadTrust(t *testing.T) {
	z, named := signedzones.Start(t)
	anchors, _ := json.Marshal(z.Anchors)
	dir := t.TempDir()
	conf := func(validate bool, audit string) *edge.Config {
		t.Helper()
		cfg, err := edge.Parse("dnssec.yaml", []byte(fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
upstreams:
  - {name: up, url: "udp://%s"}
dnssec:
  validate: %v
  trust_anchors: %s
  audit_log: {path: %q}
`, named.Addr, validate, anchors, filepath.Join(dir, audit))))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	srv, err := edge.New(conf(false, "a.jsonl"), edge.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	addr := srv.Addrs()["udp"][0].String()
	ask := func(name string) *dns.Msg {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		q.SetEdns0(1232, true)
		m, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(q, addr)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := ask("www.tampered.test."); m.Rcode != dns.RcodeSuccess {
		t.Fatalf("without validation: %s, want NOERROR", dns.RcodeToString[m.Rcode])
	}
	if err := srv.Reload(conf(true, "a.jsonl")); err != nil {
		t.Fatal(err)
	}
	if m := ask("www.tampered.test."); m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("after turning validation on: %s, want SERVFAIL (the answer cached unvalidated was served)", dns.RcodeToString[m.Rcode])
	}
	if m := ask("www.nsec.test."); m.Rcode != dns.RcodeSuccess || !m.AuthenticatedData {
		t.Fatalf("www.nsec.test.: %s AD=%v, want NOERROR AD=1", dns.RcodeToString[m.Rcode], m.AuthenticatedData)
	}
	if err := srv.Reload(conf(true, "b.jsonl")); err != nil {
		t.Fatal(err)
	}
	if m := ask("www.nsec.test."); m.Rcode != dns.RcodeSuccess || !m.AuthenticatedData {
		t.Fatalf("after a new audit log: %s AD=%v, want NOERROR AD=1", dns.RcodeToString[m.Rcode], m.AuthenticatedData)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "b.jsonl")); err == nil && len(b) > 0 {
		t.Errorf("a reload that changed only the audit log emptied the cache: validated again:\n%s", b)
	}
}
