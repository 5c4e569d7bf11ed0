package field

import (
	"errors"
	"strings"
	"testing"
)

func TestPrefix(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		err    error
		want   []string // FieldPath of each problem
		msgs   string
	}{
		{"nil", "cache", nil, nil, ""},
		{"relative path", "cache", Errorf("max_ttl", "must not be negative"), []string{"cache.max_ttl"}, "cache.max_ttl: must not be negative"},
		{"whole section", "upstreams[0].tls", Errorf("", "required"), []string{"upstreams[0].tls"}, "upstreams[0].tls: required"},
		{"index", "listeners", Errorf("[2].proto", "bad"), []string{"listeners[2].proto"}, "listeners[2].proto: bad"},
		{"plain error", "tls", errors.New("bad"), []string{"tls"}, "tls: bad"},
		{"joined and nested", "a", errors.Join(Errorf("b", "x"), Prefix("c", Errorf("d", "y"))),
			[]string{"a.b", "a.c.d"}, "a.b: x\na.c.d: y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Prefix(tt.prefix, tt.err)
			var got []string
			for _, e := range Flatten(err) {
				var fe *Error
				if !errors.As(e, &fe) {
					t.Fatalf("%v is not an *Error", e)
				}
				got = append(got, fe.FieldPath())
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("paths = %q, want %q", got, tt.want)
			}
			if err != nil && err.Error() != tt.msgs {
				t.Errorf("Error() = %q, want %q", err.Error(), tt.msgs)
			}
		})
	}
}
