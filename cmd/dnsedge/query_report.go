package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// queryReport is what dnsedge query prints: as JSON with -json, as
// dig-style text otherwise.
type queryReport struct {
	Server     string         `json:"server"`                  // @URL as given
	Protocol   string         `json:"protocol"`                // udp, tcp, tls, https, h3 or quic
	Address    string         `json:"address"`                 // the address that answered
	Family     string         `json:"family"`                  // ipv4 or ipv6
	Local      string         `json:"local_address,omitempty"` // the local end of a new TCP connection
	RetriedTCP bool           `json:"retried_over_tcp,omitempty"`
	Failed     []string       `json:"failed_addresses,omitempty"` // addresses tried first, and why they failed
	TLS        *tlsReport     `json:"tls,omitempty"`
	Timing     timingReport   `json:"timing"`
	Resume     *resumeReport  `json:"resume,omitempty"`
	ID         uint16         `json:"id"`
	Opcode     string         `json:"opcode"`
	Rcode      string         `json:"rcode"`
	Flags      []string       `json:"flags"`
	Question   []questionJSON `json:"question"`
	Answer     []rrJSON       `json:"answer"`
	Authority  []rrJSON       `json:"authority"`
	Additional []rrJSON       `json:"additional"` // without the OPT record
	EDNS       *ednsReport    `json:"edns,omitempty"`
	EDE        []edeReport    `json:"ede,omitempty"`
	Size       int            `json:"size"` // bytes of the reply as packed

	msg *dns.Msg
}

type tlsReport struct {
	Version     string `json:"version"`
	CipherSuite string `json:"cipher_suite"`
	ALPN        string `json:"alpn"`
	ServerName  string `json:"server_name"` // the name the certificate was verified for
	Resumed     bool   `json:"resumed"`
}

// timingReport: ConnectMS is when a new TCP connection (tcp, tls, https)
// was established and HandshakeMS when the TLS or QUIC handshake of a new
// connection completed, both counted from the start of the query; each is
// absent when no such step was made.
type timingReport struct {
	ConnectMS   *float64 `json:"connect_ms,omitempty"`
	HandshakeMS *float64 `json:"handshake_ms,omitempty"`
	TotalMS     float64  `json:"total_ms"`
}

// resumeReport is the -resume query: a second connection to the same
// address, and whether its handshake resumed the first one's session.
type resumeReport struct {
	Resumed bool         `json:"resumed"`
	Rcode   string       `json:"rcode"`
	Timing  timingReport `json:"timing"`
}

type questionJSON struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Class string `json:"class"`
}

type rrJSON struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Class string `json:"class"`
	TTL   uint32 `json:"ttl"`
	Data  string `json:"data"`
}

type ednsReport struct {
	Version uint8  `json:"version"`
	UDPSize uint16 `json:"udp_size"`
	DO      bool   `json:"do"`
}

type edeReport struct {
	Code uint16 `json:"code"`
	Name string `json:"name"`
	Text string `json:"text,omitempty"`
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func timingOf(ex *exchange) timingReport {
	t := timingReport{TotalMS: millis(ex.total)}
	if ex.handshake != nil {
		h := millis(ex.handshake.after)
		t.HandshakeMS = &h
	}
	if ex.connect != nil {
		c := millis(ex.connect.after)
		t.ConnectMS = &c
	}
	return t
}

func newReport(o queryOpts, ex *exchange) *queryReport {
	r := ex.reply
	rep := &queryReport{
		Server: o.server, Protocol: ex.path.Proto, Address: hostPortOf(ex.path.Addr), Family: ex.family.String(),
		RetriedTCP: ex.tcp, Failed: ex.failed, Timing: timingOf(ex),
		ID: r.Id, Opcode: dns.OpcodeToString[r.Opcode], Rcode: rcodeString(r.Rcode), Flags: flagsOf(r),
		Question: []questionJSON{}, Answer: rrsJSON(r.Answer), Authority: rrsJSON(r.Ns), Additional: []rrJSON{},
		msg: r,
	}
	if ex.connect != nil {
		rep.Local = hostPortOf(ex.connect.local)
	}
	if o.http3 && rep.Protocol == "https" {
		rep.Protocol = "h3"
	}
	if wire, err := r.Pack(); err == nil {
		rep.Size = len(wire)
	}
	for _, q := range r.Question {
		rep.Question = append(rep.Question, questionJSON{Name: q.Name, Type: dns.Type(q.Qtype).String(), Class: dns.Class(q.Qclass).String()})
	}
	for _, rr := range r.Extra {
		if opt, ok := rr.(*dns.OPT); ok {
			rep.EDNS = &ednsReport{Version: opt.Version(), UDPSize: opt.UDPSize(), DO: opt.Do()}
			for _, o := range opt.Option {
				if e, ok := o.(*dns.EDNS0_EDE); ok {
					rep.EDE = append(rep.EDE, edeReport{Code: e.InfoCode, Name: edeName(e.InfoCode), Text: e.ExtraText})
				}
			}
			continue
		}
		rep.Additional = append(rep.Additional, rrsJSON([]dns.RR{rr})...)
	}
	if h := ex.handshake; h != nil {
		rep.TLS = tlsOf(h.state)
		rep.TLS.ServerName = o.verifyName
	}
	if again := ex.resume; again != nil {
		rep.Resume = &resumeReport{Rcode: rcodeString(again.reply.Rcode), Timing: timingOf(again)}
		rep.Resume.Resumed = again.handshake != nil && again.handshake.state.DidResume
	}
	return rep
}

func tlsOf(cs tls.ConnectionState) *tlsReport {
	return &tlsReport{
		Version: tls.VersionName(cs.Version), CipherSuite: tls.CipherSuiteName(cs.CipherSuite),
		ALPN: cs.NegotiatedProtocol, ServerName: cs.ServerName, Resumed: cs.DidResume,
	}
}

func rcodeString(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

func edeName(code uint16) string {
	if s, ok := dns.ExtendedErrorCodeToString[code]; ok {
		return s
	}
	return fmt.Sprintf("code %d", code)
}

// flagsOf lists the header flags set, in dig's order and spelling.
func flagsOf(m *dns.Msg) []string {
	flags := []string{}
	for _, f := range []struct {
		name string
		set  bool
	}{{"qr", m.Response}, {"aa", m.Authoritative}, {"tc", m.Truncated}, {"rd", m.RecursionDesired},
		{"ra", m.RecursionAvailable}, {"ad", m.AuthenticatedData}, {"cd", m.CheckingDisabled}} {
		if f.set {
			flags = append(flags, f.name)
		}
	}
	return flags
}

// rrsJSON returns records with their data in zone-file presentation.
func rrsJSON(rrs []dns.RR) []rrJSON {
	out := []rrJSON{}
	for _, rr := range rrs {
		h := rr.Header()
		out = append(out, rrJSON{
			Name: h.Name, Type: dns.Type(h.Rrtype).String(), Class: dns.Class(h.Class).String(), TTL: h.Ttl,
			Data: strings.TrimPrefix(rr.String(), h.String()),
		})
	}
	return out
}

func writeJSON(w io.Writer, rep *queryReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeText prints the reply as dig does (header, flags, the OPT pseudo
// section, question, answer, authority and additional sections), then
// what dig does not say: the address and family that answered, the TLS
// session, the Extended DNS Errors and the timings.
func writeText(w io.Writer, rep *queryReport) error {
	var b strings.Builder
	// dig's header line; miekg/dns leaves out its marker.
	b.WriteString(strings.Replace(rep.msg.String(), ";; opcode:", ";; ->>HEADER<<- opcode:", 1))
	fmt.Fprintf(&b, "\n;; SERVER: %s (%s, %s)", rep.Address, rep.Protocol, rep.Family)
	if rep.Local != "" {
		fmt.Fprintf(&b, " from %s", rep.Local)
	}
	if rep.RetriedTCP {
		b.WriteString(", truncated over UDP and asked again over TCP")
	}
	b.WriteString("\n")
	for _, f := range rep.Failed {
		fmt.Fprintf(&b, ";; FAILED FIRST: %s\n", f)
	}
	if t := rep.TLS; t != nil {
		fmt.Fprintf(&b, ";; TLS: %s, %s, ALPN %q, server name %q, resumed: %s\n", t.Version, t.CipherSuite, t.ALPN, t.ServerName, yesNo(t.Resumed))
	}
	for _, e := range rep.EDE {
		fmt.Fprintf(&b, ";; EDE: %d (%s)", e.Code, e.Name)
		if e.Text != "" {
			fmt.Fprintf(&b, ": %s", e.Text)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, ";; TIMING: %s\n", timingText(rep.Timing))
	if r := rep.Resume; r != nil {
		fmt.Fprintf(&b, ";; RESUME: a new connection resumed the TLS session: %s (%s, %s)\n", yesNo(r.Resumed), r.Rcode, timingText(r.Timing))
	}
	fmt.Fprintf(&b, ";; MSG SIZE  rcvd: %d\n", rep.Size)
	_, err := io.WriteString(w, b.String())
	return err
}

func timingText(t timingReport) string {
	s := fmt.Sprintf("total %.3f ms", t.TotalMS)
	if t.HandshakeMS != nil {
		s = fmt.Sprintf("handshake done at %.3f ms, %s", *t.HandshakeMS, s)
	}
	if t.ConnectMS != nil {
		s = fmt.Sprintf("connected at %.3f ms, %s", *t.ConnectMS, s)
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
