package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

const (
	tsigKey    = "edge-key."
	tsigSecret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	tsigOther  = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
)

// tsigServeConfig: a plain UDP/TCP pair, and a UDP/TCP pair that
// requires TSIG, with a local zone holding a big TXT set.
func tsigServeConfig(upstream string) string {
	var txt []string
	for i := range 20 {
		txt = append(txt, fmt.Sprintf(`"big 60 IN TXT \"%02d %s\""`, i, strings.Repeat("x", 60)))
	}
	return fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: tcp, address: "127.0.0.1:0"}
upstreams:
  - {name: up, url: "udp://%s"}
zones:
  - {origin: svc.test., records: ["api 60 IN A 10.0.0.1", %s]}
tsig:
  keys:
    - {name: %s, algorithm: hmac-sha256, secret: "%s"}
log:
  level: info
  queries: true
`, upstream, strings.Join(txt, ", "), tsigKey, tsigSecret)
}

// TestTSIGWithRealClients: kdig and dig sign with -y; a good key gets an
// answer signed with it (the clients verify it), a bad MAC BADSIG, an
// unknown key BADKEY (for a name dnsedge answers itself), and a skewed
// clock BADTIME, signed, which miekg/dns crafts since the clients cannot
// skew their clocks.
func TestTSIGWithRealClients(t *testing.T) {
	kdig := tool(t, "kdig")
	digBin := tool(t, "dig")
	up := transporttest.StartFault(t, zone)
	p := startServe(t, writeFile(t, "dnsedge.yaml", tsigServeConfig(up.AddrV4().String())))
	udpH, udpPort := hostPort(p.addr("udp"))
	tcpH, tcpPort := hostPort(p.addr("tcp"))
	tests := []struct {
		name    string
		bin     string
		args    []string
		want    []string
		notWant []string
	}{
		{"kdig good key, forwarded", kdig, []string{"-y", "hmac-sha256:" + tsigKey + ":" + tsigSecret, "www.test.example", "A"},
			[]string{"NOERROR", "192.0.2.10", "TSIG PSEUDOSECTION", "NOERROR"}, []string{"WARNING", "NOTAUTH"}},
		{"kdig good key, local zone, tcp", kdig, []string{"@" + tcpH, "-p", tcpPort, "+tcp", "-y", "hmac-sha256:" + tsigKey + ":" + tsigSecret, "api.svc.test", "A"},
			[]string{"NOERROR", "10.0.0.1", "TSIG PSEUDOSECTION"}, []string{"WARNING", "NOTAUTH"}},
		{"dig good key", digBin, []string{"-y", "hmac-sha256:" + tsigKey + ":" + tsigSecret, "www.test.example", "A"},
			[]string{"status: NOERROR", "192.0.2.10", "TSIG\thmac-sha256. "}, []string{"Couldn't verify", "failure", "NOTAUTH"}},
		{"dig good key, truncated over UDP", digBin, []string{"+ignore", "+bufsize=512", "-y", "hmac-sha256:" + tsigKey + ":" + tsigSecret, "big.svc.test", "TXT"},
			[]string{"status: NOERROR", "flags: qr aa tc", "TSIG\thmac-sha256. "}, []string{"Couldn't verify", "failure"}},
		{"dig good key, big answer over TCP", digBin, []string{"@" + tcpH, "-p", tcpPort, "+tcp", "-y", "hmac-sha256:" + tsigKey + ":" + tsigSecret, "big.svc.test", "TXT"},
			[]string{"status: NOERROR", "19 " + strings.Repeat("x", 60), "TSIG\thmac-sha256. "}, []string{"Couldn't verify", "failure"}},
		{"kdig bad MAC", kdig, []string{"-y", "hmac-sha256:" + tsigKey + ":" + tsigOther, "www.test.example", "A"},
			[]string{"status: BADSIG", "BADSIG 0"}, []string{"192.0.2.10"}},
		{"dig bad MAC", digBin, []string{"-y", "hmac-sha256:" + tsigKey + ":" + tsigOther, "www.test.example", "A"},
			[]string{"status: NOTAUTH", "BADSIG"}, []string{"192.0.2.10"}},
		{"kdig unknown key, local zone", kdig, []string{"-y", "hmac-sha256:stranger.:" + tsigSecret, "api.svc.test", "A"},
			[]string{"status: BADKEY", "BADKEY 0"}, []string{"10.0.0.1"}},
		{"dig key of another algorithm, local zone", digBin, []string{"-y", "hmac-sha512:" + tsigKey + ":" + tsigSecret, "api.svc.test", "A"},
			[]string{"status: NOTAUTH", "BADKEY"}, []string{"10.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if !strings.HasPrefix(args[0], "@") {
				args = append([]string{"@" + udpH, "-p", udpPort}, args...)
			}
			out := dig(t, tt.bin, append([]string{"+time=3", "+retry=0"}, args...)...)
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("want %q in:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("did not want %q in:\n%s", w, out)
				}
			}
		})
	}
	t.Run("skewed clock", func(t *testing.T) {
		q := new(dns.Msg)
		q.SetQuestion("www.test.example.", dns.TypeA)
		signedAt := time.Now().Add(-time.Hour).Unix()
		q.SetTsig(tsigKey, dns.HmacSHA256, 300, signedAt)
		c := &dns.Client{Timeout: 3 * time.Second, TsigSecret: map[string]string{tsigKey: tsigSecret}}
		r, _, err := c.Exchange(q, p.addr("udp"))
		// miekg/dns refuses to verify a NOTAUTH reply; the fields say
		// what dnsedge did.
		if r == nil {
			t.Fatalf("no reply: %v", err)
		}
		rt := r.IsTsig()
		if r.Rcode != dns.RcodeNotAuth || rt == nil || rt.Error != dns.RcodeBadTime {
			t.Fatalf("want NOTAUTH with TSIG error BADTIME, got %v", r)
		}
		if rt.MACSize == 0 || rt.TimeSigned != uint64(signedAt) || rt.OtherLen != 6 {
			t.Errorf("BADTIME reply must be signed, carry the query's time and the server's in other data: %v", rt)
		}
	})
	t.Run("query log", func(t *testing.T) {
		waitFor(t, "tsig states in the query log", func() bool {
			s := p.stderr.String()
			return strings.Contains(s, `"tsig":"verified"`) && strings.Contains(s, `"tsig":"badsig"`) &&
				strings.Contains(s, `"tsig":"badkey"`) && strings.Contains(s, `"tsig":"badtime"`)
		})
	})
}
