package listen

import (
	"slices"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

func TestKinds(t *testing.T) {
	t.Parallel()
	for _, k := range Kinds() {
		if k.Proto != k.Kind.String() {
			t.Errorf("proto %q names kind %v", k.Proto, k.Kind)
		}
		if k.Encrypted != k.Kind.Encrypted() {
			t.Errorf("%s: Encrypted %v, pipeline says %v", k.Proto, k.Encrypted, k.Kind.Encrypted())
		}
		if got, ok := LookupKind(k.Proto); !ok || got.Kind != k.Kind {
			t.Errorf("LookupKind(%q) = %v, %v", k.Proto, got, ok)
		}
	}
	if _, ok := LookupKind("sctp"); ok {
		t.Error("LookupKind(sctp) found a kind")
	}
	if got := strings.Join(KindNames(), " "); got != "udp tcp dot doh doq" {
		t.Errorf("KindNames() = %q", got)
	}
	if got := KindsWith(OptPath); !slices.Equal(got, []string{"doh"}) {
		t.Errorf("KindsWith(path) = %q", got)
	}
	doh, _ := LookupKind(pipeline.KindDoH.String())
	if n := doh.Networks(true); len(n) != 2 || n[1] != "udp" {
		t.Errorf("doh with http3 binds %v", n)
	}
	if n := doh.Networks(false); len(n) != 1 || n[0] != "tcp" {
		t.Errorf("doh binds %v", n)
	}
}
