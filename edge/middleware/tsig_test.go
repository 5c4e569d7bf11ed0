package middleware

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/policy"
)

// TestPolicyRequireTSIG: a rule with require_tsig refuses what did not
// verify, and lets verified queries through to the rest of the rule.
func TestPolicyRequireTSIG(t *testing.T) {
	p, err := policy.Compile(policy.Spec{Version: "v1", Rules: []policy.RuleSpec{
		{Name: "admin", Match: policy.MatchSpec{QNameSuffix: []string{"example.org"}}, RequireTSIG: true, Tags: []string{"admin=1"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := NewPolicy(p, "default").Middleware(pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		return m, nil
	}))
	tests := []struct {
		name      string
		state     pipeline.TSIGState
		rcode     int
		wantState pipeline.TSIGState
	}{
		{"unsigned", pipeline.TSIGNone, dns.RcodeRefused, pipeline.TSIGRequired},
		{"verified", pipeline.TSIGVerified, dns.RcodeSuccess, pipeline.TSIGVerified},
		{"key not held", pipeline.TSIGBadKey, dns.RcodeRefused, pipeline.TSIGBadKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := request(dns.TypeA, false, false, false)
			req.TSIG = tt.state
			m, err := h.ServeDNS(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if m.Rcode != tt.rcode || req.TSIG != tt.wantState {
				t.Errorf("rcode %s state %s, want %s %s", dns.RcodeToString[m.Rcode], req.TSIG, dns.RcodeToString[tt.rcode], tt.wantState)
			}
			if tt.rcode == dns.RcodeSuccess && len(req.Tags) != 1 {
				t.Errorf("tags %v: the rest of the rule did not apply", req.Tags)
			}
		})
	}
}

// TestForwardRelaysForeignTSIG: a query signed with a key dnsedge does
// not hold goes upstream as the client sent it, TSIG and OPT included,
// and the answer comes back with its header untouched.
func TestForwardRelaysForeignTSIG(t *testing.T) {
	ex := &capture{reply: func(q *dns.Msg) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		return m, nil
	}}
	f := forwardTo(t, ex, NewLoop(nil))
	for _, state := range []pipeline.TSIGState{pipeline.TSIGBadKey, pipeline.TSIGVerified} {
		req := request(dns.TypeA, true, false, false, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		req.Msg.SetTsig("stranger.", dns.HmacSHA256, 300, 1)
		req.TSIG = state
		m, err := f.ServeDNS(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		relay := state == pipeline.TSIGBadKey
		if got := ex.got.IsTsig() != nil; got != relay {
			t.Errorf("%s: TSIG forwarded %v, want %v", state, got, relay)
		}
		if relay && ex.got.String() != req.Msg.String() {
			t.Errorf("%s: query changed on the way:\n%s\nwant\n%s", state, ex.got, req.Msg)
		}
		if m.Authoritative != relay {
			t.Errorf("%s: AA %v, want the upstream's header kept only when relaying", state, m.Authoritative)
		}
	}
}
