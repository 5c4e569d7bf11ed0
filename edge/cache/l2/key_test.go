package l2

import "testing"

func TestAppendKey(t *testing.T) {
	t.Parallel()
	ck := func(s string) []byte { return []byte("\x03www\x00\x00\x01\x00\x01\x00" + s) }
	tests := []struct {
		name     string
		ns1, t1  string
		ck1      []byte
		ns2, t2  string
		ck2      []byte
		wantSame bool
	}{
		{"same", "n", "a", ck(""), "n", "a", ck(""), true},
		{"tenants", "n", "a", ck(""), "n", "b", ck(""), false},
		{"tenant and no tenant", "n", "a", ck(""), "n", "", ck(""), false},
		{"tenant bytes cannot move into the key", "n", "ab", ck(""), "n", "a", append([]byte("b"), ck("")...), false},
		{"namespaces", "n1", "a", ck(""), "n2", "a", ck(""), false},
		{"routes", "n", "a", ck("r1"), "n", "a", ck("r2"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k1 := string(AppendKey(nil, KeyPrefix(tt.ns1, "off"), tt.t1, tt.ck1))
			k2 := string(AppendKey(nil, KeyPrefix(tt.ns2, "off"), tt.t2, tt.ck2))
			if (k1 == k2) != tt.wantSame {
				t.Errorf("%q vs %q: same %v, want %v", k1, k2, k1 == k2, tt.wantSame)
			}
		})
	}
	if k := string(AppendKey(nil, KeyPrefix("dnsedge", "off"), "", nil)); k != "dnsedge:"+SchemaVersion+":off:\x00\x00" {
		t.Errorf("key %q does not start with the namespace, schema version and validation", k)
	}
	if KeyPrefix("n", "off") == KeyPrefix("n", "0123abcd") {
		t.Error("validating and non-validating instances share keys")
	}
}
