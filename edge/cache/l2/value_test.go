package l2

import (
	"bytes"
	"errors"
	"testing"

	"github.com/miekg/dns"
)

var fleetKey = []byte("0123456789abcdef0123456789abcdef")

// packed returns www.example.org. IN A with one answer, packed, and the
// question as a cache key starts.
func packed(t testing.TB) (msg, question []byte) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("WWW.example.org.", dns.TypeA)
	m.Response = true
	rr, err := dns.NewRR("www.example.org. 300 IN A 192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	m.Answer = []dns.RR{rr}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	q := []byte("\x03www\x07example\x03org\x00\x00\x01\x00\x01")
	return b, q
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	msg, q := packed(t)
	s := NewSealer(fleetKey)
	v := Value{Msg: msg, Stored: 1_700_000_000_000_000_000, TTL: 300, Stale: 86400, Authentic: true, DNSSEC: 1}
	const key = "dnsedge:v1:\x00\x01a-key"
	sealed := s.Seal(key, v)
	got, err := s.Open(key, q, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Msg, v.Msg) || got.Stored != v.Stored || got.TTL != v.TTL || got.Stale != v.Stale ||
		got.Authentic != v.Authentic || got.DNSSEC != v.DNSSEC {
		t.Fatalf("Open = %+v, want %+v", got, v)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	otherQ := bytes.Clone(q)
	otherQ[len(otherQ)-3] = 28 // AAAA
	tests := []struct {
		name     string
		sealer   *Sealer
		key      string
		question []byte
		b        []byte
		want     error
	}{
		{"authentic flag flipped", s, key, q, flip(1), ErrMAC},
		{"verdict changed", s, key, q, flip(2), ErrMAC},
		{"stored time changed", s, key, q, flip(10), ErrMAC},
		{"TTL raised", s, key, q, flip(14), ErrMAC},
		{"stale window changed", s, key, q, flip(18), ErrMAC},
		{"answer changed", s, key, q, flip(len(sealed) - macLen - 1), ErrMAC},
		{"MAC changed", s, key, q, flip(len(sealed) - 1), ErrMAC},
		{"value under another key", s, key + "x", q, sealed, ErrMAC},
		{"another fleet key", NewSealer([]byte("another fleet key, 32 bytes long")), key, q, sealed, ErrMAC},
		{"another question", s, key, otherQ, sealed, ErrQuestion},
		{"unknown version", s, key, q, flip(0), ErrVersion},
		{"length changed", s, key, q, flip(20), ErrLength},
		{"cut short", s, key, q, sealed[:len(sealed)-1], ErrLength},
		{"too short", s, key, q, sealed[:10], ErrShort},
		{"empty", s, key, q, nil, ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := tt.sealer.Open(tt.key, tt.question, tt.b); !errors.Is(err, tt.want) {
				t.Errorf("Open: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSealRefuses(t *testing.T) {
	t.Parallel()
	s := NewSealer(fleetKey)
	for _, msg := range [][]byte{nil, make([]byte, headerLen-1), make([]byte, maxMsg+1)} {
		if b := s.Seal("k", Value{Msg: msg}); b != nil {
			t.Errorf("Seal of a %d-byte message = %d bytes, want nil", len(msg), len(b))
		}
	}
}

// FuzzOpen feeds Open arbitrary values: it must never panic, and what
// it accepts must seal back to the same bytes.
func FuzzOpen(f *testing.F) {
	msg, q := packed(f)
	s := NewSealer(fleetKey)
	f.Add(s.Seal("k", Value{Msg: msg, TTL: 60}), q)
	f.Add([]byte{valueVersion}, q)
	f.Add(make([]byte, valueHeaderLen+macLen), []byte{0, 0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, b, question []byte) {
		v, err := s.Open("k", question, b)
		if err != nil {
			return
		}
		if again := s.Seal("k", v); !bytes.Equal(again, b) {
			t.Fatalf("accepted value does not seal back: %x vs %x", again, b)
		}
	})
}
