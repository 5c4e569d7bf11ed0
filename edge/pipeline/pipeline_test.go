package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestChainOrder(t *testing.T) {
	var trace []string
	mw := func(name string) Middleware {
		return func(next Handler) Handler {
			return HandlerFunc(func(ctx context.Context, req *Request) (*dns.Msg, error) {
				trace = append(trace, name+">")
				m, err := next.ServeDNS(ctx, req)
				trace = append(trace, "<"+name)
				return m, err
			})
		}
	}
	h := Chain(HandlerFunc(func(context.Context, *Request) (*dns.Msg, error) {
		trace = append(trace, "h")
		return new(dns.Msg), nil
	}), mw("a"), mw("b"))
	if _, err := h.ServeDNS(context.Background(), &Request{Msg: new(dns.Msg)}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(trace, " "), "a> b> h <b <a"; got != want {
		t.Fatalf("order = %q, want %q", got, want)
	}
}

func TestErrorReply(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("example.org.", dns.TypeA)
	qEDNS := q.Copy()
	qEDNS.SetEdns0(1232, true)
	tests := []struct {
		name      string
		query     *dns.Msg
		err       error
		wantRcode int
		wantEDE   int // -1: no EDE option expected
	}{
		{"plain error", qEDNS, errors.New("boom"), dns.RcodeServerFailure, int(dns.ExtendedErrorCodeOther)},
		{"typed error", qEDNS, &Error{EDE: dns.ExtendedErrorCodeNoReachableAuthority, Err: errors.New("all paths failed")}, dns.RcodeServerFailure, int(dns.ExtendedErrorCodeNoReachableAuthority)},
		{"wrapped typed error", qEDNS, fmt.Errorf("forward: %w", &Error{Rcode: dns.RcodeRefused, EDE: dns.ExtendedErrorCodeProhibited}), dns.RcodeRefused, int(dns.ExtendedErrorCodeProhibited)},
		{"no EDNS, no EDE", q, &Error{EDE: dns.ExtendedErrorCodeNetworkError}, dns.RcodeServerFailure, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ErrorReply(tt.query, tt.err)
			if m.Rcode != tt.wantRcode || m.Id != tt.query.Id || !m.Response {
				t.Fatalf("rcode=%d id=%d qr=%v", m.Rcode, m.Id, m.Response)
			}
			ede := -1
			if opt := m.IsEdns0(); opt != nil {
				for _, o := range opt.Option {
					if e, ok := o.(*dns.EDNS0_EDE); ok {
						ede = int(e.InfoCode)
					}
				}
			}
			if ede != tt.wantEDE {
				t.Fatalf("EDE = %d, want %d", ede, tt.wantEDE)
			}
		})
	}
}
