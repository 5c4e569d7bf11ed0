package dnssec

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/internal/signedzones"
	"github.com/miekg/dns"
)

// TestVerifyBindSigned checks verifySig against a real signer: BIND's
// dnssec-keygen and dnssec-signzone sign a zone with each algorithm
// (ED448 above all, which miekg/dns cannot check), and every RRSIG of
// the signed file must verify with the zone's keys, and fail once a bit
// of it is flipped. Skipped without bind9's tools unless E2E_REQUIRED=1.
func TestVerifyBindSigned(t *testing.T) {
	t.Parallel()
	keygen, signzone := signedzones.Tool(t, "dnssec-keygen"), signedzones.Tool(t, "dnssec-signzone")
	const zone = "example."
	body := `$ORIGIN example.
$TTL 300
@ IN SOA NS1.Example. HostMaster.EXAMPLE. 1 3600 600 86400 60
@ IN NS ns1.Example.
@ IN MX 10 Mail.EXAMPLE.
@ IN MX 20 mail2.example.
ns1 IN A 192.0.2.1
www IN A 192.0.2.2
www IN A 192.0.2.3
www IN AAAA 2001:db8::1
alias IN CNAME WWW.Example.
_sip._udp IN SRV 0 5 5060 Sip.EXAMPLE.
* IN TXT "wild"
sub IN NS ns.Sub.Example.
ns.sub IN A 192.0.2.9
`
	for _, alg := range []string{"ED448", "ED25519", "ECDSAP256SHA256", "ECDSAP384SHA384", "RSASHA256", "RSASHA512"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			run := func(bin string, args ...string) string {
				t.Helper()
				cmd := exec.Command(bin, args...)
				cmd.Dir = dir
				out, err := cmd.Output()
				if err != nil {
					var stderr []byte
					if e, ok := err.(*exec.ExitError); ok {
						stderr = e.Stderr
					}
					t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr)
				}
				return strings.TrimSpace(string(out))
			}
			text := body
			for _, ksk := range []bool{true, false} {
				args := []string{"-q", "-K", dir, "-a", alg, "-n", "ZONE"}
				if strings.HasPrefix(alg, "RSA") {
					args = append(args, "-b", "2048")
				}
				if ksk {
					args = append(args, "-f", "KSK")
				}
				name := run(keygen, append(args, zone)...)
				key, err := os.ReadFile(filepath.Join(dir, name+".key"))
				if err != nil {
					t.Fatal(err)
				}
				text += string(key)
			}
			in := filepath.Join(dir, "db.in")
			if err := os.WriteFile(in, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "db")
			run(signzone, "-q", "-K", dir, "-d", dir, "-o", zone, "-O", "full", "-f", out, in)
			signed, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			zp := dns.NewZoneParser(strings.NewReader(string(signed)), zone, "")
			var rrs []dns.RR
			for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
				rrs = append(rrs, rr)
			}
			if err := zp.Err(); err != nil {
				t.Fatal(err)
			}
			var keys []*pubKey
			for _, rr := range rrs {
				if k, ok := rr.(*dns.DNSKEY); ok {
					p := newPubKey(k)
					if p.err != nil {
						t.Fatalf("%s: %v", k, p.err)
					}
					keys = append(keys, p)
				}
			}
			checked := map[uint16]int{}
			for _, s := range groupRRsets(rrs) {
				for _, sig := range s.sigs {
					var key *pubKey
					for _, k := range keys {
						if k.tag == sig.KeyTag {
							key = k
						}
					}
					if key == nil {
						t.Fatalf("no key %d for %s", sig.KeyTag, sig)
					}
					if err := verifySig(key, sig, s.rrs); err != nil {
						t.Errorf("%s %s: %v", s.name, dns.TypeToString[s.rrtype], err)
					}
					bad := dns.Copy(sig).(*dns.RRSIG)
					raw, _ := base64.StdEncoding.DecodeString(bad.Signature)
					raw[len(raw)/2] ^= 0x10
					bad.Signature = base64.StdEncoding.EncodeToString(raw)
					if err := verifySig(key, bad, s.rrs); err == nil {
						t.Errorf("%s %s: verifies with a flipped bit", s.name, dns.TypeToString[s.rrtype])
					}
					if s.name == "*."+zone { // as a resolver gets it, expanded
						exp := rename(s.rrs, "Foo.Bar."+zone)
						if err := verifySig(key, sig, exp); err != nil {
							t.Errorf("wildcard expanded to foo.bar.%s: %v", zone, err)
						}
						checked[0]++
					}
					checked[s.rrtype]++
				}
			}
			for _, ty := range []uint16{0, dns.TypeSOA, dns.TypeMX, dns.TypeA, dns.TypeCNAME, dns.TypeSRV, dns.TypeTXT, dns.TypeNSEC, dns.TypeDNSKEY} {
				if checked[ty] == 0 {
					t.Errorf("no RRSIG over a %s set checked", dns.TypeToString[ty])
				}
			}
		})
	}
}
