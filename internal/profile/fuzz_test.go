package profile

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"strings"
	"testing"

	"howett.net/plist"
)

// FuzzJudge: any reply bytes give a verdict without panicking, and the
// verdict is Android's: pass exactly when the header is whole, the ID is
// the query's and QDCOUNT is 1.
func FuzzJudge(f *testing.F) {
	f.Add([]byte{0, 7, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 7, 0x81, 0x85, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 7})
	f.Fuzz(func(t *testing.T, reply []byte) {
		_, err := judge(reply, 7, "x")
		want := len(reply) >= 12 && binary.BigEndian.Uint16(reply) == 7 && binary.BigEndian.Uint16(reply[4:]) == 1
		if want != (err == nil) {
			t.Fatalf("judge(%x) = %v, want pass %v", reply, err, want)
		}
	})
}

// FuzzAppleBuild: whatever URL, name, address and domain are given, Build
// either refuses them or writes a property list that reads back with
// them in it.
func FuzzAppleBuild(f *testing.F) {
	f.Add("https://dns.example/dns-query", "", "192.0.2.1", "corp.example", "Office")
	f.Add("", "dns.example", "2001:db8::1", "*.svc.example", "")
	f.Add("http://x/y", "", "", "", "")
	f.Add("", "<&>.example", "", "a]]>b", "<ssid>&")
	f.Fuzz(func(t *testing.T, doh, dot, addr, domain, ssid string) {
		a := Apple{DoH: doh, DoT: dot, UUIDSeed: "fuzz", DisplayName: ssid}
		if addr != "" {
			a.ServerAddresses = []string{addr}
		}
		if domain != "" {
			a.MatchDomains = []string{domain}
		}
		if ssid != "" {
			a.OnDemand = &OnDemand{ExceptSSIDs: []string{ssid}}
		}
		data, err := a.Build(rand.Reader)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is more than one line", err)
			}
			return
		}
		var top struct {
			PayloadContent []struct {
				DNSSettings struct{ ServerURL, ServerName string }
			}
		}
		if _, err := plist.Unmarshal(data, &top); err != nil {
			t.Fatalf("the profile does not read back: %v\n%s", err, data)
		}
		got := top.PayloadContent[0].DNSSettings
		if got.ServerURL != doh || got.ServerName != strings.TrimSuffix(dot, ".") {
			t.Fatalf("read back %+v from DoH %q DoT %q", got, doh, dot)
		}
		if !bytes.Contains(data, []byte("com.apple.dnsSettings.managed")) {
			t.Fatal("no DNS payload")
		}
	})
}
