// Package dnsname holds helpers for domain names as miekg/dns spells them
// (presentation format, escapes left as they are).
package dnsname

// Lower folds ASCII upper case to lower case and leaves every other byte
// as it is: DNS compares names case-insensitively for ASCII letters only
// (RFC 4343 §3). strings.ToLower would rewrite bytes that are not UTF-8
// into U+FFFD and so change the name. s is returned without allocating
// when it has no upper-case letter.
func Lower(s string) string {
	for i := 0; i < len(s); i++ {
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
