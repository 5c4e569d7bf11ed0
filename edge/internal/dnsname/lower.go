// Package dnsname holds helpers for domain names as miekg/dns spells them
// (presentation format, escapes left as they are).
package dnsname

// Lower folds ASCII upper case to lower case and leaves every other byte
// as it is: DNS compares names case-insensitively for ASCII letters only
// (RFC 4343 §3). strings.ToLower would rewrite bytes that are not UTF-8
// into U+FFFD and so change the name. s is returned without allocating
// when it has no upper-case letter.
func Lower(s string) string {
	i := 0
	// Eight bytes at a time while none is an upper-case letter; the last
	// word ends at the end of s, overlapping the one before.
	for i+8 <= len(s) {
		if hasUpper(s[i : i+8]) {
			break
		}
		switch {
		case i+8 == len(s):
			return s
		case i+16 > len(s):
			i = len(s) - 8
		default:
			i += 8
		}
	}
	for ; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// hasUpper reports whether the eight bytes of w hold an upper-case
// letter: a byte's high bit in upper says it is in 'A'..'Z'.
func hasUpper(w string) bool {
	x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
	const low7, high = 0x7f7f7f7f7f7f7f7f, 0x8080808080808080
	t := x & low7
	return (t+0x3f3f3f3f3f3f3f3f)&^(t+0x2525252525252525)&^x&high != 0
}
