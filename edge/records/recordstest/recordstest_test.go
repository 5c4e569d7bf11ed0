package recordstest_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/edge/records"
	"github.com/dnsedge/dnsedge/edge/records/recordstest"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Helper() {}

// TestClientCatches: the client fails a test on a response the document
// does not describe, and on a request the server accepted although the
// document refuses it; a conforming exchange passes.
func TestClientCatches(t *testing.T) {
	const zone = `{"name":"dyn.test.","serial":2,"rrsets":[]}`
	tests := []struct {
		name    string
		status  int
		body    string
		etag    string
		request string // PATCH body; "" for a GET
		fails   bool
	}{
		{"conforming GET", 200, zone, `"2"`, "", false},
		{"undocumented field", 200, `{"name":"dyn.test.","serial":2,"rrsets":[],"extra":1}`, `"2"`, "", true},
		{"undocumented status", 418, `{"error":"teapot"}`, "", "", true},
		{"ETag not a serial", 200, zone, "abc", "", true},
		{"error without error", 404, `{"field":"zone"}`, "", "", true},
		{"conforming PATCH", 200, zone, `"2"`, `{"rrsets":[]}`, false},
		{"accepted a refused request", 200, zone, `"2"`, `{"rrsets":[],"extra":true}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/api/v1/openapi.json" {
					w.Header().Set("Content-Type", "application/json")
					w.Write(records.OpenAPI)
					return
				}
				if tc.etag != "" {
					w.Header().Set("ETag", tc.etag)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			rec := &recorder{TB: t}
			c := recordstest.New(rec, srv.URL, nil)
			c.Header["Authorization"] = "Bearer x"
			if tc.request == "" {
				c.Get("dyn.test.")
			} else {
				c.Patch("dyn.test.", tc.request, nil)
			}
			if got := len(rec.errs) > 0; got != tc.fails {
				t.Fatalf("failed %v (%s), want %v", got, strings.Join(rec.errs, "; "), tc.fails)
			}
		})
	}
}
