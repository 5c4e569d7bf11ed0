package listen

import (
	"testing"

	"github.com/miekg/dns"
)

func TestPadded(t *testing.T) {
	t.Parallel()
	withOPT := func(names ...string) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("example.com.", dns.TypeA)
		m.Response = true
		m.Compress = true
		for _, n := range names {
			rr, err := dns.NewRR(n + " 300 IN A 192.0.2.1")
			if err != nil {
				t.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		m.SetEdns0(1232, false)
		return m
	}
	tests := []struct {
		name string
		msg  *dns.Msg
	}{
		{"empty answer", withOPT()},
		{"one record", withOPT("example.com.")},
		{"many records", withOPT("a.example.com.", "b.example.com.", "c.example.com.", "d.example.com.", "e.example.com.", "f.example.com.", "g.example.com.", "h.example.com.", "i.example.com.", "j.example.com.", "k.example.com.", "l.example.com.", "m.example.com.", "n.example.com.", "o.example.com.", "p.example.com.", "q.example.com.", "r.example.com.", "s.example.com.", "t.example.com.", "u.example.com.", "v.example.com.", "w.example.com.", "x.example.com.", "y.example.com.", "z.example.com.")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tt.msg.Extra[0].(*dns.OPT).Option)
			p := padded(tt.msg)
			b, err := p.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if len(b)%PaddingBlock != 0 {
				t.Errorf("padded reply is %d bytes, not a multiple of %d", len(b), PaddingBlock)
			}
			if got := len(tt.msg.Extra[0].(*dns.OPT).Option); got != before {
				t.Errorf("the original OPT was modified: %d options, want %d", got, before)
			}
			// Padding twice replaces the option rather than adding one.
			pp := padded(p)
			if n := len(pp.IsEdns0().Option); n != 1 {
				t.Errorf("padding a padded reply left %d options, want 1", n)
			}
		})
	}
	t.Run("no EDNS", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetQuestion("example.com.", dns.TypeA)
		if p := padded(m); p != m || p.IsEdns0() != nil {
			t.Error("a reply without OPT got padding")
		}
	})
}
