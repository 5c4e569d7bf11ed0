package records_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"

	"github.com/dnsedge/dnsedge/edge/admin"
	"github.com/dnsedge/dnsedge/edge/records"
	"github.com/dnsedge/dnsedge/edge/records/recordstest"
)

// Tokens of the test grants.
const (
	tokWrite = "write-token" // write dyn.test.
	tokRead  = "read-token"  // read dyn.test.
	tokOther = "other-token" // write other.test.
	tokAll   = "all-token"   // write every zone
)

func sum(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

func testAdmin() admin.Config {
	return admin.Config{Address: "127.0.0.1:0", Tokens: []admin.Token{
		{Grant: admin.Grant{ID: "writer", Zones: []string{"dyn.test."}, Access: admin.AccessWrite}, SHA256: sum(tokWrite)},
		{Grant: admin.Grant{ID: "reader", Zones: []string{"dyn.test"}, Access: admin.AccessRead}, SHA256: sum(tokRead)},
		{Grant: admin.Grant{ID: "other", Zones: []string{"other.test."}, Access: admin.AccessWrite}, SHA256: sum(tokOther)},
		{Grant: admin.Grant{ID: "root", Zones: []string{"*"}, Access: admin.AccessWrite}, SHA256: sum(tokAll)},
	}}
}

// apiServer is the records API on a real loopback listener, with a client
// that checks every request and response against the OpenAPI document
// the server serves.
type apiServer struct {
	t   *testing.T
	m   *records.Manager
	dir string
	c   *recordstest.Client
}

var origins = []string{"dyn.test.", "other.test."}

func startAPI(t *testing.T, cfg records.Config) *apiServer {
	t.Helper()
	cfg = cfg.WithDefaults()
	dir := t.TempDir()
	m, err := records.Open(dir, cfg.CompactAfter, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ensure(origins); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	mux := http.NewServeMux()
	records.NewHandler(m, origins, admin.NewAuth(testAdmin()), cfg).Register(mux)
	srv, err := admin.Listen("127.0.0.1:0", nil, mux, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &apiServer{t: t, m: m, dir: dir, c: recordstest.New(t, "http://"+srv.Addr().String(), nil)}
}

func (a *apiServer) do(method, path, token string, hdr map[string]string, body string) recordstest.Result {
	a.t.Helper()
	h := map[string]string{}
	if token != "" {
		h["Authorization"] = "Bearer " + token
	}
	if body != "" {
		h["Content-Type"] = "application/json"
	}
	for k, v := range hdr {
		h[k] = v
	}
	return a.c.Do(method, path, h, body)
}

func (a *apiServer) patch(token, zone, body string, hdr map[string]string) recordstest.Result {
	a.t.Helper()
	return a.do(http.MethodPatch, "/api/v1/zones/"+zone, token, hdr, body)
}

func (a *apiServer) get(token, zone string) recordstest.Result {
	a.t.Helper()
	return a.do(http.MethodGet, "/api/v1/zones/"+zone, token, nil, "")
}

// mustPatch applies body and fails the test unless it is accepted.
func (a *apiServer) mustPatch(zone, body string) recordstest.Result {
	a.t.Helper()
	r := a.patch(tokAll, zone, body, nil)
	if r.Status != http.StatusOK {
		a.t.Fatalf("PATCH %s: %d %s", zone, r.Status, r.Body)
	}
	return r
}
