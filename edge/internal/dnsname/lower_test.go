package dnsname

import "testing"

func TestLower(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"already lower", "www.example.", "www.example."},
		{"ASCII folded", "WwW.ExAmPlE.", "www.example."},
		{"bytes that are not UTF-8 kept", "A\xa7\xa7.b.", "a\xa7\xa7.b."},
		{"UTF-8 letters kept", "Ä.example.", "Ä.example."},
		{"escapes kept", `A\065.B.`, `a\065.b.`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Lower(tt.in); got != tt.want {
				t.Errorf("Lower(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { Lower("www.example.") }); n != 0 {
		t.Errorf("%v allocations for a lower-case name", n)
	}
}
