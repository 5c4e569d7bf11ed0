// Package signedzones builds a tree of DNSSEC-signed test zones with BIND's
// dnssec-keygen and dnssec-signzone, serves it from one named on loopback,
// and runs unbound beside it as a validating oracle. Tests in edge and
// cmd/dnsedge use it to check dnsedge's validator end to end.
//
// The tree is the parent zone "test." (its DS is the trust anchor, see
// Zones.Anchors) with these children, each delegated from it:
//
//	nsec.test.         signed, NSEC, algorithm 13
//	nsec3.test.        signed, NSEC3 (no salt, 0 iterations), algorithm 8
//	optout.test.       signed, NSEC3 opt-out, with the unsigned delegation
//	                   unsigned.optout.test. (served unsigned)
//	tampered.test.     signed, then www's A record changed
//	nosig.test.        signed, then the RRSIG of www's A removed
//	nonsec.test.       signed, then every NSEC record but the apex's removed
//	expired.test.      signed with signatures that expired in 2020
//	badds.test.        signed; the parent's DS is of another key
//	unsupported.test.  signed, then its keys and signatures rewritten to
//	                   algorithm 253 (PRIVATEDNS), which no validator knows
//	wild.test.         signed, NSEC, with a wildcard
//	ed448.test.        signed, NSEC, algorithm 16 (ED448, RFC 8080)
//	insecure.test.     unsigned, delegated without DS
//
// Cases lists, for each zone, the names and types to ask and what a
// validator must say. Everything runs from the test's temporary directory;
// nothing here touches a package variable, so tests may run in parallel.
package signedzones

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Parent is the zone whose DS is the trust anchor.
const Parent = "test."

// hostRecords are the records every child zone holds, relative to its
// origin: a name with an A record (ask AAAA for NODATA) and a second one
// that stays intact in the tampered zone.
const hostRecords = `www IN A 192.0.2.1
ok  IN A 192.0.2.2
ok  IN TXT "intact"
`

// zone describes one zone of the tree.
type zone struct {
	origin string
	body   string // records after the SOA and NS, relative to origin
	alg    string // dnssec-keygen algorithm; "" leaves the zone unsigned
	rsa    bool   // key size needed (RSA)
	nsec3  bool
	optout bool
	// expired signs with signatures valid only in January 2020.
	expired bool
	// edit changes the signed records before named loads them.
	edit func(rrs []dns.RR) ([]dns.RR, error)
	// delegate: whether and how the parent delegates (the DS it holds).
	noDS bool
	// wrongDS: the parent's DS is made from a key the zone does not hold.
	wrongDS bool
}

// tree is every zone but the parent, which is built from it.
func tree() []zone {
	return []zone{
		{origin: "nsec.test.", body: hostRecords, alg: "ECDSAP256SHA256"},
		{origin: "nsec3.test.", body: hostRecords + "*.w IN A 192.0.2.9\n", alg: "RSASHA256", rsa: true, nsec3: true},
		{origin: "optout.test.", body: hostRecords + "unsigned IN NS ns.test.\n", alg: "ECDSAP256SHA256", nsec3: true, optout: true},
		{origin: "unsigned.optout.test.", body: hostRecords},
		{origin: "tampered.test.", body: hostRecords, alg: "ECDSAP256SHA256", edit: tamper},
		{origin: "nosig.test.", body: hostRecords, alg: "ECDSAP256SHA256", edit: stripRRSIG},
		{origin: "nonsec.test.", body: hostRecords, alg: "ECDSAP256SHA256", edit: stripNSEC},
		{origin: "expired.test.", body: hostRecords, alg: "ECDSAP256SHA256", expired: true},
		{origin: "badds.test.", body: hostRecords, alg: "ECDSAP256SHA256", wrongDS: true},
		{origin: "unsupported.test.", body: hostRecords, alg: "ECDSAP256SHA256", edit: privateAlgorithm},
		{origin: "wild.test.", body: hostRecords + "* IN A 192.0.2.7\n", alg: "ECDSAP256SHA256"},
		{origin: "ed448.test.", body: hostRecords, alg: "ED448"},
		{origin: "insecure.test.", body: hostRecords, noDS: true},
	}
}

// Zones is a built tree: the signed zone files in Dir and the anchor.
type Zones struct {
	// Dir holds the zone files (<origin>db) and keys.
	Dir string
	// Origins lists the zones named must load, parent first.
	Origins []string
	// Anchors are the DS records of the parent's key-signing key, in
	// presentation format: what dnsedge's trust_anchors and unbound's
	// trust-anchor are given.
	Anchors []string
	// Keys holds each signed zone's DNSKEYs as served (key-signing key
	// first), for checking the key tags a validator reports.
	Keys map[string][]*dns.DNSKEY
}

// Tool returns the path of an external program, skipping the test when it
// is missing unless E2E_REQUIRED=1, which makes it fail instead.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// Daemons live in sbin, which a non-login PATH may lack.
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	if os.Getenv("E2E_REQUIRED") == "1" {
		t.Fatalf("%s is required (E2E_REQUIRED=1) but not installed", name)
	}
	t.Skipf("%s not installed (signed-zone tests need bind9, bind9-dnsutils and unbound; E2E_REQUIRED=1 makes this a failure)", name)
	return ""
}

// Build generates keys and signs the whole tree in a temporary directory.
func Build(t testing.TB) *Zones {
	t.Helper()
	keygen, signzone := Tool(t, "dnssec-keygen"), Tool(t, "dnssec-signzone")
	z := &Zones{Keys: make(map[string][]*dns.DNSKEY)}
	b := &builder{t: t, dir: t.TempDir(), keygen: keygen, signzone: signzone, keys: z.Keys}
	z.Dir = b.dir
	var parent strings.Builder
	parent.WriteString("ns IN A 127.0.0.1\nwww IN A 192.0.2.1\nok IN A 192.0.2.2\n")
	for _, c := range tree() {
		z.Origins = append(z.Origins, c.origin)
		ds := b.build(c)
		if strings.Count(c.origin, ".") > 2 {
			continue // delegated from its own parent's body
		}
		label := strings.TrimSuffix(c.origin, "."+Parent)
		fmt.Fprintf(&parent, "%s IN NS ns.test.\n", label)
		for _, rr := range ds {
			fmt.Fprintf(&parent, "%s\n", rr.String())
		}
	}
	ds := b.build(zone{origin: Parent, body: parent.String(), alg: "ECDSAP256SHA256"})
	z.Origins = append([]string{Parent}, z.Origins...)
	for _, rr := range ds {
		z.Anchors = append(z.Anchors, strings.Join(strings.Fields(rr.String()), " "))
	}
	return z
}

type builder struct {
	t                     testing.TB
	dir, keygen, signzone string
	keys                  map[string][]*dns.DNSKEY
}

func (b *builder) run(bin string, args ...string) string {
	b.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = b.dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// key makes a key for origin and returns its DNSKEY record.
func (b *builder) key(c zone, ksk bool) *dns.DNSKEY {
	b.t.Helper()
	args := []string{"-q", "-K", b.dir, "-a", c.alg, "-n", "ZONE"}
	if c.rsa {
		args = append(args, "-b", "2048")
	}
	if ksk {
		args = append(args, "-f", "KSK")
	}
	name := b.run(b.keygen, append(args, c.origin)...)
	text, err := os.ReadFile(filepath.Join(b.dir, name+".key"))
	if err != nil {
		b.t.Fatal(err)
	}
	rrs := parse(b.t, c.origin, string(text))
	for _, rr := range rrs {
		if k, ok := rr.(*dns.DNSKEY); ok {
			return k
		}
	}
	b.t.Fatalf("%s.key holds no DNSKEY:\n%s", name, text)
	return nil
}

// build writes origin's zone file (signed when c.alg is set) and returns
// the DS records its parent should hold.
func (b *builder) build(c zone) []dns.RR {
	b.t.Helper()
	file := filepath.Join(b.dir, c.origin+"db")
	text := fmt.Sprintf("$ORIGIN %s\n$TTL 300\n@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n@ IN NS ns.test.\n%s", c.origin, c.body)
	if c.alg == "" {
		write(b.t, file, text)
		return nil
	}
	ksk, zsk := b.key(c, true), b.key(c, false)
	text += ksk.String() + "\n" + zsk.String() + "\n"
	write(b.t, file+".in", text)
	args := []string{"-q", "-K", b.dir, "-d", b.dir, "-o", c.origin, "-O", "full", "-f", file}
	if c.nsec3 {
		args = append(args, "-3", "-", "-H", "0")
	}
	if c.optout {
		args = append(args, "-A")
	}
	if c.expired {
		args = append(args, "-P", "-s", "20200101000000", "-e", "20200201000000")
	}
	b.run(b.signzone, append(args, file+".in")...)
	if c.edit != nil {
		signed, err := os.ReadFile(file)
		if err != nil {
			b.t.Fatal(err)
		}
		rrs, err := c.edit(parse(b.t, c.origin, string(signed)))
		if err != nil {
			b.t.Fatalf("edit %s: %v", c.origin, err)
		}
		var out strings.Builder
		for _, rr := range rrs {
			out.WriteString(rr.String() + "\n")
			if k, ok := rr.(*dns.DNSKEY); ok && k.Flags&dns.SEP != 0 {
				ksk = k
			} else if ok {
				zsk = k
			}
		}
		write(b.t, file, out.String())
	}
	b.keys[c.origin] = []*dns.DNSKEY{ksk, zsk}
	if c.noDS {
		return nil
	}
	if c.wrongDS {
		ksk = b.key(c, true)
	}
	ds := ksk.ToDS(dns.SHA256)
	ds.Hdr.Ttl = 300
	return []dns.RR{ds}
}

// tamper changes www's address after signing: its RRSIG no longer
// verifies.
func tamper(rrs []dns.RR) ([]dns.RR, error) {
	for _, rr := range rrs {
		if a, ok := rr.(*dns.A); ok && strings.HasPrefix(a.Hdr.Name, "www.") {
			a.A = net.IPv4(192, 0, 2, 66)
			return rrs, nil
		}
	}
	return nil, fmt.Errorf("no www A record to tamper with")
}

// stripRRSIG removes the signature of www's A record: its answer comes
// without RRSIG.
func stripRRSIG(rrs []dns.RR) ([]dns.RR, error) {
	return drop(rrs, func(rr dns.RR) bool {
		s, ok := rr.(*dns.RRSIG)
		return ok && s.TypeCovered == dns.TypeA && strings.HasPrefix(s.Hdr.Name, "www.")
	})
}

// stripNSEC removes every NSEC record but the apex's, and their
// signatures: denials of names after the apex's next name come without
// proof. (named serves signatures only from a zone whose apex has an NSEC
// or NSEC3PARAM, so that one stays.)
func stripNSEC(rrs []dns.RR) ([]dns.RR, error) {
	apex := rrs[0].Header().Name
	return drop(rrs, func(rr dns.RR) bool {
		s, ok := rr.(*dns.RRSIG)
		nsec := rr.Header().Rrtype == dns.TypeNSEC || ok && s.TypeCovered == dns.TypeNSEC
		return nsec && rr.Header().Name != apex
	})
}

func drop(rrs []dns.RR, match func(dns.RR) bool) ([]dns.RR, error) {
	var out []dns.RR
	for _, rr := range rrs {
		if !match(rr) {
			out = append(out, rr)
		}
	}
	if len(out) == len(rrs) {
		return nil, fmt.Errorf("nothing to remove")
	}
	return out, nil
}

// PrivateAlgorithm is the algorithm unsupported.test's keys and signatures
// are rewritten to: PRIVATEDNS, which no validator implements.
const PrivateAlgorithm = dns.PRIVATEDNS

// privateAlgorithm rewrites every DNSKEY and RRSIG to PrivateAlgorithm. A
// validator that meets only an unknown algorithm in the DS set must treat
// the zone as insecure (RFC 4035 §5.2, RFC 6840 §5.2).
func privateAlgorithm(rrs []dns.RR) ([]dns.RR, error) {
	n := 0
	for _, rr := range rrs {
		switch r := rr.(type) {
		case *dns.DNSKEY:
			r.Algorithm = PrivateAlgorithm
			n++
		case *dns.RRSIG:
			r.Algorithm = PrivateAlgorithm
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("no DNSKEY to rewrite")
	}
	return rrs, nil
}

func parse(t testing.TB, origin, text string) []dns.RR {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(text), origin, "")
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("parse %s: %v", origin, err)
	}
	return rrs
}

func write(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
