// Package recordstest is a client of the records API and of the
// ExternalDNS webhook provider for tests: it checks every request it sends
// and every response it gets against the OpenAPI document of the API (as
// the server serves it) or of the webhook provider, with kin-openapi.
package recordstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/dnsedge/dnsedge/edge/records"
)

// Client sends requests to one server and checks them against one
// OpenAPI document.
type Client struct {
	t      testing.TB
	base   string
	http   *http.Client
	router routers.Router
	// Header is sent with every request (Authorization, say).
	Header map[string]string
}

// New returns a client of the records API at base ("http://host:port"):
// it fetches the OpenAPI document the server serves at
// /api/v1/openapi.json and checks it. hc nil is a plain client.
func New(t testing.TB, base string, hc *http.Client) *Client {
	t.Helper()
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Get(base + "/api/v1/openapi.json")
	if err != nil {
		t.Fatalf("fetch the OpenAPI document: %v", err)
	}
	spec, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("fetch the OpenAPI document: %s", resp.Status)
	}
	return &Client{t: t, base: base, http: hc, router: Router(t, spec), Header: map[string]string{}}
}

// NewWebhook returns a client of the ExternalDNS webhook provider at base,
// checked against records.WebhookOpenAPI; it asks for the webhook media
// type and sends bodies in it.
func NewWebhook(t testing.TB, base string) *Client {
	t.Helper()
	return &Client{t: t, base: base, http: &http.Client{Timeout: 10 * time.Second}, router: Router(t, records.WebhookOpenAPI),
		Header: map[string]string{"Accept": records.WebhookMediaType}}
}

// Router loads and validates an OpenAPI document and routes by it.
func Router(t testing.TB, spec []byte) routers.Router {
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

// Result is a response, and what the OpenAPI document made of the
// request that got it.
type Result struct {
	Status int
	Header http.Header
	Body   []byte
	// SpecErr is why the document refuses the request; nil when the
	// request conforms.
	SpecErr error
}

// Field returns the field an error response names.
func (r Result) Field() string {
	var e struct {
		Field string `json:"field"`
	}
	json.Unmarshal(r.Body, &e)
	return e.Field
}

// ETag returns the response's ETag.
func (r Result) ETag() string { return r.Header.Get("ETag") }

var errNoBearer = errors.New("no bearer token")

// Do sends a request with c.Header and hdr (hdr wins), body sent as
// given. The request is checked against the document (the outcome in
// SpecErr; a request the server accepts with a 2xx must conform, or the
// test fails); the response must conform, status included, or the test
// fails.
func (c *Client) Do(method, path string, hdr map[string]string, body string) Result {
	c.t.Helper()
	newReq := func() *http.Request {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, c.base+path, rd)
		if err != nil {
			c.t.Fatal(err)
		}
		for k, v := range c.Header {
			req.Header.Set(k, v)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return req
	}
	ctx := context.Background()
	vreq := newReq()
	route, params, err := c.router.FindRoute(vreq)
	if err != nil {
		c.t.Fatalf("%s %s: no route in the OpenAPI document: %v", method, path, err)
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
			if strings.HasPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ") {
				return nil
			}
			return errNoBearer // the empty requirement (a client certificate) may still hold
		},
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: opts}
	res := Result{SpecErr: openapi3filter.ValidateRequest(ctx, in)}
	resp, err := c.http.Do(newReq())
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	res.Body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	res.Status, res.Header = resp.StatusCode, resp.Header
	rin := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(res.Body)), Options: opts,
	}
	if err := openapi3filter.ValidateResponse(ctx, rin); err != nil {
		c.t.Errorf("%s %s: response %d does not conform to the OpenAPI document: %v\n%s", method, path, resp.StatusCode, err, res.Body)
	}
	if res.Status/100 == 2 && res.SpecErr != nil {
		c.t.Errorf("%s %s: the server accepted a request the OpenAPI document refuses: %v", method, path, res.SpecErr)
	}
	return res
}

// Patch sends a PATCH of zone with body as application/json.
func (c *Client) Patch(zone, body string, hdr map[string]string) Result {
	c.t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	for k, v := range hdr {
		h[k] = v
	}
	return c.Do(http.MethodPatch, "/api/v1/zones/"+zone, h, body)
}

// Get sends a GET of zone.
func (c *Client) Get(zone string) Result {
	c.t.Helper()
	return c.Do(http.MethodGet, "/api/v1/zones/"+zone, nil, "")
}

// Post sends a POST to the webhook provider with body in its media type.
func (c *Client) Post(path, body string) Result {
	c.t.Helper()
	return c.Do(http.MethodPost, path, map[string]string{"Content-Type": records.WebhookMediaType}, body)
}
