package edge

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzCanaryBody: a body of POST /admin/v1/canary decodes into a request,
// or is refused with a client error naming what is wrong; nothing panics.
func FuzzCanaryBody(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"share": 0.05}`, `{"share": 2}`, `{"window": "60s", "min_samples": 10}`, `{"window": "soon"}`,
		`{"config": "listeners: [\n"}`, `{"sharee": 1}`, `[1]`, `{"share": "5%"}`, ``,
	} {
		f.Add(s)
	}
	s := &Server{}
	f.Fuzz(func(t *testing.T, body string) {
		if len(body) > 1<<16 {
			return
		}
		r := httptest.NewRequest(http.MethodPost, "/admin/v1/canary", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		req, status, _, err := s.canaryRequest(httptest.NewRecorder(), r)
		if err != nil {
			if status < 400 || status > 499 {
				t.Fatalf("%q: status %d for %v", body, status, err)
			}
			return
		}
		if req.Window != nil && req.Window.String() == "" {
			t.Fatalf("%q: empty window", body)
		}
	})
}
