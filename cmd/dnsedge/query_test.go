package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

const queryZone = `$ORIGIN test.example.
@      60 IN SOA ns hostmaster 1 3600 600 86400 30
www    60 IN A 192.0.2.10
multi  60 IN A 192.0.2.21
multi  60 IN A 192.0.2.22
multi  60 IN A 192.0.2.23
multi  60 IN AAAA 2001:db8::21
multi  60 IN TXT "one" "two"
`

// sixListeners serves UDP, TCP, DoT, DoH over HTTP/2 and HTTP/3 (one
// port) and DoQ on loopback, with a self-signed certificate that carries
// 127.0.0.1, so URLs may name the address.
func sixListeners(upstream string) string {
	return fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: tcp, address: "127.0.0.1:0"}
  - {proto: dot, address: "127.0.0.1:0", server_name: dns.test}
  - {proto: doh, address: "127.0.0.1:0", http3: true}
  - {proto: doq, address: "127.0.0.1:0", server_name: dns.test}
tls:
  self_signed: true
  hosts: [dns.test, 127.0.0.1]
upstreams:
  - {name: up, url: "udp://%s"}
log:
  level: info
`, upstream)
}

// runQueryCmd runs dnsedge query in process.
func runQueryCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = query(args, &out, &errb)
	return code, out.String(), errb.String()
}

// rrSet is a reply section as a set of "name class type rdata", TTLs left
// out: a cached answer's TTL goes down between two queries.
func rrSet(t *testing.T, lines []string) []string {
	t.Helper()
	var set []string
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		rr.Header().Ttl = 0
		set = append(set, rr.String())
	}
	slices.Sort(set)
	return slices.Compact(set)
}

// kdigAnswer returns the records of kdig's answer section.
func kdigAnswer(out string) []string {
	var lines []string
	in := false
	for l := range strings.Lines(out) {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, ";; ANSWER SECTION"):
			in = true
		case in && (l == "" || strings.HasPrefix(l, ";;")):
			in = false
		case in:
			lines = append(lines, l)
		}
	}
	return lines
}

// TestQuery asks a dnsedge serving all six listeners with dnsedge query
// over each scheme, compares the answers with kdig's over udp, tcp, tls
// and https, resumes TLS sessions, and checks the errors of bad command
// lines and of a server that does not answer.
func TestQuery(t *testing.T) {
	kdig := tool(t, "kdig")
	up := transporttest.StartFault(t, queryZone)
	p := startServe(t, writeFile(t, "dnsedge.yaml", sixListeners(up.AddrV4().String())))
	udp, tcp, dot, doh, doq := p.addr("udp"), p.addr("tcp"), p.addr("dot"), p.addr("doh"), p.addr("doq")
	schemes := []struct {
		name, url, proto, listener, alpn string
		flags                            []string
		kdig                             []string // nil: kdig does not speak it
	}{
		{"udp", "udp://" + udp, "udp", udp, "", nil, []string{}},
		{"tcp", "tcp://" + tcp, "tcp", tcp, "", nil, []string{"+tcp"}},
		{"tls", "tls://" + dot, "tls", dot, "dot", []string{"-ca", p.ca}, []string{"+tls", "+tls-ca=" + p.ca, "+tls-hostname=dns.test"}},
		{"tls with a name", "tls://" + dot, "tls", dot, "dot", []string{"-ca", p.ca, "-tls-name", "dns.test"}, nil},
		{"https", "https://" + doh + "/dns-query", "https", doh, "h2", []string{"-ca", p.ca}, []string{"+https", "+tls-ca=" + p.ca}},
		{"h3", "h3://" + doh, "h3", doh, "h3", []string{"-ca", p.ca}, nil},
		{"quic", "quic://" + doq, "quic", doq, "doq", []string{"-ca", p.ca, "-tls-name", "dns.test"}, nil},
	}
	questions := [][2]string{{"www.test.example", "A"}, {"multi.test.example", "A"}, {"multi.test.example", "TXT"}}
	for _, s := range schemes {
		for _, qn := range questions {
			t.Run(s.name+" "+qn[0]+"/"+qn[1], func(t *testing.T) {
				args := append(slices.Clone(s.flags), "-json", "@"+s.url, qn[0], qn[1])
				code, out, errs := runQueryCmd(args...)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errs)
				}
				var rep queryReport
				if err := json.Unmarshal([]byte(out), &rep); err != nil {
					t.Fatalf("-json output does not parse: %v\n%s", err, out)
				}
				if rep.Rcode != "NOERROR" || len(rep.Answer) == 0 || rep.Protocol != s.proto || rep.Address != s.listener || rep.Family != "ipv4" {
					t.Fatalf("report %+v", rep)
				}
				if encrypted := s.proto != "udp" && s.proto != "tcp"; encrypted != (rep.TLS != nil) || encrypted != (rep.Timing.HandshakeMS != nil) {
					t.Errorf("tls %+v, handshake timing %v on %s", rep.TLS, rep.Timing.HandshakeMS, s.proto)
				} else if rep.TLS != nil && rep.TLS.ALPN != s.alpn {
					t.Errorf("ALPN %q over %s, want %q", rep.TLS.ALPN, s.proto, s.alpn)
				}
				// A new TCP connection: its connect time and local end.
				if stream := s.proto == "tcp" || s.proto == "tls" || s.proto == "https"; stream != (rep.Timing.ConnectMS != nil) || stream != strings.HasPrefix(rep.Local, "127.0.0.1:") {
					t.Errorf("connect timing %v, local address %q over %s", rep.Timing.ConnectMS, rep.Local, s.proto)
				}
				var mine []string
				for _, rr := range rep.Answer {
					mine = append(mine, fmt.Sprintf("%s %d %s %s %s", rr.Name, rr.TTL, rr.Class, rr.Type, rr.Data))
				}
				if s.kdig == nil {
					return
				}
				h, port := hostPort(s.listener)
				theirs := kdigAnswer(dig(t, kdig, append([]string{"@" + h, "-p", port, "+time=3", "+retry=0", qn[0], qn[1]}, s.kdig...)...))
				if a, b := rrSet(t, mine), rrSet(t, theirs); !slices.Equal(a, b) {
					t.Errorf("dnsedge query answers\n%s\nkdig answers\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
				}
			})
		}
	}

	t.Run("dig-style text", func(t *testing.T) {
		code, out, errs := runQueryCmd("-ca", p.ca, "@tls://"+dot, "multi.test.example")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		for _, want := range []string{";; ->>HEADER<<-", "status: NOERROR", ";; flags: qr rd ra", ";; QUESTION SECTION:", ";; ANSWER SECTION:", "192.0.2.22",
			";; SERVER: " + dot + " (tls, ipv4) from 127.0.0.1:", ";; TLS: TLS 1.3", `ALPN "dot"`, `server name "127.0.0.1"`, ";; TIMING: connected at", ", handshake done at"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in\n%s", want, out)
			}
		}
	})

	for _, s := range []string{"tls://" + dot, "https://" + doh, "h3://" + doh, "quic://" + doq} {
		t.Run("resume "+s, func(t *testing.T) {
			code, out, errs := runQueryCmd("-json", "-resume", "-ca", p.ca, "-tls-name", "dns.test", "@"+s, "www.test.example")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			var rep queryReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.TLS == nil || rep.TLS.Resumed || rep.Resume == nil || !rep.Resume.Resumed || rep.Resume.Rcode != "NOERROR" {
				t.Fatalf("first tls %+v, resume %+v", rep.TLS, rep.Resume)
			}
		})
	}

	t.Run("certificate not trusted", func(t *testing.T) {
		code, _, errs := runQueryCmd("@tls://"+dot, "www.test.example")
		if code != 1 || !strings.Contains(errs, "certificate") || strings.Count(errs, "\n") != 1 {
			t.Fatalf("exit %d: %q", code, errs)
		}
		if code, _, errs := runQueryCmd("-insecure", "@tls://"+dot, "www.test.example"); code != 0 {
			t.Fatalf("-insecure: exit %d: %s", code, errs)
		}
	})
	t.Run("extended DNS error", func(t *testing.T) {
		up.Stop()
		code, out, errs := runQueryCmd("-json", "-timeout", "10s", "@udp://"+udp, "uncached.test.example")
		var rep queryReport
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
			t.Fatalf("exit %d: %s%s", code, errs, out)
		}
		if rep.Rcode != "SERVFAIL" || len(rep.EDE) == 0 || rep.EDE[0].Name == "" {
			t.Fatalf("with the upstream stopped: rcode %s, EDE %+v", rep.Rcode, rep.EDE)
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		code, _, errs := runQueryCmd("-timeout", "2s", "@tcp://"+freeAddr(t), "www.test.example")
		if code != 1 || !strings.Contains(errs, "refused") || strings.Count(errs, "\n") != 1 {
			t.Fatalf("exit %d: %q", code, errs)
		}
	})
}

// TestQueryArgs: a bad command line is one clear line and exit 2; a good
// one parses to what it says.
func TestQueryArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // the error's text, or for a good line "scheme host/addr port type name class"
	}{
		{"udp", []string{"@udp://192.0.2.1", "example.org"}, "udp 192.0.2.1 53 A example.org."},
		{"bare address is udp", []string{"@192.0.2.1:5353", "example.org", "aaaa"}, "udp 192.0.2.1 5353 AAAA example.org."},
		{"tls default port", []string{"@tls://dns.example", "example.org", "-type", "TXT"}, "tls dns.example 853 TXT example.org."},
		{"h3 is https", []string{"@h3://[2001:db8::1]", "example.org"}, "https 2001:db8::1 443 A example.org."},
		{"flags after", []string{"@quic://dns.example", "example.org", "TYPE65", "-json", "-4"}, "quic dns.example 853 HTTPS example.org."},
		{"scheme in capitals", []string{"@TLS://dns.example", "x"}, "tls dns.example 853 A x."},
		{"unknown scheme", []string{"@ftp://dns.example", "x"}, `unknown scheme "ftp"`},
		{"no host", []string{"@tls://", "x"}, "has no host"},
		{"query in url", []string{"@https://dns.example/dns-query?x=1", "x"}, "query and fragment are not allowed"},
		{"bad port", []string{"@udp://192.0.2.1:99999", "x"}, "bad port"},
		{"path on tls", []string{"@tls://dns.example/p", "x"}, "only scheme://host:port"},
		{"empty server", []string{"@", "x"}, "empty server"},
		{"bad type", []string{"@udp://192.0.2.1", "x", "BOGUS"}, `unknown type "BOGUS"`},
		{"type twice", []string{"x", "A", "-type", "MX"}, "type given twice"},
		{"no name", []string{"@udp://192.0.2.1"}, "no name to query"},
		{"bad name", []string{"a..b"}, "not a domain name"},
		{"extra argument", []string{"x", "A", "more"}, `unexpected argument "more"`},
		{"tls flag on udp", []string{"-insecure", "@udp://192.0.2.1", "x"}, "apply to tls, https, h3 and quic"},
		{"-4 and -6", []string{"-4", "-6", "x"}, "exclude each other"},
		{"-6 on an IPv4 address", []string{"-6", "@udp://192.0.2.1", "x"}, "is an ipv4 address"},
		{"timeout", []string{"-timeout", "0s", "x"}, "must be positive"},
		{"class IN by default", []string{"x", "TXT"}, "TXT x. IN"},
		{"class after type", []string{"version.bind", "TXT", "CH"}, "TXT version.bind. CH"},
		{"class before type", []string{"version.bind", "chaos", "txt"}, "TXT version.bind. CH"},
		{"class alone", []string{"version.bind", "CH"}, "A version.bind. CH"},
		{"class flag", []string{"-class", "CHAOS", "version.bind", "TXT"}, "TXT version.bind. CH"},
		{"class number", []string{"x", "CLASS254"}, "A x. NONE"},
		{"hesiod", []string{"x", "TXT", "hs"}, "TXT x. HS"},
		{"ANY is the type", []string{"x", "ANY"}, "ANY x. IN"},
		{"bad class", []string{"-class", "XX", "x"}, `unknown class "XX"`},
		{"class twice", []string{"-class", "IN", "x", "CH"}, "class given twice"},
		{"two classes", []string{"x", "CH", "IN"}, `unexpected argument "IN"`},
		{"two types", []string{"x", "A", "TXT"}, `unexpected argument "TXT"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseQueryArgs(tt.args, io.Discard)
			var got string
			if err != nil {
				got = err.Error()
				if strings.Contains(got, "\n") {
					t.Errorf("error of more than one line: %q", got)
				}
				code, _, errs := runQueryCmd(tt.args...)
				if code != 2 || !strings.HasPrefix(errs, "dnsedge query: ") || strings.Count(errs, "\n") != 1 {
					t.Errorf("exit %d, stderr %q", code, errs)
				}
			} else {
				host := o.ep.Host
				if host == "" && o.ep.Addr.IsValid() {
					host = o.ep.Addr.String()
				}
				got = fmt.Sprintf("%s %s %d %s %s %s", o.ep.Scheme, host, o.ep.Port, dns.Type(o.qtype), o.name, dns.Class(o.qclass))
			}
			if !strings.Contains(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestQueryReport: EDE options are decoded, the OPT record stays out of
// the additional section.
func TestQueryReport(t *testing.T) {
	m := new(dns.Msg)
	m.SetQuestion("blocked.example.", dns.TypeA)
	m.Response, m.Rcode = true, dns.RcodeRefused
	m.SetEdns0(1232, true)
	opt := m.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeProhibited, ExtraText: "by policy"})
	ex := &exchange{path: transport.PathID{Proto: "udp", Addr: netipAddrPort(t, "192.0.2.1:53")}, family: transport.IPv4, reply: m}
	rep := newReport(queryOpts{server: "udp://192.0.2.1"}, ex)
	if len(rep.EDE) != 1 || rep.EDE[0].Code != 18 || rep.EDE[0].Name != "Prohibited" || rep.EDE[0].Text != "by policy" ||
		rep.Rcode != "REFUSED" || len(rep.Additional) != 0 || rep.EDNS == nil || !rep.EDNS.DO {
		t.Fatalf("report %+v", rep)
	}
	var b strings.Builder
	if err := writeText(&b, rep); err != nil || !strings.Contains(b.String(), ";; EDE: 18 (Prohibited): by policy") {
		t.Fatalf("%v\n%s", err, b.String())
	}
}

// FuzzQueryArgs: any command line parses or gives one line of error.
func FuzzQueryArgs(f *testing.F) {
	f.Add("@tls://dns.example:853", "example.org", "AAAA")
	f.Add("@h3://[::1]/dns-query", "x", "TYPE65")
	f.Add("-4", "@192.0.2.1", "a")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		o, err := parseQueryArgs([]string{a, b, c}, io.Discard)
		if err != nil {
			return
		}
		if _, ok := dns.IsDomainName(o.name); !ok || !dns.IsFqdn(o.name) {
			t.Fatalf("accepted name %q", o.name)
		}
		if o.server != "" && !querySchemes[o.ep.Scheme] {
			t.Fatalf("accepted scheme %q", o.ep.Scheme)
		}
	})
}

func netipAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestQueryClass asks a dnsedge running in this process for version.bind
// in class CH, as the CLASS argument and as -class: it answers its
// version, where the same question in class IN is forwarded and gets
// none.
func TestQueryClass(t *testing.T) {
	up := transporttest.StartFault(t, queryZone)
	cfg, err := edge.Parse("dnsedge.yaml", []byte(fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
upstreams:
  - {name: up, url: "udp://%s"}
`, up.AddrV4())))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := edge.New(cfg, edge.Options{Logger: slog.New(slog.DiscardHandler), Version: "query-class-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addrs()["udp"][0].String()
	for _, tt := range []struct {
		name    string
		args    []string
		version string // the TXT answered; "" for none
	}{
		{"CH argument", []string{"version.bind", "TXT", "CH"}, "query-class-test"},
		{"CHAOS before the type", []string{"version.bind", "CHAOS", "TXT"}, "query-class-test"},
		{"-class flag", []string{"-class", "ch", "version.bind", "TXT"}, "query-class-test"},
		{"class IN", []string{"version.bind", "TXT"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runQueryCmd(append([]string{"-json", "@udp://" + addr}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			var rep queryReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("-json output does not parse: %v\n%s", err, out)
			}
			var got string
			for _, rr := range rep.Answer {
				if rr.Type == "TXT" {
					got = rr.Data
				}
			}
			if tt.version == "" {
				if got != "" || rep.Rcode == "NOERROR" && len(rep.Answer) > 0 {
					t.Fatalf("class IN answered %s %q", rep.Rcode, got)
				}
				return
			}
			if len(rep.Question) != 1 || rep.Question[0].Class != "CH" || rep.Rcode != "NOERROR" || got != `"`+tt.version+`"` {
				t.Fatalf("question %+v: %s, TXT %s", rep.Question, rep.Rcode, got)
			}
		})
	}
}
