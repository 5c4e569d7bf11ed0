package records_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/edge/admin"
	"github.com/dnsedge/dnsedge/edge/records"
	"github.com/dnsedge/dnsedge/edge/records/recordstest"
)

// startWebhook runs the ExternalDNS webhook provider on a real loopback
// listener acting as the grant "writer" (dyn.test.), over the same
// Manager as the records API a, and returns a client checking its calls
// against the webhook provider schema.
func startWebhook(t *testing.T, a *apiServer) *recordstest.Client {
	t.Helper()
	cfg := records.Config{Webhook: &records.WebhookConfig{Address: "127.0.0.1:0", Grant: "writer"}}.WithDefaults()
	mux := http.NewServeMux()
	records.NewWebhook(a.m, origins, admin.NewAuth(testAdmin()).Grant("writer"), cfg).Register(mux)
	srv, err := admin.Listen("127.0.0.1:0", nil, mux, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return recordstest.NewWebhook(t, "http://"+srv.Addr().String())
}

// TestWebhook: ExternalDNS's calls, each checked against the webhook
// provider schema: negotiation gives the domain filter and the media
// type; POST /records with the change keys current ExternalDNS releases
// send (create, updateOld/updateNew, delete) is applied and answered 204,
// seen
// by the records API and GET /records; adjustendpoints hands the
// endpoints back; bad endpoints are refused and change nothing.
func TestWebhook(t *testing.T) {
	a := startAPI(t, records.Config{})
	a.mustPatch("dyn.test.", seed)
	c := startWebhook(t, a)
	wh := func(method, path string, hdr map[string]string, body string) recordstest.Result {
		t.Helper()
		if body != "" {
			h := map[string]string{"Content-Type": records.WebhookMediaType}
			for k, v := range hdr {
				h[k] = v
			}
			hdr = h
		}
		return c.Do(method, path, hdr, body)
	}

	r := wh(http.MethodGet, "/", nil, "")
	if r.Status != 200 || r.Header.Get("Content-Type") != records.WebhookMediaType {
		t.Fatalf("negotiation: %d %s %s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	var df records.DomainFilter
	if err := json.Unmarshal(r.Body, &df); err != nil || len(df.Filters) != 1 || df.Filters[0] != "dyn.test" || len(df.Include) != 1 {
		t.Fatalf("domain filter %s, want filters [dyn.test] (the writer's zones)", r.Body)
	}
	if r := wh(http.MethodGet, "/", map[string]string{"Accept": "text/html"}, ""); r.Status != http.StatusNotAcceptable {
		t.Fatalf("negotiation for text/html: %d", r.Status)
	}

	changes := `{
 "create":[{"dnsName":"app.dyn.test","targets":["192.0.2.7"],"recordType":"A","recordTTL":120,"labels":{},"providerSpecific":[]},
           {"dnsName":"app.dyn.test","targets":["\"heritage=external-dns,external-dns/owner=k8s\""],"recordType":"TXT"},
           {"dnsName":"web.dyn.test","targets":["app.dyn.test"],"recordType":"CNAME","recordTTL":60}],
 "updateOld":[{"dnsName":"www.dyn.test","targets":["10.0.0.1","10.0.0.2"],"recordType":"A","recordTTL":60}],
 "updateNew":[{"dnsName":"www.dyn.test","targets":["10.0.0.3"],"recordType":"A","recordTTL":60}],
 "delete":[{"dnsName":"alias.dyn.test","targets":["www.dyn.test"],"recordType":"CNAME"}]
}`
	if r := wh(http.MethodPost, "/records", nil, changes); r.Status != http.StatusNoContent {
		t.Fatalf("POST /records: %d %s", r.Status, r.Body)
	}
	z := string(a.get(tokAll, "dyn.test.").Body)
	for _, want := range []string{
		`{"name":"app.dyn.test.","type":"A","ttl":120,"records":[{"content":"192.0.2.7"}]}`,
		`{"name":"app.dyn.test.","type":"TXT","ttl":300,"records":[{"content":"\"heritage=external-dns,external-dns/owner=k8s\""}]}`,
		`{"name":"web.dyn.test.","type":"CNAME","ttl":60,"records":[{"content":"app.dyn.test."}]}`,
		`{"name":"www.dyn.test.","type":"A","ttl":60,"records":[{"content":"10.0.0.3"}]}`,
	} {
		if !strings.Contains(z, want) {
			t.Errorf("zone lacks %s:\n%s", want, z)
		}
	}
	if strings.Contains(z, "alias.dyn.test.") {
		t.Errorf("deleted endpoint still in the zone: %s", z)
	}

	r = wh(http.MethodGet, "/records", nil, "")
	var eps []records.Endpoint
	if err := json.Unmarshal(r.Body, &eps); err != nil || r.Status != 200 {
		t.Fatalf("GET /records: %d %s", r.Status, r.Body)
	}
	found := false
	for _, e := range eps {
		if e.DNSName == "web.dyn.test" && e.RecordType == "CNAME" && len(e.Targets) == 1 && e.Targets[0] == "app.dyn.test" && e.RecordTTL == 60 {
			found = true
		}
		if e.RecordType == "SOA" {
			t.Errorf("GET /records shows the SOA: %+v", e)
		}
	}
	if !found {
		t.Errorf("GET /records lacks web.dyn.test CNAME app.dyn.test as ExternalDNS wrote it: %s", r.Body)
	}

	adj := `[{"dnsName":"x.dyn.test","targets":["192.0.2.1"],"recordType":"A","recordTTL":0}]`
	if r := wh(http.MethodPost, "/adjustendpoints", nil, adj); r.Status != 200 || !strings.Contains(string(r.Body), `"dnsName":"x.dyn.test"`) {
		t.Fatalf("adjustendpoints: %d %s", r.Status, r.Body)
	}

	// Very old ExternalDNS releases sent Go field names; they still apply.
	legacy := `{"Create":[{"dnsName":"old.dyn.test","targets":["192.0.2.9"],"recordType":"A","recordTTL":30}]}`
	if r := wh(http.MethodPost, "/records", nil, legacy); r.Status != http.StatusNoContent {
		t.Fatalf("POST /records with Go field names: %d %s", r.Status, r.Body)
	}
	if z := string(a.get(tokAll, "dyn.test.").Body); !strings.Contains(z, `{"name":"old.dyn.test.","type":"A","ttl":30,"records":[{"content":"192.0.2.9"}]}`) {
		t.Errorf("change with Go field names not applied:\n%s", z)
	}

	before := a.get(tokAll, "dyn.test.")
	for _, tc := range []struct{ name, body, field string }{
		{"outside the domain filter", `{"create":[{"dnsName":"a.other.test","targets":["192.0.2.1"],"recordType":"A"}]}`, "create[0].dnsName"},
		{"set identifier", `{"create":[{"dnsName":"a.dyn.test","targets":["192.0.2.1"],"recordType":"A","setIdentifier":"eu"}]}`, "create[0].setIdentifier"},
		{"unknown type", `{"create":[{"dnsName":"a.dyn.test","targets":["1"],"recordType":"BOGUS"}]}`, "create[0].recordType"},
		{"bad target in the second of two", `{"create":[{"dnsName":"a.dyn.test","targets":["192.0.2.1"],"recordType":"A"},{"dnsName":"b.dyn.test","targets":["nope"],"recordType":"A"}]}`, "rrsets[1].records[0].content"},
	} {
		r := wh(http.MethodPost, "/records", nil, tc.body)
		if r.Status != 400 || r.Field() != tc.field {
			t.Errorf("%s: %d %s, want 400 at %s", tc.name, r.Status, r.Body, tc.field)
		}
	}
	if after := a.get(tokAll, "dyn.test."); string(after.Body) != string(before.Body) {
		t.Errorf("refused webhook changes changed the zone")
	}
}
