package edge_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// apiToken is the bearer token of the records API tests.
const apiToken = "s3cret-token"

func apiConfig(t *testing.T, up *transporttest.Server) string {
	sum := sha256.Sum256([]byte(apiToken))
	return fmt.Sprintf(`upstreams:
  - {name: up, url: "udp://%s"}
state_dir: %q
zones:
  - {origin: dyn.test., api: true}
  - {origin: static.test., records: ["www 60 IN A 10.9.9.9"]}
admin:
  address: "127.0.0.1:0"
  tokens:
    - {id: ci, sha256: %s, zones: [dyn.test.], access: write}
`, up.AddrV4(), t.TempDir(), hex.EncodeToString(sum[:]))
}

// TestRecordsAPIAnsweredAtOnce: a record PATCHed through the admin
// listener is answered by the very next DNS query, authoritatively, and
// GET shows it with the new serial as ETag.
func TestRecordsAPIAnsweredAtOnce(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	e := startEdge(t, apiConfig(t, up))
	base := "http://" + e.srv.AdminAddr().String() + "/api/v1/zones/dyn.test."
	for i := range 5 {
		ip := fmt.Sprintf("10.0.0.%d", i+1)
		body := fmt.Sprintf(`{"rrsets":[{"name":"www.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":%q}]}]}`, ip)
		req, _ := http.NewRequest(http.MethodPatch, base, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PATCH %d: %s %s", i, resp.Status, b)
		}
		if want := fmt.Sprintf(`"%d"`, i+2); resp.Header.Get("ETag") != want {
			t.Fatalf("PATCH %d: ETag %s, want %s", i, resp.Header.Get("ETag"), want)
		}
		c := &dns.Client{Timeout: 2 * time.Second}
		q := new(dns.Msg)
		q.SetQuestion("www.dyn.test.", dns.TypeA)
		m, _, err := c.Exchange(q, e.udp.String())
		if err != nil || len(m.Answer) != 1 || !m.Authoritative || m.Answer[0].(*dns.A).A.String() != ip {
			t.Fatalf("query right after PATCH %d: %v %v, want %s", i, m, err, ip)
		}
	}
}
