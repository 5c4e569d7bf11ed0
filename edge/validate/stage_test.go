package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dnsedge/dnsedge/dnssec"
	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// fakeValidator answers Validate with validate; an unset validate fails
// the test when called.
type fakeValidator struct {
	t        testing.TB
	validate func(q dns.Question, resp *dns.Msg) dnssec.Result
	mu       sync.Mutex
	calls    int
}

func (f *fakeValidator) Validate(_ context.Context, q dns.Question, resp *dns.Msg) dnssec.Result {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.validate == nil {
		f.t.Error("Validate called but validate is not set")
		return dnssec.Result{}
	}
	return f.validate(q, resp)
}

func (f *fakeValidator) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// fakeNext is the handler after the stage; it records the query it got.
// An unset serve fails the test when called.
type fakeNext struct {
	t     testing.TB
	serve func(q *dns.Msg) (*dns.Msg, error)
	mu    sync.Mutex
	got   []*dns.Msg
}

func (f *fakeNext) ServeDNS(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
	f.mu.Lock()
	f.got = append(f.got, req.Msg.Copy())
	f.mu.Unlock()
	req.Outcome.Source, req.Outcome.Path = pipeline.SourceUpstream, "u/udp/192.0.2.1:53"
	if f.serve == nil {
		f.t.Error("next called but serve is not set")
		return nil, errors.New("serve not set")
	}
	return f.serve(req.Msg)
}

func (f *fakeNext) last() *dns.Msg {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		return nil
	}
	return f.got[len(f.got)-1]
}

func rrs(t testing.TB, zone ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, s := range zone {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("parse %q: %v", s, err)
		}
		out = append(out, rr)
	}
	return out
}

const (
	aWWW     = "www.example. 3600 IN A 192.0.2.1"
	sigWWW   = "www.example. 3600 IN RRSIG A 13 2 3600 20300101000000 20200101000000 12345 example. dGVzdA=="
	nsecWWW  = "www.example. 3600 IN NSEC zz.example. A RRSIG NSEC"
	dsChild  = "child.example. 3600 IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"
	soaApex  = "example. 3600 IN SOA ns.example. host.example. 1 7200 3600 1209600 300"
	sigSOA   = "example. 3600 IN RRSIG SOA 13 1 3600 20300101000000 20200101000000 12345 example. dGVzdA=="
	nsec3Neg = "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.example. 300 IN NSEC3 1 0 0 - 0p9mhaveqvm6t7vbl5lop2u3t2rp3ton A RRSIG"
)

// signedUpstream answers www.example. A with its RRSIG and an NSEC in
// the additional section, and a DS in the authority section, the way a
// server answers a DO query (DNSSEC records kept), EDNS echoed.
func signedUpstream(t testing.TB) *fakeNext {
	return &fakeNext{t: t, serve: func(q *dns.Msg) (*dns.Msg, error) {
		m := new(dns.Msg).SetReply(q)
		m.RecursionAvailable = true
		m.AuthenticatedData = true // a validating upstream's say, which the stage must not pass on
		m.Answer = rrs(t, aWWW, sigWWW)
		m.Ns = rrs(t, dsChild)
		m.Extra = rrs(t, nsecWWW)
		if opt := q.IsEdns0(); opt != nil {
			m.SetEdns0(1232, opt.Do())
		}
		return m, nil
	}}
}

type qflags struct{ do, ad, cd bool }

func request(f qflags) *pipeline.Request {
	q := new(dns.Msg).SetQuestion("www.example.", dns.TypeA)
	q.AuthenticatedData, q.CheckingDisabled = f.ad, f.cd
	if f.do {
		q.SetEdns0(1232, true)
	}
	return &pipeline.Request{Msg: q, Listener: pipeline.KindUDP,
		Client: netip.MustParseAddrPort("192.0.2.9:5353"), TraceID: "trace-1"}
}

func types(sec []dns.RR) []uint16 {
	var out []uint16
	for _, rr := range sec {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr.Header().Rrtype)
		}
	}
	return out
}

func hasType(m *dns.Msg, t uint16) bool {
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr.Header().Rrtype == t {
				return true
			}
		}
	}
	return false
}

func edeOf(m *dns.Msg) *dns.EDNS0_EDE {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

// TestVerdicts runs each verdict through the stage: what goes upstream,
// the rcode, AD, EDE, the DNSSEC records a client without DO must not
// see, the TTL cap, the outcome and the counters.
func TestVerdicts(t *testing.T) {
	t.Parallel()
	secure := dnssec.Result{Verdict: dnssec.Secure, Signer: "example.", KeyTag: 12345, RRSIGTTL: 3600, TTL: 120}
	tests := []struct {
		name     string
		q        qflags
		res      dnssec.Result
		wantErr  uint16 // EDE of a SERVFAIL error; 0 for an answer
		wantAD   bool
		wantEDE  int // EDE in the answer's OPT, -1 for none
		wantSigs bool
		wantTTL  uint32
		verdict  pipeline.DNSSECVerdict
	}{
		{name: "secure DO", q: qflags{do: true}, res: secure, wantAD: true, wantEDE: -1, wantSigs: true, wantTTL: 120, verdict: pipeline.DNSSECSecure},
		{name: "secure AD without DO", q: qflags{ad: true}, res: secure, wantAD: true, wantEDE: -1, wantTTL: 120, verdict: pipeline.DNSSECSecure},
		{name: "secure plain", q: qflags{}, res: secure, wantEDE: -1, wantTTL: 120, verdict: pipeline.DNSSECSecure},
		{name: "secure cap above the TTLs", q: qflags{do: true}, res: dnssec.Result{Verdict: dnssec.Secure, TTL: 7200}, wantAD: true, wantEDE: -1, wantSigs: true, wantTTL: 3600, verdict: pipeline.DNSSECSecure},
		{name: "insecure DO", q: qflags{do: true}, res: dnssec.Result{Verdict: dnssec.Insecure, Reason: "no DS for child."}, wantEDE: -1, wantSigs: true, wantTTL: 3600, verdict: pipeline.DNSSECInsecure},
		{name: "insecure with EDE", q: qflags{do: true, ad: true}, res: dnssec.Result{Verdict: dnssec.Insecure, HasEDE: true, EDE: dns.ExtendedErrorCodeUnsupportedDNSKEYAlgorithm, Reason: "algorithm 253"},
			wantEDE: int(dns.ExtendedErrorCodeUnsupportedDNSKEYAlgorithm), wantSigs: true, wantTTL: 3600, verdict: pipeline.DNSSECInsecure},
		{name: "indeterminate AD", q: qflags{ad: true}, res: dnssec.Result{Verdict: dnssec.Indeterminate, Reason: "no anchor"}, wantEDE: -1, wantTTL: 3600, verdict: pipeline.DNSSECIndeterminate},
		{name: "bogus expired", q: qflags{do: true}, res: dnssec.Result{Verdict: dnssec.Bogus, HasEDE: true, EDE: dns.ExtendedErrorCodeSignatureExpired, Reason: "signature expired"},
			wantErr: dns.ExtendedErrorCodeSignatureExpired, verdict: pipeline.DNSSECBogus},
		{name: "bogus without EDE is DNSSEC Bogus", q: qflags{}, res: dnssec.Result{Verdict: dnssec.Bogus, Reason: "bad signature"},
			wantErr: dns.ExtendedErrorCodeDNSBogus, verdict: pipeline.DNSSECBogus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var audit bytes.Buffer
			a := newAudit(&lockedWriter{w: &audit}, nil, 16)
			fv := &fakeValidator{t: t, validate: func(q dns.Question, resp *dns.Msg) dnssec.Result {
				if q.Name != "www.example." || !hasType(resp, dns.TypeRRSIG) {
					t.Errorf("validated %v with %v", q, resp)
				}
				return tt.res
			}}
			v := newValidation(fv, &fetcher{now: time.Now}, a, fixedNow)
			up := signedUpstream(t)
			mw, unbind := v.Bind()
			h := mw(up)
			req := request(tt.q)
			before := req.Msg.String()
			m, err := h.ServeDNS(context.Background(), req)
			if req.Msg.String() != before {
				t.Error("the stage changed the query")
			}
			sent := up.last()
			if !sent.CheckingDisabled || sent.IsEdns0() == nil || !sent.IsEdns0().Do() {
				t.Errorf("sent upstream without DO and CD: %v", sent)
			}
			if req.Outcome.DNSSEC != tt.verdict {
				t.Errorf("outcome verdict %v, want %v", req.Outcome.DNSSEC, tt.verdict)
			}
			if req.Outcome.Source != pipeline.SourceUpstream {
				t.Errorf("outcome source %v: what next recorded is lost", req.Outcome.Source)
			}
			if tt.wantErr != 0 {
				var pe *pipeline.Error
				if m != nil || !errors.As(err, &pe) || pe.EDE != tt.wantErr {
					t.Fatalf("got %v, %v; want SERVFAIL with EDE %d", m, err, tt.wantErr)
				}
				if r := pipeline.ErrorReply(req.Msg, err); r.Rcode != dns.RcodeServerFailure {
					t.Errorf("rcode %d", r.Rcode)
				}
				if !req.Outcome.HasEDE || req.Outcome.EDE != tt.wantErr {
					t.Errorf("outcome EDE %v %d", req.Outcome.HasEDE, req.Outcome.EDE)
				}
			} else {
				if err != nil || m == nil {
					t.Fatalf("got %v, %v", m, err)
				}
				if m.Rcode != dns.RcodeSuccess || m.AuthenticatedData != tt.wantAD {
					t.Errorf("rcode %d AD %v, want NOERROR AD %v", m.Rcode, m.AuthenticatedData, tt.wantAD)
				}
				gotEDE := -1
				if e := edeOf(m); e != nil {
					gotEDE = int(e.InfoCode)
				}
				if gotEDE != tt.wantEDE {
					t.Errorf("EDE %d, want %d", gotEDE, tt.wantEDE)
				}
				for _, typ := range []uint16{dns.TypeRRSIG, dns.TypeNSEC, dns.TypeDS} {
					if hasType(m, typ) != tt.wantSigs {
						t.Errorf("%s present %v, want %v: %v", dns.Type(typ), hasType(m, typ), tt.wantSigs, m)
					}
				}
				if len(m.Answer) == 0 || m.Answer[0].Header().Ttl != tt.wantTTL {
					t.Errorf("answer %v, want TTL %d", m.Answer, tt.wantTTL)
				}
			}
			if err := unbind(); err != nil {
				t.Fatal(err)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(audit.String()), "\n")
			if len(lines) != 1 {
				t.Fatalf("audit lines %q", lines)
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
				t.Fatal(err)
			}
			if rec["validation_status"] != tt.verdict.String() || rec["client"] != "192.0.2.9:5353" || rec["trace_id"] != "trace-1" {
				t.Errorf("audit record %v", rec)
			}
			wantRcode := "NOERROR"
			if tt.wantErr != 0 {
				wantRcode = "SERVFAIL"
			}
			if rec["rcode"] != wantRcode {
				t.Errorf("audit rcode %v, want %s", rec["rcode"], wantRcode)
			}
			vc := counterValue(t, v.m.validations.WithLabelValues(tt.verdict.String()))
			if vc != 1 {
				t.Errorf("validations_total{verdict=%s} = %v", tt.verdict, vc)
			}
		})
	}
}

// TestUpstreamAnswerUntouched checks that the stage never changes the
// message next returned (it may be shared, see pipeline.Handler).
func TestUpstreamAnswerUntouched(t *testing.T) {
	t.Parallel()
	var kept *dns.Msg
	var before string
	up := &fakeNext{t: t, serve: func(q *dns.Msg) (*dns.Msg, error) {
		m, _ := signedUpstream(t).serve(q)
		kept, before = m, m.String()
		return m, nil
	}}
	fv := &fakeValidator{t: t, validate: func(dns.Question, *dns.Msg) dnssec.Result {
		return dnssec.Result{Verdict: dnssec.Secure, TTL: 10}
	}}
	mw, _ := newValidation(fv, &fetcher{now: time.Now}, nil, fixedNow).Bind()
	if _, err := mw(up).ServeDNS(context.Background(), request(qflags{})); err != nil {
		t.Fatal(err)
	}
	if kept.String() != before {
		t.Errorf("upstream answer changed:\n%s\nwas\n%s", kept, before)
	}
}

// TestCheckingDisabled: a CD query is forwarded as the client sent it and
// answered unvalidated, without AD.
func TestCheckingDisabled(t *testing.T) {
	t.Parallel()
	for _, do := range []bool{false, true} {
		fv := &fakeValidator{t: t} // Validate must not be called
		up := signedUpstream(t)
		mw, _ := newValidation(fv, &fetcher{now: time.Now}, nil, fixedNow).Bind()
		req := request(qflags{do: do, cd: true, ad: true})
		m, err := mw(up).ServeDNS(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		sent := up.last()
		if !sent.CheckingDisabled || (sent.IsEdns0() != nil) != do {
			t.Errorf("do=%v: sent %v", do, sent)
		}
		if m.AuthenticatedData || req.Outcome.DNSSEC != pipeline.DNSSECNone {
			t.Errorf("do=%v: AD %v verdict %v, want an unvalidated answer", do, m.AuthenticatedData, req.Outcome.DNSSEC)
		}
		if !hasType(m, dns.TypeRRSIG) {
			t.Errorf("do=%v: a CD answer is passed as it came: %v", do, m)
		}
	}
}

// TestNextFails: a failure of next is returned as it is, unvalidated and
// unaudited.
func TestNextFails(t *testing.T) {
	t.Parallel()
	want := &pipeline.Error{EDE: dns.ExtendedErrorCodeNoReachableAuthority, Err: pipeline.ErrUpstreamFailed}
	up := &fakeNext{t: t, serve: func(*dns.Msg) (*dns.Msg, error) { return nil, want }}
	var audit bytes.Buffer
	a := newAudit(&lockedWriter{w: &audit}, nil, 4)
	mw, _ := newValidation(&fakeValidator{t: t}, &fetcher{now: time.Now}, a, fixedNow).Bind()
	if _, err := mw(up).ServeDNS(context.Background(), request(qflags{do: true})); !errors.Is(err, want) {
		t.Errorf("err %v, want %v", err, want)
	}
	a.Close()
	if audit.Len() != 0 {
		t.Errorf("audited a failure: %s", audit.String())
	}
}

// TestNegativeStrip: a NODATA answer for a client without DO loses its
// NSEC3 and RRSIG records but keeps the SOA.
func TestNegativeStrip(t *testing.T) {
	t.Parallel()
	up := &fakeNext{t: t, serve: func(q *dns.Msg) (*dns.Msg, error) {
		m := new(dns.Msg).SetReply(q)
		m.Ns = rrs(t, soaApex, sigSOA, nsec3Neg)
		return m, nil
	}}
	fv := &fakeValidator{t: t, validate: func(dns.Question, *dns.Msg) dnssec.Result {
		return dnssec.Result{Verdict: dnssec.Secure, TTL: 300}
	}}
	mw, _ := newValidation(fv, &fetcher{now: time.Now}, nil, fixedNow).Bind()
	m, err := mw(up).ServeDNS(context.Background(), request(qflags{ad: true}))
	if err != nil {
		t.Fatal(err)
	}
	if got := types(m.Ns); len(got) != 1 || got[0] != dns.TypeSOA || m.Ns[0].Header().Ttl != 300 {
		t.Errorf("authority %v, want the SOA alone with TTL 300", m.Ns)
	}
	if !m.AuthenticatedData {
		t.Error("secure NODATA for an AD query without AD")
	}
}

// TestCacheStoresVerdict puts the stage inside the answer cache, as
// edge's chain does: a validated answer is cached with its verdict, a
// hit costs no validation and gets AD by its own query's bits.
func TestCacheStoresVerdict(t *testing.T) {
	t.Parallel()
	c, err := cache.New(cache.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fv := &fakeValidator{t: t, validate: func(dns.Question, *dns.Msg) dnssec.Result {
		return dnssec.Result{Verdict: dnssec.Secure, TTL: 600}
	}}
	mw, _ := newValidation(fv, &fetcher{now: time.Now}, nil, fixedNow).Bind()
	h := pipeline.Chain(signedUpstream(t), c.Middleware(), mw)

	steps := []struct {
		q        qflags
		hit      bool
		wantAD   bool
		wantSigs bool
	}{
		{q: qflags{}, wantAD: false},                        // fills the DO=0 entry
		{q: qflags{ad: true}, hit: true, wantAD: true},      // same entry, asks for AD
		{q: qflags{}, hit: true, wantAD: false},             // plain again: no AD replayed
		{q: qflags{do: true}, wantAD: true, wantSigs: true}, // another entry: DO keeps signatures
		{q: qflags{do: true}, hit: true, wantAD: true, wantSigs: true},
	}
	for i, st := range steps {
		req := request(st.q)
		before := fv.count()
		m, err := h.ServeDNS(context.Background(), req)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if hit := fv.count() == before; hit != st.hit {
			t.Errorf("step %d: hit %v, want %v", i, hit, st.hit)
		}
		if st.hit && req.Outcome.Source != pipeline.SourceCache {
			t.Errorf("step %d: source %v", i, req.Outcome.Source)
		}
		if req.Outcome.DNSSEC != pipeline.DNSSECSecure {
			t.Errorf("step %d: verdict %v", i, req.Outcome.DNSSEC)
		}
		if m.AuthenticatedData != st.wantAD || hasType(m, dns.TypeRRSIG) != st.wantSigs {
			t.Errorf("step %d: AD %v RRSIG %v, want %v %v", i, m.AuthenticatedData, hasType(m, dns.TypeRRSIG), st.wantAD, st.wantSigs)
		}
		if m.Answer[0].Header().Ttl > 600 {
			t.Errorf("step %d: TTL %d above the validator's cap", i, m.Answer[0].Header().Ttl)
		}
	}
}

// TestMetricsRegister checks the counters' names with a registry.
func TestMetricsRegister(t *testing.T) {
	t.Parallel()
	v := newValidation(&fakeValidator{t: t}, &fetcher{now: time.Now}, newAudit(&bytes.Buffer{}, nil, 1), fixedNow)
	t.Cleanup(func() { v.Close() })
	v.m.count("bogus", true, dns.ExtendedErrorCodeSignatureExpired)
	reg := prometheus.NewRegistry()
	if err := v.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := v.Register(reg); err != nil { // a new generation takes over
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	want := []string{"dnsedge_dnssec_audit_dropped_total", "dnsedge_dnssec_audit_errors_total",
		"dnsedge_dnssec_bogus_total", "dnsedge_dnssec_validations_total"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("gathered %v, want %v", names, want)
	}
	if got := counterValue(t, v.m.bogus.WithLabelValues("7")); got != 1 {
		t.Errorf("bogus_total{ede=7} = %v", got)
	}
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func fixedNow() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// lockedWriter lets a test read what the audit goroutine wrote.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
