package listen

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestUnpackQName(t *testing.T) {
	wire := func(name string) []byte {
		b := make([]byte, 300)
		n, err := dns.PackDomainName(name, b, 0, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		return b[:n]
	}
	long := strings.Repeat("a", 31) + "." + strings.Repeat("b", 32) + "." // 65 bytes: one too many
	tests := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"root", []byte{0}, true},
		{"plain", wire("www.Example-1.org_x."), true},
		{"fills the buffer", wire(strings.Repeat("a", 31) + "." + strings.Repeat("b", 31) + "."), true}, // 64 bytes
		{"over the buffer", wire(long), false},
		{"escaped byte", wire(`a\.b.example.`), false},
		{"byte outside ASCII", []byte{1, 0xe9, 0}, false},
		{"space", []byte{3, 'a', ' ', 'b', 0}, false},
		{"pointer", []byte{1, 'a', 0xc0, 0}, false},
		{"extended label type", []byte{0x41, 0}, false},
		{"label cut short", []byte{5, 'a', 'b'}, false},
		{"no end", []byte{1, 'a'}, false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf [qnameBuf]byte
			got, off, ok := unpackQName(tt.b, 0, &buf)
			if ok != tt.ok {
				t.Fatalf("ok %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			want, wantOff, err := dns.UnpackDomainName(tt.b, 0)
			if err != nil || got != want || off != wantOff {
				t.Fatalf("%q at %d, miekg/dns %q at %d (%v)", got, off, want, wantOff, err)
			}
		})
	}
}

// FuzzUnpackQName holds unpackQName to dns.UnpackDomainName on every
// name it reads itself.
func FuzzUnpackQName(f *testing.F) {
	f.Add([]byte("\x03www\x07example\x03org\x00"), uint8(0))
	f.Add([]byte("\x00\x01a\x00"), uint8(1))
	f.Add([]byte("\x03a.b\x00"), uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, off uint8) {
		if int(off) > len(b) {
			return
		}
		var buf [qnameBuf]byte
		got, end, ok := unpackQName(b, int(off), &buf)
		if !ok {
			return
		}
		want, wantEnd, err := dns.UnpackDomainName(b, int(off))
		if err != nil || got != want || end != wantEnd {
			t.Fatalf("%q at %d, miekg/dns %q at %d (%v)", got, end, want, wantEnd, err)
		}
	})
}
