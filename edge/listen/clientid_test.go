package listen

import "testing"

func TestClientIDFromSNI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, sni, server, want string
	}{
		{"label under server name", "phone-1.dns.example", "dns.example", "phone-1"},
		{"case folded", "Phone-1.DNS.example", "dns.example", "phone-1"},
		{"trailing dots", "tv.dns.example.", "dns.example.", "tv"},
		{"server name itself", "dns.example", "dns.example", ""},
		{"two labels under", "a.b.dns.example", "dns.example", ""},
		{"other domain", "tv.other.example", "dns.example", ""},
		{"suffix without dot", "tvdns.example", "dns.example", ""},
		{"no server name", "tv.dns.example", "", ""},
		{"no sni", "", "dns.example", ""},
		{"bad characters", "a_b.dns.example", "dns.example", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clientIDFromSNI(tt.sni, tt.server); got != tt.want {
				t.Errorf("clientIDFromSNI(%q, %q) = %q, want %q", tt.sni, tt.server, got, tt.want)
			}
		})
	}
}

func TestValidClientID(t *testing.T) {
	t.Parallel()
	long := make([]byte, 64)
	for i := range long {
		long[i] = 'a'
	}
	tests := []struct {
		id   string
		want bool
	}{
		{"alice", true}, {"a-1", true}, {"", false}, {"a.b", false},
		{"a/b", false}, {string(long[:63]), true}, {string(long), false},
	}
	for _, tt := range tests {
		if got := ValidClientID(tt.id); got != tt.want {
			t.Errorf("ValidClientID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}
