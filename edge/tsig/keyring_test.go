package tsig

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

var (
	secretA = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	secretB = base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
)

func testKeyring(t *testing.T, clock clockwork.Clock) *Keyring {
	t.Helper()
	kr, err := New(Config{Keys: []KeySpec{
		{Name: "a.key.", Secret: Secret(secretA)},
		{Name: "b.key", Algorithm: "hmac-sha512", Secret: Secret(secretB)},
		{Name: "old.key.", Algorithm: "hmac-sha1", Secret: Secret(secretA)},
	}}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// signedQuery returns a query for name signed as a client would,
// with miekg/dns's own TSIG code.
func signedQuery(t *testing.T, keyName, alg, secret string, at time.Time) (*dns.Msg, []byte) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion("www.example.", dns.TypeA)
	q.SetEdns0(1232, false)
	q.SetTsig(keyName, alg, 300, at.Unix())
	wire, _, err := dns.TsigGenerate(q, secret, "", false)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(wire); err != nil {
		t.Fatal(err)
	}
	return m, wire
}

func TestVerify(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name   string
		key    string
		alg    string
		secret string
		signed time.Time
		flip   bool // flip a bit of the question
		want   pipeline.TSIGState
	}{
		{name: "verified sha256", key: "a.key.", alg: dns.HmacSHA256, secret: secretA, signed: t0, want: pipeline.TSIGVerified},
		{name: "verified sha512", key: "b.key.", alg: dns.HmacSHA512, secret: secretB, signed: t0, want: pipeline.TSIGVerified},
		{name: "verified sha1", key: "old.key.", alg: dns.HmacSHA1, secret: secretA, signed: t0, want: pipeline.TSIGVerified},
		{name: "key name case", key: "A.Key.", alg: dns.HmacSHA256, secret: secretA, signed: t0, want: pipeline.TSIGVerified},
		{name: "inside fudge", key: "a.key.", alg: dns.HmacSHA256, secret: secretA, signed: t0.Add(-300 * time.Second), want: pipeline.TSIGVerified},
		{name: "ahead inside fudge", key: "a.key.", alg: dns.HmacSHA256, secret: secretA, signed: t0.Add(300 * time.Second), want: pipeline.TSIGVerified},
		{name: "late", key: "a.key.", alg: dns.HmacSHA256, secret: secretA, signed: t0.Add(-301 * time.Second), want: pipeline.TSIGBadTime},
		{name: "early", key: "a.key.", alg: dns.HmacSHA256, secret: secretA, signed: t0.Add(time.Hour), want: pipeline.TSIGBadTime},
		{name: "wrong secret", key: "a.key.", alg: dns.HmacSHA256, secret: secretB, signed: t0, want: pipeline.TSIGBadSig},
		{name: "wrong secret and time", key: "a.key.", alg: dns.HmacSHA256, secret: secretB, signed: t0.Add(time.Hour), want: pipeline.TSIGBadSig},
		{name: "tampered", key: "a.key.", alg: dns.HmacSHA256, secret: secretA, signed: t0, flip: true, want: pipeline.TSIGBadSig},
		{name: "unknown key", key: "c.key.", alg: dns.HmacSHA256, secret: secretA, signed: t0, want: pipeline.TSIGBadKey},
		{name: "wrong algorithm", key: "a.key.", alg: dns.HmacSHA512, secret: secretA, signed: t0, want: pipeline.TSIGBadKey},
	}
	kr := testKeyring(t, clockwork.NewFakeClockAt(t0))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, wire := signedQuery(t, tt.key, tt.alg, tt.secret, tt.signed)
			if tt.flip {
				wire[13] ^= 0x20 // the first letter of the question name
			}
			orig := string(wire)
			got := kr.Verify(wire, m, "")
			if got.State != tt.want {
				t.Errorf("state %s, want %s", got.State, tt.want)
			}
			if string(wire) != orig {
				t.Error("Verify changed the wire bytes")
			}
		})
	}
	t.Run("unsigned", func(t *testing.T) {
		q := new(dns.Msg)
		q.SetQuestion("www.example.", dns.TypeA)
		wire, _ := q.Pack()
		if got := kr.Verify(wire, q, ""); got.State != pipeline.TSIGNone {
			t.Errorf("state %s, want none", got.State)
		}
	})
	t.Run("no wire form", func(t *testing.T) {
		m, _ := signedQuery(t, "a.key.", dns.HmacSHA256, secretA, t0)
		if got := kr.Verify(nil, m, ""); got.State != pipeline.TSIGBadSig {
			t.Errorf("state %s, want badsig", got.State)
		}
	})
}

func TestSignQueryVerifyReply(t *testing.T) {
	now := time.Now()
	clock := clockwork.NewFakeClockAt(now)
	kr := testKeyring(t, clock)
	q := new(dns.Msg)
	q.SetQuestion("www.example.", dns.TypeA)
	wire, mac, err := kr.SignQuery(q, "b.key")
	if err != nil {
		t.Fatal(err)
	}
	if q.IsTsig() != nil {
		t.Fatal("SignQuery changed the query")
	}
	// The other side, with miekg/dns's own code and clock.
	if err := dns.TsigVerify(wire, secretB, "", false); err != nil {
		t.Fatalf("peer cannot verify the signed query: %v", err)
	}
	// The peer answers, chaining the query's MAC.
	in := new(dns.Msg)
	if err := in.Unpack(wire); err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	r.SetReply(in)
	r.Answer = append(r.Answer, mustRR(t, "www.example. 60 IN A 192.0.2.1"))
	r.SetTsig("b.key.", dns.HmacSHA512, 300, now.Unix())
	rwire, _, err := dns.TsigGenerate(r, secretB, mac, false)
	if err != nil {
		t.Fatal(err)
	}
	parsed := new(dns.Msg)
	if err := parsed.Unpack(rwire); err != nil {
		t.Fatal(err)
	}
	if err := kr.VerifyReply(rwire, parsed, "b.key.", mac); err != nil {
		t.Errorf("good reply: %v", err)
	}
	if err := kr.VerifyReply(rwire, parsed, "b.key.", strings.Repeat("00", 64)); err == nil {
		t.Error("reply verified over another request MAC")
	}
	if err := kr.VerifyReply(rwire, parsed, "a.key.", mac); err == nil {
		t.Error("reply verified for another key")
	}
	bad := append([]byte(nil), rwire...)
	bad[len(r.Question[0].Name)+30] ^= 1 // inside the answer's RDATA
	if err := kr.VerifyReply(bad, parsed, "b.key.", mac); err == nil {
		t.Error("tampered reply verified")
	}
	r.Extra = nil
	plain, _ := r.Pack()
	if err := kr.VerifyReply(plain, r, "b.key.", mac); err == nil {
		t.Error("unsigned reply verified")
	}
	clock.Advance(301 * time.Second)
	if err := kr.VerifyReply(rwire, parsed, "b.key.", mac); err == nil {
		t.Error("reply verified outside the fudge window")
	}
	if _, _, err := kr.SignQuery(q, "nope."); err == nil {
		t.Error("signed with a key the keyring does not hold")
	}
}

func mustRR(t *testing.T, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

// serve runs the stage over a handler answering one A record, the way a
// listener would, and returns the packed reply.
func serve(t *testing.T, s *Stage, req *pipeline.Request, src pipeline.Source) (*dns.Msg, []byte) {
	t.Helper()
	h := s.Middleware(pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		m.Extra = nil
		m.Answer = append(m.Answer, mustRR(t, "www.example. 60 IN A 192.0.2.1"))
		req.Outcome.Source = src
		return m, nil
	}))
	m, err := h.ServeDNS(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	m.Id = req.Msg.Id
	if req.Signer == nil {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return m, b
	}
	b, err := req.Signer.Sign(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > len(mustPack(t, m))+req.Signer.Overhead() {
		t.Errorf("signed reply of %d bytes is over the %d bytes the overhead allows", len(b), len(mustPack(t, m))+req.Signer.Overhead())
	}
	out := new(dns.Msg)
	if err := out.Unpack(b); err != nil {
		t.Fatal(err)
	}
	return out, b
}

func mustPack(t *testing.T, m *dns.Msg) []byte {
	c := *m
	c.Extra = stripTSIG(m.Extra)
	b, err := c.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStage(t *testing.T) {
	now := time.Now()
	clock := clockwork.NewFakeClockAt(now)
	kr := testKeyring(t, clock)
	m := NewMetrics()
	s := NewStage(kr, m, func(req *pipeline.Request) bool { return req.RequireTSIG })
	tests := []struct {
		name     string
		key      string
		secret   string
		signed   time.Time
		flip     bool
		require  bool
		unsigned bool
		src      pipeline.Source
		rcode    int
		tsigErr  uint16
		state    pipeline.TSIGState
		macSize  bool // the reply's TSIG carries a MAC
	}{
		{name: "verified", key: "a.key.", secret: secretA, signed: now, rcode: dns.RcodeSuccess, state: pipeline.TSIGVerified, macSize: true},
		{name: "badsig", key: "a.key.", secret: secretB, signed: now, rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadSig, state: pipeline.TSIGBadSig},
		{name: "badtime", key: "a.key.", secret: secretA, signed: now.Add(-time.Hour), rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadTime, state: pipeline.TSIGBadTime, macSize: true},
		{name: "badkey answered locally", key: "c.key.", secret: secretA, signed: now, src: pipeline.SourceZone, rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadKey, state: pipeline.TSIGBadKey},
		{name: "badkey from cache", key: "c.key.", secret: secretA, signed: now, src: pipeline.SourceCache, rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadKey, state: pipeline.TSIGBadKey},
		{name: "badkey relayed from upstream", key: "c.key.", secret: secretA, signed: now, src: pipeline.SourceUpstream, rcode: dns.RcodeSuccess, state: pipeline.TSIGBadKey},
		{name: "unsigned where required", unsigned: true, require: true, rcode: dns.RcodeRefused, state: pipeline.TSIGRequired},
		{name: "unsigned", unsigned: true, rcode: dns.RcodeSuccess, state: pipeline.TSIGNone},
		{name: "signed where required", key: "a.key.", secret: secretA, signed: now, require: true, rcode: dns.RcodeSuccess, state: pipeline.TSIGVerified, macSize: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q *dns.Msg
			var wire []byte
			if tt.unsigned {
				q = new(dns.Msg)
				q.SetQuestion("www.example.", dns.TypeA)
				wire, _ = q.Pack()
			} else {
				q, wire = signedQuery(t, tt.key, dns.HmacSHA256, tt.secret, tt.signed)
			}
			req := &pipeline.Request{Msg: q, Wire: wire, RequireTSIG: tt.require}
			r, rwire := serve(t, s, req, tt.src)
			if req.TSIG != tt.state {
				t.Errorf("state %s, want %s", req.TSIG, tt.state)
			}
			if r.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
			rt := r.IsTsig()
			signedReply := !tt.unsigned && !(tt.state == pipeline.TSIGBadKey && tt.src == pipeline.SourceUpstream)
			if !signedReply {
				if rt != nil {
					t.Errorf("reply carries a TSIG: %v", rt)
				}
				return
			}
			if rt == nil {
				t.Fatal("reply has no TSIG")
			}
			if rt.Error != tt.tsigErr {
				t.Errorf("TSIG error %s, want %s", dns.RcodeToString[int(rt.Error)], dns.RcodeToString[int(tt.tsigErr)])
			}
			if (rt.MACSize > 0) != tt.macSize {
				t.Errorf("MAC size %d, want a MAC: %v", rt.MACSize, tt.macSize)
			}
			if !tt.macSize {
				return
			}
			// The client checks the reply against its query's MAC.
			err := kr.VerifyReply(rwire, r, tt.key, q.IsTsig().MAC)
			if tt.tsigErr == dns.RcodeBadTime {
				if rt.TimeSigned != q.IsTsig().TimeSigned || rt.OtherData != time48(uint64(now.Unix())) {
					t.Errorf("BADTIME reply: time signed %d other data %s, want the query's %d and the server's %d",
						rt.TimeSigned, rt.OtherData, q.IsTsig().TimeSigned, now.Unix())
				}
				// Signed over the query MAC, with the query's time:
				// miekg/dns refuses to verify NOTAUTH messages, so
				// sign the same body the same way and compare.
				body := r.Copy()
				body.Extra = body.Extra[:len(body.Extra)-1]
				want := *rt
				want.MAC, want.MACSize = "", 0
				body.Extra = append(body.Extra, &want)
				_, mac, err := dns.TsigGenerate(body, secretA, q.IsTsig().MAC, false)
				if err != nil || mac != rt.MAC {
					t.Errorf("BADTIME reply MAC %s, want %s (%v)", rt.MAC, mac, err)
				}
				return
			}
			if err != nil {
				t.Errorf("reply does not verify: %v", err)
			}
			// miekg/dns's own check, on the system clock, agrees.
			if err := dns.TsigVerify(rwire, secretA, q.IsTsig().MAC, false); err != nil {
				t.Errorf("miekg/dns does not verify the reply: %v", err)
			}
		})
	}
	// Each query above counted once under its result; plain unsigned
	// queries are not counted.
	want := map[string]float64{"verified": 2, "badsig": 1, "badtime": 1, "badkey": 3, "unsigned_refused": 1}
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]float64)
	for _, mf := range mfs {
		if mf.GetName() != "dnsedge_tsig_queries_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if v := mt.GetCounter().GetValue(); v > 0 {
				got[mt.GetLabel()[0].GetValue()] = v
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dnsedge_tsig_queries_total by result: %v, want %v", got, want)
	}
}

// TestSecretHidden: a key's secret shows as [redacted] however the
// configuration is printed or encoded.
func TestSecretHidden(t *testing.T) {
	cfg := Config{Keys: []KeySpec{{Name: "a.key.", Secret: Secret(secretA)}}}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "tsig", cfg, "key", cfg.Keys[0])
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{
		fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%s", cfg.Keys[0].Secret),
		fmt.Sprintf("%q", cfg.Keys[0].Secret), fmt.Sprintf("%x", cfg.Keys[0].Secret), string(js), logged.String(),
	} {
		if strings.Contains(out, secretA) || !strings.Contains(out, "[redacted]") {
			t.Errorf("secret not hidden: %s", out)
		}
	}
}
