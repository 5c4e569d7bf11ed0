package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/records/recordstest"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

var adminLine = regexp.MustCompile(`^admin API on http://(\S+)/api/v1/$`)

// apiProc is a dnsedge serving an API zone: its UDP and admin addresses.
type apiProc struct {
	cmd        *exec.Cmd
	udp, admin string
	stderr     *syncBuf
}

// startAPIServe starts the built binary on path and waits for its UDP
// listener and admin listener to be announced.
func startAPIServe(t *testing.T, path string) *apiProc {
	t.Helper()
	p := &apiProc{cmd: exec.Command(dnsedgeBin, "serve", "-config", path), stderr: new(syncBuf)}
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
	})
	var mu sync.Mutex
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.OnceFunc(func() { close(ready) })
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			if m := listenLine.FindStringSubmatch(line); m != nil && m[1] == "udp" && p.udp == "" {
				p.udp = m[2]
			}
			if m := adminLine.FindStringSubmatch(line); m != nil {
				p.admin = m[1]
			}
			mu.Unlock()
			if strings.HasPrefix(line, "upstream ") {
				once()
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatalf("dnsedge did not start:\n%s", p.stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if p.udp == "" || p.admin == "" {
		t.Fatalf("no udp or admin address announced:\n%s", p.stderr.String())
	}
	return p
}

// TestRecordsSurviveKill9: each change acknowledged by the records API is
// in force after dnsedge is killed with SIGKILL right after the 2xx and
// started again: answered to a DNS client and shown by GET.
func TestRecordsSurviveKill9(t *testing.T) {
	up := transporttest.StartFault(t, zone)
	const token = "kill9-token"
	s := sha256.Sum256([]byte(token))
	cfgPath := writeFile(t, "api.yaml", fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: tcp, address: "127.0.0.1:0"}
upstreams:
  - {name: up, url: "udp://%s"}
state_dir: %q
zones:
  - {origin: dyn.test., api: true}
records:
  compact_after: 3
admin:
  address: "127.0.0.1:0"
  tokens:
    - {id: deployer, sha256: %s, zones: [dyn.test.], access: write}
`, up.AddrV4(), t.TempDir(), hex.EncodeToString(s[:])))
	const rounds = 5
	for i := range rounds {
		p := startAPIServe(t, cfgPath)
		// What earlier rounds acknowledged is there.
		for j := range i {
			checkRecord(t, p, fmt.Sprintf("r%d.dyn.test.", j), fmt.Sprintf("10.0.0.%d", j+1))
		}
		body := fmt.Sprintf(`{"rrsets":[{"name":"r%d.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":"10.0.0.%d"}]}]}`, i, i+1)
		api := recordstest.New(t, "http://"+p.admin, nil)
		api.Header["Authorization"] = "Bearer " + token
		r := api.Patch("dyn.test.", body, nil)
		// SIGKILL the moment the answer is in, with no chance of a clean
		// shutdown.
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.cmd.Wait()
		if r.Status != http.StatusOK {
			t.Fatalf("round %d: PATCH %d %s", i, r.Status, r.Body)
		}
	}
	p := startAPIServe(t, cfgPath)
	for j := range rounds {
		checkRecord(t, p, fmt.Sprintf("r%d.dyn.test.", j), fmt.Sprintf("10.0.0.%d", j+1))
	}
	api := recordstest.New(t, "http://"+p.admin, nil)
	api.Header["Authorization"] = "Bearer " + token
	r := api.Get("dyn.test.")
	var z struct {
		Serial uint32 `json:"serial"`
		RRsets []struct {
			Name string `json:"name"`
		} `json:"rrsets"`
	}
	if err := json.Unmarshal(r.Body, &z); err != nil {
		t.Fatal(err)
	}
	if z.Serial != rounds+1 || len(z.RRsets) != rounds+1 || r.ETag() != fmt.Sprintf(`"%d"`, rounds+1) {
		t.Fatalf("GET after %d killed rounds: serial %d, %d RRsets, ETag %s", rounds, z.Serial, len(z.RRsets), r.ETag())
	}
}

// checkRecord asks p's UDP listener for name A and wants ip, answered
// authoritatively.
func checkRecord(t *testing.T, p *apiProc, name, ip string) {
	t.Helper()
	c := &dns.Client{Timeout: 2 * time.Second}
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	m, _, err := c.Exchange(q, p.udp)
	if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || !m.Authoritative {
		t.Fatalf("%s A: %v %v", name, m, err)
	}
	if got := m.Answer[0].(*dns.A).A.String(); got != ip {
		t.Fatalf("%s A: %s, want %s", name, got, ip)
	}
}
