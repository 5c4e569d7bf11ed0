package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// freePort returns a loopback port that was free a moment ago, for
// servers that cannot be told to bind port 0 and report it.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.LocalAddr().(*net.UDPAddr).Port
}

// startNamed runs BIND as an authoritative server for zone on loopback
// and returns its address once it answers there. named cannot bind port 0
// and report it, so a port that another test took in the meantime is
// detected by asking, and a fresh one is tried.
func startNamed(t *testing.T, origin, zone string) string {
	t.Helper()
	return startNamedWith(t, origin, zone, namedOpts{})
}

// namedOpts adds to the configuration of startNamedWith: top-level
// statements (keys) and statements of the zone (allow-query).
type namedOpts struct {
	top, zone string
	// keyed: unsigned queries are refused, which the start-up probe
	// takes as an answer.
	keyed bool
}

// startNamedWith is startNamed with more configuration.
func startNamedWith(t *testing.T, origin, zone string, o namedOpts) string {
	t.Helper()
	var logs string
	for range 5 {
		addr, out, ok := tryNamed(t, origin, zone, o)
		if ok {
			return addr
		}
		logs = out
	}
	t.Fatalf("named did not answer on any of 5 ports; its last log:\n%s", logs)
	return ""
}

func tryNamed(t *testing.T, origin, zone string, o namedOpts) (string, string, bool) {
	t.Helper()
	named := tool(t, "named")
	dir := t.TempDir()
	port := freePort(t)
	os.WriteFile(filepath.Join(dir, "zone.db"), []byte(zone), 0o644)
	conf := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
};
controls { };
%[4]s
zone "%[3]s" { type primary; file "%[1]s/zone.db"; %[5]s };
`, dir, port, origin, o.top, o.zone)
	os.WriteFile(filepath.Join(dir, "named.conf"), []byte(conf), 0o644)
	cmd := exec.Command(named, "-g", "-c", filepath.Join(dir, "named.conf"), "-u", "root")
	logs := new(syncBuf)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// named logs "running" alone at the end of its start-up (the word also
	// appears earlier, in "running on Linux").
	waitFor(t, "named running", func() bool {
		out := logs.String()
		return strings.Contains(out, " running\n") || strings.Contains(out, "exiting")
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(origin), dns.TypeSOA)
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m, _, err := c.Exchange(q, addr); err == nil && (m.Rcode == dns.RcodeSuccess && m.Authoritative || o.keyed && m.Rcode == dns.RcodeRefused) {
			return addr, "", true
		}
	}
	cmd.Process.Kill()
	return "", logs.String(), false
}

// TestBindUpstream forwards through dnsedge to a real BIND authoritative
// server and asks with kdig, over UDP and TCP.
func TestBindUpstream(t *testing.T) {
	kdig := tool(t, "kdig")
	addr := startNamed(t, "bind.test", `$TTL 300
@    IN SOA ns.bind.test. hostmaster.bind.test. 1 3600 600 86400 60
@    IN NS  ns.bind.test.
ns   IN A   127.0.0.1
www  IN A   192.0.2.80
`)
	p := startServe(t, writeFile(t, "dnsedge.yaml", serveConfig(addr)))
	for _, proto := range []string{"udp", "tcp"} {
		h, port := hostPort(p.addr(proto))
		args := []string{"@" + h, "-p", port, "+time=3", "+retry=0"}
		if proto == "tcp" {
			args = append(args, "+tcp")
		}
		out := dig(t, kdig, append(args, "www.bind.test", "A")...)
		if !strings.Contains(out, "192.0.2.80") {
			t.Fatalf("%s: %s", proto, out)
		}
		out = dig(t, kdig, append(args, "nope.bind.test", "A")...)
		if !strings.Contains(out, "NXDOMAIN") || !strings.Contains(out, "SOA") {
			t.Fatalf("%s NXDOMAIN: %s", proto, out)
		}
	}
}
