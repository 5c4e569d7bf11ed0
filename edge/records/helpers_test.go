package records_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/dnsedge/dnsedge/edge/admin"
	"github.com/dnsedge/dnsedge/edge/records"
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
	t      *testing.T
	base   string
	m      *records.Manager
	dir    string
	router routers.Router
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
	a := &apiServer{t: t, base: "http://" + srv.Addr().String(), m: m, dir: dir}
	resp, err := http.Get(a.base + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	a.router = loadSpec(t, spec)
	return a
}

// loadSpec loads and validates an OpenAPI document and routes by it.
func loadSpec(t *testing.T, spec []byte) routers.Router {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(spec)
	if err != nil {
		t.Fatalf("OpenAPI document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("OpenAPI document invalid: %v", err)
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// result is a response, and what the OpenAPI document made of the
// request.
type result struct {
	status  int
	header  http.Header
	body    []byte
	specErr error // the request's problem by the document; nil when it conforms
}

func (r result) field() string {
	var e struct {
		Field string `json:"field"`
	}
	json.Unmarshal(r.body, &e)
	return e.Field
}

// call sends a request to the server at base, validating the request
// (recorded in specErr) and the response (a test failure when it does not
// conform) against the document routed by router.
func call(t *testing.T, router routers.Router, base, method, path string, hdr map[string]string, body string) result {
	t.Helper()
	newReq := func() *http.Request {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, base+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return req
	}
	ctx := context.Background()
	vreq := newReq()
	route, params, err := router.FindRoute(vreq)
	if err != nil {
		t.Fatalf("%s %s: no route in the OpenAPI document: %v", method, path, err)
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
			if strings.HasPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ") {
				return nil
			}
			return io.EOF // no bearer token: the empty requirement (mTLS) applies
		},
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: opts}
	res := result{specErr: openapi3filter.ValidateRequest(ctx, in)}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(newReq())
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	res.body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	res.status, res.header = resp.StatusCode, resp.Header
	rin := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(res.body)), Options: opts,
	}
	if err := openapi3filter.ValidateResponse(ctx, rin); err != nil {
		t.Errorf("%s %s: response %d does not conform to the OpenAPI document: %v\n%s", method, path, resp.StatusCode, err, res.body)
	}
	if res.status/100 == 2 && res.specErr != nil {
		t.Errorf("%s %s: accepted a request the OpenAPI document refuses: %v", method, path, res.specErr)
	}
	return res
}

func (a *apiServer) do(method, path, token string, hdr map[string]string, body string) result {
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
	return call(a.t, a.router, a.base, method, path, h, body)
}

func (a *apiServer) patch(token, zone, body string, hdr map[string]string) result {
	a.t.Helper()
	return a.do(http.MethodPatch, "/api/v1/zones/"+zone, token, hdr, body)
}

func (a *apiServer) get(token, zone string) result {
	a.t.Helper()
	return a.do(http.MethodGet, "/api/v1/zones/"+zone, token, nil, "")
}

// mustPatch applies body and fails the test unless it is accepted.
func (a *apiServer) mustPatch(zone, body string) result {
	a.t.Helper()
	r := a.patch(tokAll, zone, body, nil)
	if r.status != http.StatusOK {
		a.t.Fatalf("PATCH %s: %d %s", zone, r.status, r.body)
	}
	return r
}
