package dnswire

import (
	"bytes"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// FuzzPackName checks PackName against dns.PackDomainName: every name it
// packs, miekg/dns packs to the same bytes.
func FuzzPackName(f *testing.F) {
	for _, s := range []string{".", "example.org.", "a..b.", "x", "a\\.b.", "A.Example.ORG.", strings.Repeat("a", 64) + ".", strings.Repeat("abc.", 63) + "x."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var got, want [MaxName]byte
		n, ok := PackName(s, got[:])
		if !ok {
			return
		}
		m, err := dns.PackDomainName(s, want[:], 0, nil, false)
		if err != nil {
			t.Fatalf("PackName packed %q to %x; miekg/dns: %v", s, got[:n], err)
		}
		if !bytes.Equal(got[:n], want[:m]) {
			t.Fatalf("PackName(%q) = %x, miekg/dns %x", s, got[:n], want[:m])
		}
	})
}
