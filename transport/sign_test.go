package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

const (
	signKey    = "up.key."
	signSecret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	signWrong  = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
)

// testSigner signs with miekg/dns's TSIG code (hmac-sha256).
type testSigner struct{ key, secret string }

func (s testSigner) SignQuery(q *dns.Msg) ([]byte, string, error) {
	m := q.Copy()
	if t := m.IsTsig(); t != nil {
		m.Extra = m.Extra[:len(m.Extra)-1]
	}
	m.SetTsig(s.key, dns.HmacSHA256, 300, time.Now().Unix())
	return dns.TsigGenerate(m, s.secret, "", false)
}

func (s testSigner) VerifyReply(wire []byte, r *dns.Msg, mac string) error {
	if t := r.IsTsig(); t == nil || t.Hdr.Name != s.key {
		return errors.New("unsigned, or not with the key")
	}
	return dns.TsigVerify(slices.Clone(wire), s.secret, mac, false)
}

// TestSignedUpstreamFaults: an upstream with a signer gets signed
// queries over UDP and TCP; a reply signed right is taken, one signed
// with the wrong key, changed in transit or not signed at all is a
// malformed reply, counted against the path's health.
func TestSignedUpstreamFaults(t *testing.T) {
	t.Parallel()
	srv := transporttest.StartFault(t, "$ORIGIN example.\n@ 60 IN SOA ns hostmaster 1 3600 600 86400 30\nwww 60 IN A 192.0.2.1\n")
	tests := []struct {
		name  string
		fault transporttest.TSIGFault
		ok    bool
	}{
		{"signed right", transporttest.TSIGFault{Key: signKey, Secret: signSecret}, true},
		{"wrong key", transporttest.TSIGFault{Key: signKey, Secret: signWrong}, false},
		{"flipped bit", transporttest.TSIGFault{Key: signKey, Secret: signSecret, Flip: true}, false},
		{"unsigned", transporttest.TSIGFault{Unsigned: true}, false},
		{"other key name", transporttest.TSIGFault{Key: "other.key.", Secret: signSecret}, false},
	}
	for _, tt := range tests {
		for _, proto := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+proto, func(t *testing.T) {
				// Each subtest sets the faults for its own query: run in turn.
				srv.Set(transporttest.Faults{TSIG: &tt.fault})
				reg := NewRegistry(HealthConfig{}, nil)
				ep := Endpoint{Scheme: proto, Addr: srv.AddrV4().Addr(), Port: srv.Port()}
				u, err := NewUpstream(UpstreamConfig{Name: "signed", Endpoint: ep, Pin: PinIPv4, Signer: testSigner{signKey, signSecret}}, UpstreamDeps{Registry: reg, Probe: ProbeSpec{Interval: -1}})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { u.Close() })
				s, _ := NewStrategy("sequential")
				g := NewGroup("g", s, RaceConfig{}, u)
				ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
				defer cancel()
				res, err := g.Exchange(ctx, wireQuery("www.example.", dns.TypeA))
				path := u.Paths()[0]
				snap := path.Health.Snapshot()
				if tt.ok {
					if err != nil || len(res.Msg.Answer) != 1 {
						t.Fatalf("got %v, %v; want the answer", res.Msg, err)
					}
					if snap.Outcomes[ClassMalformed] != 0 {
						t.Errorf("malformed outcomes %d, want 0", snap.Outcomes[ClassMalformed])
					}
					return
				}
				if err == nil {
					t.Fatalf("a reply that does not verify was taken: %v", res.Msg)
				}
				if snap.Outcomes[ClassMalformed] == 0 || snap.Consecutive == 0 {
					t.Errorf("health %+v: want the malformed reply counted against the path (%v)", snap, err)
				}
			})
		}
	}
}

// TestSignedEncryptedUpstream: DoT, DoH and DoQ exchangers sign the
// query and verify the reply on the bytes received.
func TestSignedEncryptedUpstream(t *testing.T) {
	t.Parallel()
	for _, k := range encKinds {
		for _, bad := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/tampered=%v", k.name, bad), func(t *testing.T) {
				t.Parallel()
				s := k.start(t, transporttest.ServerConfig{Handler: func(_ context.Context, q *dns.Msg) *dns.Msg {
					qt := q.IsTsig()
					if qt == nil || qt.Hdr.Name != signKey {
						return new(dns.Msg).SetRcode(q, dns.RcodeRefused)
					}
					m := transporttest.Answer(nil, q)
					m.SetTsig(signKey, dns.HmacSHA256, 300, time.Now().Unix())
					secret := signSecret
					if bad {
						secret = signWrong
					}
					// The server packs what it returns: sign the
					// form it will pack (uncompressed) and hand back
					// the signed message.
					wire, _, err := dns.TsigGenerate(m, secret, qt.MAC, false)
					if err != nil {
						panic(err)
					}
					out := new(dns.Msg)
					if err := out.Unpack(wire); err != nil {
						panic(err)
					}
					return out
				}})
				x := encExchanger(t, k, s, TLSOptions{})
				if !SetSigner(x, testSigner{signKey, signSecret}) {
					t.Fatal("SetSigner refused the exchanger")
				}
				r, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("up.example.", dns.TypeA))
				if bad {
					if Classify(err) != ClassMalformed || !errors.Is(err, ErrBadSignature) {
						t.Fatalf("got %v, %v; want ErrBadSignature, malformed", r, err)
					}
					return
				}
				if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					t.Fatalf("got %v, %v; want the signed answer", r, err)
				}
			})
		}
	}
}
