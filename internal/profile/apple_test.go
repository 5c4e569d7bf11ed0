package profile

import (
	"bytes"
	"crypto/rand"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"howett.net/plist"
)

var uuidRE = regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$`)

func TestAppleValidate(t *testing.T) {
	ca := newTestCA(t, "Test Root")
	leaf, _ := ca.leaf(t, "dns.example", []string{"dns.example"}, time.Now(), time.Now().Add(time.Hour), false)
	tests := []struct {
		name    string
		a       Apple
		wantErr error
		wantMsg string
	}{
		{"doh", Apple{DoH: "https://dns.example/dns-query"}, nil, ""},
		{"doh with template and port", Apple{DoH: "https://dns.example:8443/dns-query{?dns}"}, nil, ""},
		{"doh with an address host", Apple{DoH: "https://192.0.2.1/dns-query"}, nil, ""},
		{"dot", Apple{DoT: "dns.example"}, nil, ""},
		{"neither", Apple{}, ErrProtocol, "exactly one"},
		{"both", Apple{DoH: "https://dns.example/dns-query", DoT: "dns.example"}, ErrProtocol, "exactly one"},
		{"http doh", Apple{DoH: "http://dns.example/dns-query"}, ErrDoHURL, "http:// would send queries in the clear"},
		{"other scheme", Apple{DoH: "tls://dns.example/dns-query"}, ErrDoHURL, "must be https://"},
		{"doh without host", Apple{DoH: "https:///dns-query"}, ErrDoHURL, "no host"},
		{"doh without path", Apple{DoH: "https://dns.example"}, ErrDoHURL, "no path"},
		{"doh with root path", Apple{DoH: "https://dns.example/"}, ErrDoHURL, "no path"},
		{"doh with user", Apple{DoH: "https://u:p@dns.example/dns-query"}, ErrDoHURL, "user name"},
		{"dot ipv4", Apple{DoT: "192.0.2.1"}, ErrDoTName, "an IP address"},
		{"dot ipv6", Apple{DoT: "2001:db8::1"}, ErrDoTName, "an IP address"},
		{"dot bracketed ipv6", Apple{DoT: "[2001:db8::1]"}, ErrDoTName, "an IP address"},
		{"dot with port", Apple{DoT: "dns.example:853"}, ErrDoTName, "without scheme, port or path"},
		{"dot url", Apple{DoT: "tls://dns.example"}, ErrDoTName, "without scheme, port or path"},
		{"dot empty label", Apple{DoT: "dns..example"}, ErrDoTName, "not a host name"},
		{"addresses", Apple{DoT: "dns.example", ServerAddresses: []string{"192.0.2.1", "2001:db8::1"}}, nil, ""},
		{"bad address", Apple{DoT: "dns.example", ServerAddresses: []string{"dns.example"}}, ErrAddress, "not an IPv4 or IPv6 address"},
		{"zoned address", Apple{DoT: "dns.example", ServerAddresses: []string{"fe80::1%eth0"}}, ErrAddress, ""},
		{"match domains", Apple{DoT: "dns.example", MatchDomains: []string{"corp.example", "*.svc.example", "lab.example."}}, nil, ""},
		{"two wildcards", Apple{DoT: "dns.example", MatchDomains: []string{"*.*.example"}}, ErrDomain, ""},
		{"bare wildcard", Apple{DoT: "dns.example", MatchDomains: []string{"*"}}, ErrDomain, ""},
		{"empty domain", Apple{DoT: "dns.example", MatchDomains: []string{""}}, ErrDomain, ""},
		{"on demand", Apple{DoT: "dns.example", OnDemand: &OnDemand{Interfaces: []string{WiFi, Cellular}, ExceptSSIDs: []string{"Office"}}}, nil, ""},
		{"on demand bad type", Apple{DoT: "dns.example", OnDemand: &OnDemand{Interfaces: []string{"Bluetooth"}}}, ErrOnDemand, "Bluetooth"},
		{"on demand long ssid", Apple{DoT: "dns.example", OnDemand: &OnDemand{ExceptSSIDs: []string{strings.Repeat("x", 33)}}}, ErrOnDemand, "1 to 32 bytes"},
		{"on demand empty", Apple{DoT: "dns.example", OnDemand: &OnDemand{}}, ErrOnDemand, ""},
		{"root ca", Apple{DoT: "dns.example", RootCAs: ca.pem()}, nil, ""},
		{"leaf as root", Apple{DoT: "dns.example", RootCAs: certPEM(leaf)}, ErrCertificate, "not a CA certificate"},
		{"no pem", Apple{DoT: "dns.example", RootCAs: []byte("hello")}, ErrCertificate, "no PEM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.a.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Validate: %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Validate: %q, want it to say %q", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("Validate: %q is more than one line", err)
			}
			if _, err := tt.a.Build(rand.Reader); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Build: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// decode reads a profile back as a generic property list.
func decode(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	format, err := plist.Unmarshal(data, &m)
	if err != nil {
		t.Fatalf("decode the profile: %v\n%s", err, data)
	}
	if format != plist.XMLFormat {
		t.Fatalf("profile format %d, want XML", format)
	}
	return m
}

func TestAppleBuild(t *testing.T) {
	ca := newTestCA(t, "Corp Root")
	tests := []struct {
		name      string
		a         Apple
		settings  map[string]any
		rules     []any
		roots     int
		wantID    string
		wantTitle string
	}{
		{
			name: "doh with everything",
			a: Apple{
				DoH:             "https://dns.example/dns-query",
				ServerAddresses: []string{"192.0.2.1", "2001:db8::1"},
				MatchDomains:    []string{"Corp.Example.", "*.svc.example"},
				OnDemand:        &OnDemand{Interfaces: []string{WiFi, Cellular}, ExceptSSIDs: []string{"Office", "Lab"}},
				RootCAs:         ca.pem(),
				Organization:    "Example Ops",
			},
			settings: map[string]any{
				"DNSProtocol":              "HTTPS",
				"ServerURL":                "https://dns.example/dns-query",
				"ServerAddresses":          []any{"192.0.2.1", "2001:db8::1"},
				"SupplementalMatchDomains": []any{"corp.example", "*.svc.example"},
			},
			rules: []any{
				map[string]any{"Action": "Disconnect", "InterfaceTypeMatch": "WiFi", "SSIDMatch": []any{"Office", "Lab"}},
				map[string]any{"Action": "Connect", "InterfaceTypeMatch": "WiFi"},
				map[string]any{"Action": "Connect", "InterfaceTypeMatch": "Cellular"},
				map[string]any{"Action": "Disconnect"},
			},
			roots:     1,
			wantID:    "dnsedge.dns.example",
			wantTitle: "DNS over HTTPS (dns.example)",
		},
		{
			name:      "dot plain",
			a:         Apple{DoT: "dns.example", Identifier: "com.example.dns", DisplayName: "Example DNS"},
			settings:  map[string]any{"DNSProtocol": "TLS", "ServerName": "dns.example"},
			wantID:    "com.example.dns",
			wantTitle: "Example DNS",
		},
		{
			name:      "dot except one ssid everywhere else",
			a:         Apple{DoT: "dns.example", OnDemand: &OnDemand{ExceptSSIDs: []string{"Home"}}},
			settings:  map[string]any{"DNSProtocol": "TLS", "ServerName": "dns.example"},
			rules:     []any{map[string]any{"Action": "Disconnect", "InterfaceTypeMatch": "WiFi", "SSIDMatch": []any{"Home"}}, map[string]any{"Action": "Connect"}},
			wantID:    "dnsedge.dns.example",
			wantTitle: "DNS over TLS (dns.example)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := tt.a.Build(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			top := decode(t, data)
			if top["PayloadType"] != "Configuration" || top["PayloadVersion"] != uint64(1) || top["PayloadIdentifier"] != tt.wantID || top["PayloadDisplayName"] != tt.wantTitle {
				t.Errorf("top level: %v", top)
			}
			content := top["PayloadContent"].([]any)
			if len(content) != 1+tt.roots {
				t.Fatalf("%d payloads, want %d", len(content), 1+tt.roots)
			}
			uuids := []string{top["PayloadUUID"].(string)}
			dns := content[0].(map[string]any)
			if dns["PayloadType"] != "com.apple.dnsSettings.managed" || dns["PayloadIdentifier"] != tt.wantID+".dns" || dns["PayloadVersion"] != uint64(1) {
				t.Errorf("dns payload: %v", dns)
			}
			if got := dns["DNSSettings"]; !equal(got, tt.settings) {
				t.Errorf("DNSSettings = %#v, want %#v", got, tt.settings)
			}
			if got := dns["OnDemandRules"]; !equal(got, tt.rules) && !(got == nil && tt.rules == nil) {
				t.Errorf("OnDemandRules = %#v, want %#v", got, tt.rules)
			}
			uuids = append(uuids, dns["PayloadUUID"].(string))
			for _, p := range content[1:] {
				root := p.(map[string]any)
				if root["PayloadType"] != "com.apple.security.root" || !bytes.Equal(root["PayloadContent"].([]byte), ca.cert.Raw) || root["PayloadDisplayName"] != "Corp Root" {
					t.Errorf("root payload: %v", root)
				}
				uuids = append(uuids, root["PayloadUUID"].(string))
			}
			for _, u := range uuids {
				if !uuidRE.MatchString(u) {
					t.Errorf("PayloadUUID %q is not an upper-case UUID", u)
				}
			}
			if len(slices.Compact(slices.Sorted(slices.Values(uuids)))) != len(uuids) {
				t.Errorf("PayloadUUIDs repeat: %v", uuids)
			}
		})
	}
}

func equal(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			if !equal(v, b[k]) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equal(a[i], b[i]) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}

// TestAppleUUIDs: a seed makes the same UUIDs every time, and different
// ones for another seed; without a seed every build has new ones.
func TestAppleUUIDs(t *testing.T) {
	ca := newTestCA(t, "Root")
	build := func(seed string) []string {
		a := Apple{DoT: "dns.example", RootCAs: ca.pem(), UUIDSeed: seed}
		data, err := a.Build(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return regexp.MustCompile(`[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}`).FindAllString(string(data), -1)
	}
	a1, a2, b, r1, r2 := build("fleet-1"), build("fleet-1"), build("fleet-2"), build(""), build("")
	if len(a1) != 3 || !slices.Equal(a1, a2) {
		t.Errorf("same seed: %v and %v", a1, a2)
	}
	for i := range a1 {
		if a1[i] == b[i] || r1[i] == r2[i] {
			t.Errorf("UUID %d repeats across seeds or random builds: %v %v %v %v", i, a1, b, r1, r2)
		}
	}
}
