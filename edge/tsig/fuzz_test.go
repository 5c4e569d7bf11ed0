package tsig

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// FuzzVerify feeds arbitrary messages to Verify: it never panics, never
// changes its input, and never says verified unless the bytes carry a
// MAC made with the key (checked with miekg/dns on the same clock).
func FuzzVerify(f *testing.F) {
	t0 := time.Unix(1_800_000_000, 0)
	for _, s := range []struct{ key, secret string }{{"a.key.", secretA}, {"a.key.", secretB}, {"c.key.", secretA}} {
		q := new(dns.Msg)
		q.SetQuestion("www.example.", dns.TypeA)
		q.SetTsig(s.key, dns.HmacSHA256, 300, t0.Unix())
		wire, _, err := dns.TsigGenerate(q, s.secret, "", false)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	f.Add([]byte{})
	f.Add(make([]byte, 12))
	kr, err := New(Config{Keys: []KeySpec{{Name: "a.key.", Secret: Secret(secretA)}}}, clockwork.NewFakeClockAt(t0).Now)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		m := new(dns.Msg)
		if m.Unpack(wire) != nil {
			return
		}
		orig := string(wire)
		r := kr.Verify(wire, m, "")
		if string(wire) != orig {
			t.Fatal("Verify changed its input")
		}
		if r.State != pipeline.TSIGVerified {
			return
		}
		// Verified: the MAC must be the key's over these bytes.
		tt := m.IsTsig()
		if tt == nil || dns.CanonicalName(tt.Hdr.Name) != "a.key." {
			t.Fatalf("verified without the key's TSIG: %v", m)
		}
		cp := append([]byte(nil), wire...)
		p := &provider{k: kr.keys["a.key."]}
		_ = dns.TsigVerifyWithProvider(cp, p, "", false)
		if !p.macOK {
			t.Fatal("verified, but the MAC does not check out")
		}
	})
}
