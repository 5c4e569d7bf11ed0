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
	// Eight bytes at a time while none is an upper-case letter: a byte's
	// high bit in upper says it is in 'A'..'Z'.
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		const low7, high = 0x7f7f7f7f7f7f7f7f, 0x8080808080808080
		t := x & low7
		upper := (t + 0x3f3f3f3f3f3f3f3f) &^ (t + 0x2525252525252525) &^ x & high
		if upper != 0 {
			break
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
