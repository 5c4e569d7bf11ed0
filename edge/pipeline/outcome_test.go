package pipeline

import (
	"errors"
	"fmt"
	"testing"

	"github.com/miekg/dns"
)

func TestRequestEDE(t *testing.T) {
	stale := Outcome{}
	stale.SetEDE(dns.ExtendedErrorCodeStaleAnswer, "served stale")
	tests := []struct {
		name     string
		outcome  Outcome
		err      error
		code     uint16
		text     string
		wantSome bool
	}{
		{name: "answer without EDE"},
		{name: "answer with a stage's EDE", outcome: stale, code: dns.ExtendedErrorCodeStaleAnswer, text: "served stale", wantSome: true},
		{name: "pipeline error wins", outcome: stale,
			err:  fmt.Errorf("forward: %w", &Error{EDE: dns.ExtendedErrorCodeNetworkError, Text: "upstreams unreachable"}),
			code: dns.ExtendedErrorCodeNetworkError, text: "upstreams unreachable", wantSome: true},
		{name: "plain error is Other Error", err: errors.New("boom"), code: dns.ExtendedErrorCodeOther, wantSome: true},
		{name: "drop has none", err: ErrDrop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Request{Outcome: tt.outcome}
			code, text, ok := r.EDE(tt.err)
			if code != tt.code || text != tt.text || ok != tt.wantSome {
				t.Errorf("EDE = %d %q %v, want %d %q %v", code, text, ok, tt.code, tt.text, tt.wantSome)
			}
		})
	}
}

func TestDetach(t *testing.T) {
	r := &Request{Msg: new(dns.Msg), Wire: []byte{1, 2}, Route: "r", Outcome: Outcome{Source: SourceCache, Path: "p"}}
	c := r.Detach()
	if c.Wire != nil || c.Outcome != (Outcome{}) || c.Route != "r" || c.Msg != r.Msg {
		t.Errorf("Detach = %+v", c)
	}
	if r.Wire == nil || r.Outcome.Source != SourceCache {
		t.Error("Detach changed the original")
	}
}

func TestEnumStrings(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{SourceNone.String(), "none"},
		{SourceTenantZone.String(), "tenant_zone"},
		{SourceSynthesized.String(), "synthesized"},
		{Source(200).String(), "source(200)"},
		{TSIGNone.String(), "none"},
		{DNSSECBogus.String(), "bogus"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
