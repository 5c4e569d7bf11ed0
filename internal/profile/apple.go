// Package profile makes what phones need to use dnsedge: Apple
// configuration profiles (.mobileconfig) with an encrypted DNS payload,
// optionally signed, and the check Android's Private DNS runs against a
// DNS-over-TLS server before it uses it.
//
// The Apple payload keys are those of Apple's device-management reference
// for com.apple.dnsSettings.managed (iOS 14, macOS 11) and
// com.apple.security.root; the Android check follows the DnsResolver
// module's DnsTlsTransport::validate.
package profile

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/google/uuid"
	"howett.net/plist"
)

// Interface types an on-demand rule can match (InterfaceTypeMatch).
const (
	WiFi     = "WiFi"
	Cellular = "Cellular"
	Ethernet = "Ethernet"
)

// Apple describes a configuration profile with one
// com.apple.dnsSettings.managed payload and, optionally, root certificate
// payloads. Exactly one of DoH and DoT is set. The zero value of every
// other field leaves its key out or takes the default that field names.
type Apple struct {
	// DoH is the DNS-over-HTTPS URL (ServerURL, DNSProtocol HTTPS): an
	// https:// URL with a host and the endpoint's path, as
	// https://dns.example/dns-query.
	DoH string
	// DoT is the DNS-over-TLS server name (ServerName, DNSProtocol TLS),
	// which the device verifies the certificate against; port 853.
	DoT string
	// ServerAddresses are the server's IP addresses; without them the
	// device resolves the host of DoH or DoT.
	ServerAddresses []string
	// MatchDomains (SupplementalMatchDomains) limit the DNS settings to
	// names under these domains; empty means every name.
	MatchDomains []string
	// OnDemand, when not nil, becomes OnDemandRules; nil applies the
	// settings on every network.
	OnDemand *OnDemand
	// RootCAs are PEM certificates installed as com.apple.security.root
	// payloads, one each, so that a private CA's certificate is trusted.
	RootCAs []byte
	// Identifier is the profile's PayloadIdentifier (default "dnsedge."
	// and the server's host); payloads append ".dns" and ".root.N".
	Identifier string
	// DisplayName is the PayloadDisplayName (default "DNS over HTTPS
	// (host)" or "DNS over TLS (host)").
	DisplayName string
	// Organization is the PayloadOrganization, left out when empty.
	Organization string
	// UUIDSeed, when set, derives every PayloadUUID from it (name-based
	// UUIDs, RFC 9562 version 5), so a profile made again with the same
	// seed has the same UUIDs; empty makes random ones.
	UUIDSeed string
}

// OnDemand is a small on-demand rule set: the DNS settings are not
// applied on the Wi-Fi networks named in ExceptSSIDs, and are applied on
// the interface types in Interfaces (all types when empty) and nowhere
// else. Rules are evaluated in order and the first match wins, so the
// rules are: Disconnect on ExceptSSIDs, then Connect per interface type,
// then Disconnect for anything else (only when Interfaces is not empty).
type OnDemand struct {
	Interfaces  []string // WiFi, Cellular, Ethernet
	ExceptSSIDs []string
}

// Errors of Validate; the message wrapped around them names the value.
var (
	ErrProtocol    = errors.New("give exactly one of a DoH URL or a DoT server name")
	ErrDoHURL      = errors.New("bad DoH URL")
	ErrDoTName     = errors.New("bad DoT server name")
	ErrAddress     = errors.New("bad server address")
	ErrDomain      = errors.New("bad match domain")
	ErrOnDemand    = errors.New("bad on-demand rule")
	ErrCertificate = errors.New("bad root certificate")
	ErrText        = errors.New("bad text")
)

// Validate reports the first problem with a, or nil.
func (a *Apple) Validate() error {
	if (a.DoH == "") == (a.DoT == "") {
		return ErrProtocol
	}
	if a.DoH != "" {
		if _, err := DoHHost(a.DoH); err != nil {
			return err
		}
	} else if err := checkDoTName(a.DoT); err != nil {
		return err
	}
	for _, s := range a.ServerAddresses {
		if ip, err := netip.ParseAddr(s); err != nil || ip.Zone() != "" {
			return fmt.Errorf("%w %q: not an IPv4 or IPv6 address", ErrAddress, s)
		}
	}
	for _, d := range a.MatchDomains {
		if _, err := matchDomain(d); err != nil {
			return err
		}
	}
	if a.OnDemand != nil {
		if err := a.OnDemand.validate(); err != nil {
			return err
		}
	}
	for _, t := range []struct{ what, s string }{{"identifier", a.Identifier}, {"display name", a.DisplayName}, {"organization", a.Organization}} {
		if err := checkText(t.what, t.s); err != nil {
			return err
		}
	}
	if len(a.RootCAs) > 0 {
		if _, err := rootCerts(a.RootCAs); err != nil {
			return err
		}
	}
	return nil
}

func (o *OnDemand) validate() error {
	for _, i := range o.Interfaces {
		if i != WiFi && i != Cellular && i != Ethernet {
			return fmt.Errorf("%w: interface type %q is not one of WiFi, Cellular, Ethernet", ErrOnDemand, i)
		}
	}
	for _, s := range o.ExceptSSIDs {
		if s == "" || len(s) > 32 {
			return fmt.Errorf("%w: SSID %q must be 1 to 32 bytes", ErrOnDemand, s)
		}
		if err := checkText("SSID", s); err != nil {
			return fmt.Errorf("%w: %v", ErrOnDemand, err)
		}
	}
	if len(o.Interfaces) == 0 && len(o.ExceptSSIDs) == 0 {
		return fmt.Errorf("%w: no interface type and no SSID", ErrOnDemand)
	}
	return nil
}

// The plist shapes. howett.net/plist writes dictionary keys sorted.
type (
	topLevel struct {
		PayloadContent      []any  `plist:"PayloadContent"`
		PayloadDisplayName  string `plist:"PayloadDisplayName"`
		PayloadDescription  string `plist:"PayloadDescription,omitempty"`
		PayloadIdentifier   string `plist:"PayloadIdentifier"`
		PayloadOrganization string `plist:"PayloadOrganization,omitempty"`
		PayloadType         string `plist:"PayloadType"`
		PayloadUUID         string `plist:"PayloadUUID"`
		PayloadVersion      int    `plist:"PayloadVersion"`
	}
	dnsPayload struct {
		DNSSettings         dnsSettings    `plist:"DNSSettings"`
		OnDemandRules       []onDemandRule `plist:"OnDemandRules,omitempty"`
		PayloadDisplayName  string         `plist:"PayloadDisplayName"`
		PayloadIdentifier   string         `plist:"PayloadIdentifier"`
		PayloadOrganization string         `plist:"PayloadOrganization,omitempty"`
		PayloadType         string         `plist:"PayloadType"`
		PayloadUUID         string         `plist:"PayloadUUID"`
		PayloadVersion      int            `plist:"PayloadVersion"`
	}
	dnsSettings struct {
		DNSProtocol              string   `plist:"DNSProtocol"`
		ServerURL                string   `plist:"ServerURL,omitempty"`
		ServerName               string   `plist:"ServerName,omitempty"`
		ServerAddresses          []string `plist:"ServerAddresses,omitempty"`
		SupplementalMatchDomains []string `plist:"SupplementalMatchDomains,omitempty"`
	}
	onDemandRule struct {
		Action             string   `plist:"Action"`
		InterfaceTypeMatch string   `plist:"InterfaceTypeMatch,omitempty"`
		SSIDMatch          []string `plist:"SSIDMatch,omitempty"`
	}
	rootPayload struct {
		PayloadCertificateFileName string `plist:"PayloadCertificateFileName"`
		PayloadContent             []byte `plist:"PayloadContent"`
		PayloadDisplayName         string `plist:"PayloadDisplayName"`
		PayloadIdentifier          string `plist:"PayloadIdentifier"`
		PayloadType                string `plist:"PayloadType"`
		PayloadUUID                string `plist:"PayloadUUID"`
		PayloadVersion             int    `plist:"PayloadVersion"`
	}
)

// Build validates a and returns the profile as an XML property list.
// Random UUIDs are read from random (crypto/rand.Reader in production)
// unless UUIDSeed is set.
func (a *Apple) Build(random io.Reader) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	host, proto, kind := a.DoT, "TLS", "DNS over TLS"
	settings := dnsSettings{DNSProtocol: proto, ServerName: strings.TrimSuffix(a.DoT, ".")}
	if a.DoH != "" {
		host, _ = DoHHost(a.DoH)
		proto, kind = "HTTPS", "DNS over HTTPS"
		settings = dnsSettings{DNSProtocol: proto, ServerURL: a.DoH}
	}
	settings.ServerAddresses = a.ServerAddresses
	for _, d := range a.MatchDomains {
		m, _ := matchDomain(d)
		settings.SupplementalMatchDomains = append(settings.SupplementalMatchDomains, m)
	}
	id := a.Identifier
	if id == "" {
		id = "dnsedge." + strings.ToLower(strings.TrimSuffix(host, "."))
	}
	name := a.DisplayName
	if name == "" {
		name = fmt.Sprintf("%s (%s)", kind, host)
	}
	newUUID := func(role string) (string, error) {
		if a.UUIDSeed != "" {
			return strings.ToUpper(uuid.NewSHA1(uuid.NameSpaceURL, []byte("dnsedge-profile:"+a.UUIDSeed+"/"+role)).String()), nil
		}
		u, err := uuid.NewRandomFromReader(random)
		if err != nil {
			return "", fmt.Errorf("make a payload UUID: %w", err)
		}
		return strings.ToUpper(u.String()), nil
	}

	dnsUUID, err := newUUID("dns")
	if err != nil {
		return nil, err
	}
	payloads := []any{dnsPayload{
		DNSSettings:         settings,
		OnDemandRules:       a.OnDemand.rules(),
		PayloadDisplayName:  name,
		PayloadIdentifier:   id + ".dns",
		PayloadOrganization: a.Organization,
		PayloadType:         "com.apple.dnsSettings.managed",
		PayloadUUID:         dnsUUID,
		PayloadVersion:      1,
	}}
	if len(a.RootCAs) > 0 {
		certs, _ := rootCerts(a.RootCAs)
		for i, c := range certs {
			u, err := newUUID(fmt.Sprintf("root.%d", i))
			if err != nil {
				return nil, err
			}
			payloads = append(payloads, rootPayload{
				PayloadCertificateFileName: fmt.Sprintf("root-%d.cer", i),
				PayloadContent:             c.Raw,
				PayloadDisplayName:         certName(c),
				PayloadIdentifier:          fmt.Sprintf("%s.root.%d", id, i),
				PayloadType:                "com.apple.security.root",
				PayloadUUID:                u,
				PayloadVersion:             1,
			})
		}
	}
	topUUID, err := newUUID("profile")
	if err != nil {
		return nil, err
	}
	top := topLevel{
		PayloadContent:      payloads,
		PayloadDisplayName:  name,
		PayloadDescription:  fmt.Sprintf("Resolves names with %s through %s.", kind, host),
		PayloadIdentifier:   id,
		PayloadOrganization: a.Organization,
		PayloadType:         "Configuration",
		PayloadUUID:         topUUID,
		PayloadVersion:      1,
	}
	out, err := plist.MarshalIndent(top, plist.XMLFormat, "\t")
	if err != nil {
		return nil, fmt.Errorf("encode the profile: %w", err)
	}
	return append(out, '\n'), nil
}

// rules returns the OnDemandRules of o, or nil for a nil o.
func (o *OnDemand) rules() []onDemandRule {
	if o == nil {
		return nil
	}
	var rules []onDemandRule
	if len(o.ExceptSSIDs) > 0 {
		rules = append(rules, onDemandRule{Action: "Disconnect", InterfaceTypeMatch: WiFi, SSIDMatch: o.ExceptSSIDs})
	}
	if len(o.Interfaces) == 0 {
		return append(rules, onDemandRule{Action: "Connect"})
	}
	for _, i := range o.Interfaces {
		rules = append(rules, onDemandRule{Action: "Connect", InterfaceTypeMatch: i})
	}
	return append(rules, onDemandRule{Action: "Disconnect"})
}

func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}
