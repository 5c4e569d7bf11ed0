package listen

import "strings"

// maxClientID is the longest client id accepted: one DNS label.
const maxClientID = 63

// ValidClientID reports whether id can be a client id: 1 to 63 letters,
// digits and hyphens, so that it is one DNS label and safe in logs and
// metrics labels. Client ids come from DoH paths and TLS SNI.
func ValidClientID(id string) bool {
	if id == "" || len(id) > maxClientID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// clientIDFromSNI returns the client id a TLS server name carries: the
// first label of sni when sni is exactly one label under serverName
// ("phone-1.dns.example" under "dns.example" gives "phone-1"), compared
// without case; "" otherwise, and always when serverName is empty. The id
// is lower-cased.
func clientIDFromSNI(sni, serverName string) string {
	if serverName == "" || len(sni) <= len(serverName)+1 {
		return ""
	}
	sni = strings.TrimSuffix(sni, ".")
	serverName = strings.TrimSuffix(serverName, ".")
	cut := len(sni) - len(serverName) - 1
	if cut <= 0 || sni[cut] != '.' || !strings.EqualFold(sni[cut+1:], serverName) {
		return ""
	}
	id := sni[:cut]
	if !ValidClientID(id) {
		return ""
	}
	return strings.ToLower(id)
}
