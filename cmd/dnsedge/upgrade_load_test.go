package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// upgradeNames is the number of names the load asks: more than a cold
// cache learns in the first seconds, so that the hit ratio after an
// upgrade tells whether the cache was carried over.
const upgradeNames = 20000

// Timeline of each round of TestUpgradeUnderLoad.
const (
	upgradeLoad = 30 * time.Second // length of the load
	upgradeAt   = 10 * time.Second // the upgrade, from the start of the load
	// The drain deadline falls after the load, as the default (30s)
	// would: dnsperf keeps its TCP and DoT connections busy until it
	// ends. The old process's DoQ connections move to the new process
	// long before, as they go idle; it exits once its connections are
	// done, the watch window having passed.
	upgradeDrain = 25 * time.Second
	upgradeWatch = 14 * time.Second
	// upgradeQPS is the rate of each of UDP, TCP, DoT and DoH;
	// upgradeDoQ that of DoQ.
	upgradeQPS = 5000
	upgradeDoQ = 500
)

// TestUpgradeUnderLoad upgrades dnsedge to a binary that answers another
// version.bind while dnsperf sends UDP, TCP and DoT queries and quicload
// DoH queries over HTTP/2, upgradeQPS a second each, and quicload DoQ
// queries: no query is lost on
// any protocol (the DoQ client opens a connection the old process closes
// again, and asks again what it had sent on it, as stub resolvers do),
// the old process's DoQ connections move to the new process within the
// drain time, new connections reach the new process within a second,
// the old process is gone by its deadline, the cache hit ratio of the new
// process's first 10 s is at least 90% of the old one's, and a DoT client
// resumes its TLS session with the new process. A second round upgrades
// again with another count of UDP sockets.
func TestUpgradeUnderLoad(t *testing.T) {
	dnsperf := tool(t, "dnsperf")
	var zoneText, queries strings.Builder
	zoneText.WriteString("$ORIGIN test.example.\n@ 300 IN SOA ns hostmaster 1 3600 600 86400 300\n")
	for i := range upgradeNames {
		fmt.Fprintf(&zoneText, "h%d 300 IN A 192.0.2.%d\n", i, i%250+1)
		fmt.Fprintf(&queries, "h%d.test.example A\n", i)
	}
	up := transporttest.StartFault(t, zoneText.String())
	dir := t.TempDir()
	bin := filepath.Join(dir, "dnsedge")
	quicload := filepath.Join(dir, "quicload")
	if out, err := exec.Command("go", "build", "-o", quicload, "../../bench/quicload").CombinedOutput(); err != nil {
		t.Fatalf("build quicload: %v\n%s", err, out)
	}
	buildVersioned(t, bin, "upgrade-load-1")
	qfile := writeFile(t, "queries.txt", queries.String())
	ports := map[string]int{}
	for _, k := range []string{"plain", "dot", "doh", "doq", "metrics"} {
		ports[k] = freePortBoth(t)
	}
	sock := tempSocket(t)
	config := func(sockets int) string {
		return fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:%d", sockets: %d}
  - {proto: tcp, address: "127.0.0.1:%d"}
  - {proto: dot, address: "127.0.0.1:%d", server_name: dns.test}
  - {proto: doh, address: "127.0.0.1:%d"}
  - {proto: doq, address: "127.0.0.1:%d", server_name: dns.test}
tls:
  self_signed: true
  hosts: [dns.test, 127.0.0.1]
upstreams:
  - {name: up, url: "udp://%s"}
cache: {max_entries: 100000}
metrics: {address: "127.0.0.1:%d"}
upgrade: {control: %q, drain: %s, watch: %s, ready_timeout: 20s}
log: {level: info}
`, ports["plain"], sockets, ports["plain"], ports["dot"], ports["doh"], ports["doq"], up.AddrV4(), ports["metrics"], sock, upgradeDrain, upgradeWatch)
	}
	path := writeFile(t, "dnsedge.yaml", config(2))
	p, exited := startBin(t, bin, path)
	plain := fmt.Sprintf("127.0.0.1:%d", ports["plain"])
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", ports["metrics"])
	ca := p.ca
	if ca == "" {
		t.Fatal("no self-signed CA in the start-up summary")
	}
	// Next binary built before the load: building takes the CPU.
	buildVersioned(t, bin, "upgrade-load-2")
	for round, tc := range []struct {
		version string
		sockets int
	}{{"upgrade-load-2", 2}, {"upgrade-load-3", 3}} {
		if round > 0 {
			buildVersioned(t, bin, tc.version)
			if err := os.WriteFile(path, []byte(config(tc.sockets)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("round %d: upgrade to %s with %d UDP sockets", round+1, tc.version, tc.sockets)
		exited = upgradeRound(t, roundSetup{
			bin: bin, sock: sock, dnsperf: dnsperf, quicload: quicload, qfile: qfile, ca: ca,
			plain: plain, metrics: metrics, ports: ports, version: tc.version, exited: exited,
			log: &p.stderr,
		})
	}
}

type roundSetup struct {
	bin, sock, dnsperf, quicload, qfile, ca string
	plain, metrics, version                 string
	ports                                   map[string]int
	exited                                  <-chan struct{} // the serving process's exit
	log                                     fmt.Stringer
}

var (
	perfLost  = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	perfSent  = regexp.MustCompile(`Queries sent:\s+(\d+)`)
	quicLoadL = regexp.MustCompile(`sent=(\d+) answered=(\d+) lost=(\d+)`)
	quicLoadR = regexp.MustCompile(`reconnects=(\d+) retried=(\d+)`)
	// doqDrained is the old process's log line once its DoQ connections
	// are closed.
	doqDrained = regexp.MustCompile(`"msg":"doq connections drained".*"after":"([^"]+)"`)
)

// upgradeRound runs the load, upgrades at upgradeAt and checks the
// round's assertions. It returns the exit channel of the new process.
func upgradeRound(t *testing.T, r roundSetup) <-chan struct{} {
	t.Helper()
	secs := strconv.Itoa(int(upgradeLoad / time.Second))
	type run struct {
		name string
		cmd  *exec.Cmd
		out  strings.Builder
	}
	perf := func(mode string, port, qps, clients int) *run {
		args := []string{"-m", mode, "-s", "127.0.0.1", "-p", strconv.Itoa(port), "-d", r.qfile,
			"-l", secs, "-Q", strconv.Itoa(qps), "-c", strconv.Itoa(clients), "-t", "5", "-q", "200"}
		return &run{name: mode, cmd: exec.Command(r.dnsperf, args...)}
	}
	runs := []*run{
		perf("udp", r.ports["plain"], upgradeQPS, 4),
		perf("tcp", r.ports["plain"], upgradeQPS, 4),
		perf("dot", r.ports["dot"], upgradeQPS, 4),
		{name: "doq", cmd: exec.Command(r.quicload, "-mode", "doq", "-addr", fmt.Sprintf("127.0.0.1:%d", r.ports["doq"]),
			"-ca", r.ca, "-names", r.qfile, "-c", "2", "-q", "20", "-rate", strconv.Itoa(upgradeDoQ), "-d", upgradeLoad.String(), "-t", "5s", "-reconnect", "-v")},
		// DoH over HTTP/2 from 4 connections; the old process's GOAWAY
		// moves them to the new one. Not dnsperf -m doh: its HTTP/2
		// client (2.10) appends the DATA of every stream to one buffer,
		// and against dnsedge it counts almost no answer once more than
		// one query is outstanding, though each gets its 200 (1,200 of
		// 1,208 lost at 5,000 qps, with no upgrade yet; -q 1 works).
		{name: "doh", cmd: exec.Command(r.quicload, "-mode", "doh", "-addr", fmt.Sprintf("127.0.0.1:%d", r.ports["doh"]),
			"-ca", r.ca, "-names", r.qfile, "-c", "4", "-q", "50", "-rate", strconv.Itoa(upgradeQPS), "-d", upgradeLoad.String(), "-t", "5s", "-v")},
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, rn := range runs {
		rn.cmd.Stdout, rn.cmd.Stderr = &rn.out, &rn.out
		if err := rn.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { rn.cmd.Wait() })
	}
	defer func() {
		for _, rn := range runs {
			rn.cmd.Process.Kill()
		}
		wg.Wait()
	}()
	// A DoT client that will resume its session with the new process.
	sessions := tls.NewLRUClientSessionCache(8)
	dotAddr := fmt.Sprintf("127.0.0.1:%d", r.ports["dot"])
	if _, v, err := dotQuery(dotAddr, r.ca, sessions); err != nil || v == r.version {
		t.Fatalf("dot before the upgrade: version %q, %v", v, err)
	}
	sleepUntil(start.Add(upgradeAt - 5*time.Second))
	h1, m1 := cacheCounts(t, r.metrics)
	sleepUntil(start.Add(upgradeAt))
	h2, m2 := cacheCounts(t, r.metrics)
	before := ratio(h2-h1, m2-m1)
	oldExited := r.exited
	drainedBefore := len(doqDrained.FindAllString(r.log.String(), -1))

	code, out := runUpgrade(t, r.bin, r.sock)
	upgraded := time.Now()
	m := upgradedLine.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("upgrade: exit %d, output:\n%s\nlog:\n%s", code, out, r.log)
	}
	pid, _ := strconv.Atoi(m[1])
	t.Logf("upgrade command took %v", upgraded.Sub(start.Add(upgradeAt)).Round(time.Millisecond))
	for _, network := range []string{"udp", "tcp"} {
		for versionBind(r.plain, network) != r.version {
			if time.Since(upgraded) > time.Second {
				t.Fatalf("new %s connections not on the new process within 1s", network)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	sleepUntil(upgraded.Add(10 * time.Second))
	h3, m3 := cacheCounts(t, r.metrics)
	after := ratio(h3, m3)
	t.Logf("hit ratio: %.3f before the upgrade, %.3f in the new process's first 10s (%.0f hits, %.0f misses)", before, after, h3, m3)
	if after < 0.9*before {
		t.Errorf("hit ratio %.3f after the upgrade, under 90%% of %.3f before", after, before)
	}
	st, v, err := dotQuery(dotAddr, r.ca, sessions)
	switch {
	case err != nil:
		t.Errorf("dot after the upgrade: %v", err)
	case v != r.version:
		t.Errorf("dot after the upgrade answered by version %q, not the new process", v)
	case !st.DidResume:
		t.Errorf("dot session not resumed with the new process")
	}

	wg.Wait()
	for _, rn := range runs {
		text := rn.out.String()
		var lost, sent int
		if rn.name == "doq" || rn.name == "doh" {
			mm := quicLoadL.FindStringSubmatch(text)
			if mm == nil {
				t.Errorf("%s: no summary:\n%s", rn.name, text)
				continue
			}
			sent, _ = strconv.Atoi(mm[1])
			lost, _ = strconv.Atoi(mm[3])
			// Only DoQ reconnects by hand: over DoH, the client's HTTP/2
			// transport moves to a new connection on the GOAWAY.
			if rn.name == "doq" {
				checkReconnects(t, text)
			}
		} else {
			ml, ms := perfLost.FindStringSubmatch(text), perfSent.FindStringSubmatch(text)
			if ml == nil || ms == nil {
				t.Errorf("%s: no summary:\n%s", rn.name, text)
				continue
			}
			lost, _ = strconv.Atoi(ml[1])
			sent, _ = strconv.Atoi(ms[1])
		}
		t.Logf("%s: %d sent, %d lost", rn.name, sent, lost)
		// Every client sends at least 90% of the rate it was asked for.
		want := upgradeQPS
		if rn.name == "doq" {
			want = upgradeDoQ
		}
		if lost != 0 || sent < want*int(upgradeLoad/time.Second)*9/10 {
			t.Errorf("%s: %d sent, %d lost:\n%s", rn.name, sent, lost, text)
		}
	}
	// The old process's DoQ connections closed within the drain time (and
	// the time its last queries take), well before it exits.
	var drainedAfter string
	for drainedAfter == "" {
		if all := doqDrained.FindAllStringSubmatch(r.log.String(), -1); len(all) > drainedBefore {
			drainedAfter = all[drainedBefore][1]
		} else if time.Since(upgraded) > upgradeDrain+5*time.Second {
			t.Fatalf("old process's DoQ connections not closed %v after the upgrade\nlog:\n%s", time.Since(upgraded).Round(time.Second), r.log)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if d, err := time.ParseDuration(drainedAfter); err != nil || d > upgradeDrain+2*time.Second {
		t.Errorf("old process's DoQ connections closed %s after the drain began, want within %v", drainedAfter, upgradeDrain)
	} else {
		t.Logf("old process's DoQ connections closed %v after the drain began (drain %v, watch %v)", d, upgradeDrain, upgradeWatch)
	}
	deadline := upgraded.Add(max(upgradeWatch, upgradeDrain) + 5*time.Second)
	select {
	case <-oldExited:
		t.Logf("old process gone %v after the upgrade", time.Since(upgraded).Round(100*time.Millisecond))
	case <-time.After(time.Until(deadline)):
		t.Fatalf("old process still there %v after the upgrade", time.Since(upgraded).Round(time.Second))
	}
	return pidExited(pid)
}

// checkReconnects checks that quicload's DoQ connections (2), all opened
// to the old process, were opened again.
func checkReconnects(t *testing.T, text string) {
	t.Helper()
	mr := quicLoadR.FindStringSubmatch(text)
	if mr == nil {
		t.Errorf("doq: no reconnect count:\n%s", text)
		return
	}
	if n, _ := strconv.Atoi(mr[1]); n < 2 {
		t.Errorf("doq: %s reconnects, want one for each of the 2 connections at least", mr[1])
		return
	}
	t.Logf("doq: %s reconnects, %s queries asked again on a new connection", mr[1], mr[2])
}

// pidExited returns a channel closed once pid, not a child of ours, is
// gone.
func pidExited(pid int) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		for syscall.Kill(pid, 0) == nil {
			time.Sleep(50 * time.Millisecond)
		}
		close(c)
	}()
	return c
}

func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

func ratio(hits, misses float64) float64 {
	if hits+misses == 0 {
		return 0
	}
	return hits / (hits + misses)
}

var cacheMetric = regexp.MustCompile(`(?m)^dnsedge_cache_(hits|misses)_total(?:\{[^}]*\})? (\S+)$`)

// cacheCounts returns the cache hits and misses the serving process
// counted.
func cacheCounts(t *testing.T, url string) (hits, misses float64) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, m := range cacheMetric.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		if m[1] == "hits" {
			hits += v
		} else {
			misses += v
		}
	}
	return hits, misses
}

// dotQuery asks version.bind over a new DoT connection with the session
// cache sessions and returns the connection's TLS state and the answer.
func dotQuery(addr, caFile string, sessions tls.ClientSessionCache) (tls.ConnectionState, string, error) {
	var st tls.ConnectionState
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return st, "", err
	}
	conf := &tls.Config{ServerName: "dns.test", ClientSessionCache: sessions, NextProtos: []string{"dot"}, RootCAs: poolOf(pem)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return st, "", err
	}
	conn := &dns.Conn{Conn: tls.Client(raw, conf)}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	q := new(dns.Msg)
	q.SetQuestion("version.bind.", dns.TypeTXT)
	q.Question[0].Qclass = dns.ClassCHAOS
	if err := conn.WriteMsg(q); err != nil {
		return st, "", err
	}
	m, err := conn.ReadMsg()
	if err != nil {
		return st, "", err
	}
	v := ""
	if len(m.Answer) == 1 {
		if txt, ok := m.Answer[0].(*dns.TXT); ok && len(txt.Txt) == 1 {
			v = txt.Txt[0]
		}
	}
	return conn.Conn.(*tls.Conn).ConnectionState(), v, nil
}

func poolOf(pem []byte) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}
