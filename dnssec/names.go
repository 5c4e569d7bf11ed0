package dnssec

import (
	"bytes"
	"strings"

	"github.com/miekg/dns"
)

// canonical returns name fully qualified and in lower case.
func canonical(name string) string { return dns.CanonicalName(name) }

// parent returns the name one label up; the root's parent is the root.
func parent(name string) string {
	if name == "." || name == "" {
		return "."
	}
	off, end := dns.NextLabel(name, 0)
	if end {
		return "."
	}
	return name[off:]
}

// under reports whether child is zone or below it (both canonical).
func under(zone, child string) bool { return dns.IsSubDomain(zone, child) }

// strictlyUnder reports whether child is below zone and not zone itself.
func strictlyUnder(zone, child string) bool {
	return child != zone && dns.IsSubDomain(zone, child)
}

// suffix returns the rightmost n labels of name ("." for n = 0).
func suffix(name string, n int) string {
	idx := dns.Split(name)
	if n <= 0 || len(idx) == 0 {
		return "."
	}
	if n >= len(idx) {
		return name
	}
	return name[idx[len(idx)-n]:]
}

// labels returns the labels of name in wire form (escapes resolved,
// lower case), leftmost first.
func labels(name string) [][]byte {
	var out [][]byte
	var cur []byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '\\' && i+3 < len(name) && isDigit(name[i+1]) && isDigit(name[i+2]) && isDigit(name[i+3]):
			v := int(name[i+1]-'0')*100 + int(name[i+2]-'0')*10 + int(name[i+3]-'0')
			cur = append(cur, lower(byte(v)))
			i += 3
		case c == '\\' && i+1 < len(name):
			cur = append(cur, lower(name[i+1]))
			i++
		case c == '.':
			out = append(out, cur)
			cur = nil
		default:
			cur = append(cur, lower(c))
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// compareNames orders two names canonically (RFC 4034 §6.1): label by
// label from the right, each label as a lower-cased octet string.
func compareNames(a, b string) int {
	la, lb := labels(a), labels(b)
	for i, j := len(la)-1, len(lb)-1; i >= 0 || j >= 0; i, j = i-1, j-1 {
		switch {
		case i < 0:
			return -1
		case j < 0:
			return 1
		}
		if c := bytes.Compare(la[i], lb[j]); c != 0 {
			return c
		}
	}
	return 0
}

// sameName compares two names case-insensitively.
func sameName(a, b string) bool { return strings.EqualFold(dns.Fqdn(a), dns.Fqdn(b)) }

// wildcardOf returns "*." + name.
func wildcardOf(name string) string {
	if name == "." {
		return "*."
	}
	return "*." + name
}

// nextCloser returns the name one label longer than encloser on the way
// to name (RFC 5155 §1.3); name must be below encloser.
func nextCloser(name, encloser string) string {
	return suffix(name, dns.CountLabel(encloser)+1)
}

// hasType reports whether a type bitmap lists t.
func hasType(bitmap []uint16, t uint16) bool {
	for _, b := range bitmap {
		if b == t {
			return true
		}
	}
	return false
}
