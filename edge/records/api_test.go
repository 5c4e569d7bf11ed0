package records_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dnsedge/dnsedge/edge/records"
)

const seed = `{"rrsets":[
 {"name":"www.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":"10.0.0.1"},{"content":"10.0.0.2"}]},
 {"name":"dyn.test.","type":"MX","ttl":300,"changetype":"REPLACE","records":[{"content":"10 mail"}]},
 {"name":"alias.dyn.test.","type":"CNAME","ttl":60,"changetype":"REPLACE","records":[{"content":"www"}]}
]}`

func change(name, typ string, ttl int, ct string, contents ...string) string {
	var recs []string
	for _, c := range contents {
		recs = append(recs, fmt.Sprintf(`{"content":%q}`, c))
	}
	return fmt.Sprintf(`{"rrsets":[{"name":%q,"type":%q,"ttl":%d,"changetype":%q,"records":[%s]}]}`, name, typ, ttl, ct, strings.Join(recs, ","))
}

// TestBadInputChangesNothing: each bad request gets a 4xx naming the
// field at fault, and the zone (its records, serial and journal) stays
// as it was.
func TestBadInputChangesNothing(t *testing.T) {
	a := startAPI(t, records.Config{MaxBodyBytes: 4096})
	a.mustPatch("dyn.test.", seed)
	tests := []struct {
		name        string
		body        string
		hdr         map[string]string
		status      int
		field       string // a prefix of the field named
		specRejects bool   // the OpenAPI document refuses it too
	}{
		{"malformed A", change("x.dyn.test.", "A", 60, "REPLACE", "10.0.0.x"), nil, 400, "rrsets[0].records[0].content", false},
		{"AAAA given an IPv4 address", change("x.dyn.test.", "AAAA", 60, "REPLACE", "10.0.0.1"), nil, 400, "rrsets[0].records[0].content", false},
		{"MX without preference", change("dyn.test.", "MX", 60, "REPLACE", "mail.dyn.test."), nil, 400, "rrsets[0].records[0].content", false},
		{"second record malformed", change("x.dyn.test.", "A", 60, "REPLACE", "10.0.0.1", "300.1.1.1"), nil, 400, "rrsets[0].records[1].content", false},
		{"line break smuggling a record", change("x.dyn.test.", "A", 60, "REPLACE", "10.0.0.1\nevil 60 IN A 10.6.6.6"), nil, 400, "rrsets[0].records[0].content", false},
		{"empty content", change("x.dyn.test.", "TXT", 60, "REPLACE", ""), nil, 400, "rrsets[0].records[0].content", false},
		{"CAA that does not print back", change("x.dyn.test.", "CAA", 60, "REPLACE", `0" "0`), nil, 400, "rrsets[0].records[0].content", false},
		{"name outside the zone", change("www.other.test.", "A", 60, "REPLACE", "10.0.0.1"), nil, 400, "rrsets[0].name", false},
		{"name that only ends like the zone", change("xdyn.test.", "A", 60, "REPLACE", "10.0.0.1"), nil, 400, "rrsets[0].name", false},
		{"name not a domain name", change("a..dyn.test.", "A", 60, "REPLACE", "10.0.0.1"), nil, 400, "rrsets[0].name", false},
		{"CNAME beside an A", change("www.dyn.test.", "CNAME", 60, "REPLACE", "elsewhere.example."), nil, 400, "rrsets[0]", false},
		{"A beside a CNAME", change("alias.dyn.test.", "A", 60, "REPLACE", "10.0.0.9"), nil, 400, "rrsets[0]", false},
		{"two CNAMEs", change("c.dyn.test.", "CNAME", 60, "REPLACE", "a.example.", "b.example."), nil, 400, "rrsets[0].records", false},
		{"CNAME at the apex", change("dyn.test.", "CNAME", 60, "REPLACE", "a.example."), nil, 400, "rrsets[0]", false},
		{"TTL above max_ttl", change("x.dyn.test.", "A", 604801, "REPLACE", "10.0.0.1"), nil, 400, "rrsets[0].ttl", false},
		{"TTL negative", change("x.dyn.test.", "A", -1, "REPLACE", "10.0.0.1"), nil, 400, "rrsets[0].ttl", true},
		{"TTL a string", `{"rrsets":[{"name":"x.dyn.test.","type":"A","ttl":"60","changetype":"REPLACE","records":[{"content":"10.0.0.1"}]}]}`, nil, 400, "rrsets.ttl", true},
		{"TTL missing", `{"rrsets":[{"name":"x.dyn.test.","type":"A","changetype":"REPLACE","records":[{"content":"10.0.0.1"}]}]}`, nil, 400, "rrsets[0].ttl", false},
		{"unknown type", change("x.dyn.test.", "FOO", 60, "REPLACE", "1"), nil, 400, "rrsets[0].type", false},
		{"SOA is the server's", change("dyn.test.", "SOA", 60, "REPLACE", "ns. host. 9 1 1 1 1"), nil, 400, "rrsets[0].type", false},
		{"RRSIG", change("x.dyn.test.", "RRSIG", 60, "REPLACE", "A 8 3 60 20300101000000 20200101000000 1 dyn.test. AAAA"), nil, 400, "rrsets[0].type", false},
		{"unknown changetype", change("x.dyn.test.", "A", 60, "UPSERT", "10.0.0.1"), nil, 400, "rrsets[0].changetype", true},
		{"REPLACE without records", change("x.dyn.test.", "A", 60, "REPLACE"), nil, 400, "rrsets[0].records", false},
		{"DELETE with records", change("www.dyn.test.", "A", 60, "DELETE", "10.0.0.1"), nil, 400, "rrsets[0]", false},
		{"unknown field", `{"rrsets":[{"name":"x.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":"10.0.0.1"}],"comment":"hi"}]}`, nil, 400, "comment", true},
		{"unknown top-level field", `{"rrsets":[],"dry_run":true}`, nil, 400, "dry_run", true},
		{"no rrsets", `{}`, nil, 400, "rrsets", true},
		{"not JSON", `rrsets: []`, nil, 400, "body", true},
		{"two JSON values", `{"rrsets":[]} {"rrsets":[]}`, nil, 400, "body", false},
		{"RRset named twice", `{"rrsets":[{"name":"x.dyn.test.","type":"A","changetype":"DELETE"},{"name":"X.dyn.test","type":"a","changetype":"DELETE"}]}`, nil, 400, "rrsets[1]", false},
		{"good change then a bad one", `{"rrsets":[{"name":"www.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":"10.9.9.9"}]},{"name":"y.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":"nope"}]}]}`, nil, 400, "rrsets[1].records[0].content", false},
		{"oversized body", change("x.dyn.test.", "TXT", 60, "REPLACE", strings.Repeat("a", 5000)), nil, 413, "body", false},
		{"not application/json", change("x.dyn.test.", "A", 60, "REPLACE", "10.0.0.1"), map[string]string{"Content-Type": "text/plain"}, 415, "Content-Type", true},
		{"malformed If-Match", change("x.dyn.test.", "A", 60, "REPLACE", "10.0.0.1"), map[string]string{"If-Match": "2"}, 400, "If-Match", false},
	}
	journal := filepath.Join(a.dir, "dyn.test.", "journal.jsonl")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := a.get(tokAll, "dyn.test.")
			jBefore, err := os.ReadFile(journal)
			if err != nil {
				t.Fatal(err)
			}
			r := a.patch(tokAll, "dyn.test.", tc.body, tc.hdr)
			if r.Status != tc.status || !strings.HasPrefix(r.Field(), tc.field) {
				t.Errorf("got %d field %q (%s), want %d field %q", r.Status, r.Field(), r.Body, tc.status, tc.field)
			}
			if tc.specRejects && r.SpecErr == nil {
				t.Errorf("the OpenAPI document accepts this request; it should refuse it too")
			}
			after := a.get(tokAll, "dyn.test.")
			if !bytes.Equal(before.Body, after.Body) || before.Header.Get("ETag") != after.Header.Get("ETag") {
				t.Errorf("zone changed:\nbefore %s\nafter  %s", before.Body, after.Body)
			}
			jAfter, _ := os.ReadFile(journal)
			if !bytes.Equal(jBefore, jAfter) {
				t.Errorf("journal changed")
			}
		})
	}
}

// TestAuth: no credentials 401, unknown ones 401, a zone outside the
// grant 403, a read grant may GET but not PATCH.
func TestAuth(t *testing.T) {
	a := startAPI(t, records.Config{})
	body := change("www.dyn.test.", "A", 60, "REPLACE", "10.0.0.1")
	tests := []struct {
		name   string
		method string
		zone   string
		auth   string // the Authorization header
		status int
	}{
		{"GET without credentials", http.MethodGet, "dyn.test.", "", 401},
		{"PATCH without credentials", http.MethodPatch, "dyn.test.", "", 401},
		{"unknown token", http.MethodGet, "dyn.test.", "Bearer nope", 401},
		{"basic auth", http.MethodGet, "dyn.test.", "Basic d3JpdGVyOndyaXRlLXRva2Vu", 401},
		{"bearer without token", http.MethodGet, "dyn.test.", "Bearer", 401},
		{"read token reads", http.MethodGet, "dyn.test.", "Bearer " + tokRead, 200},
		{"read token, zone without the final dot", http.MethodGet, "DYN.test", "Bearer " + tokRead, 200},
		{"read token may not write", http.MethodPatch, "dyn.test.", "Bearer " + tokRead, 403},
		{"zone outside the grant", http.MethodGet, "dyn.test.", "Bearer " + tokOther, 403},
		{"write outside the grant", http.MethodPatch, "dyn.test.", "Bearer " + tokOther, 403},
		{"grant elsewhere", http.MethodPatch, "other.test.", "Bearer " + tokWrite, 403},
		{"write token writes", http.MethodPatch, "dyn.test.", "Bearer " + tokWrite, 200},
		{"zone not kept by the API", http.MethodGet, "static.test.", "Bearer " + tokAll, 404},
		{"zone not kept, outside the grant", http.MethodGet, "static.test.", "Bearer " + tokWrite, 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.auth != "" {
				h["Authorization"] = tc.auth
			}
			b := ""
			if tc.method == http.MethodPatch {
				b = body
			}
			r := a.do(tc.method, "/api/v1/zones/"+tc.zone, "", h, b)
			if r.Status != tc.status {
				t.Fatalf("got %d %s, want %d", r.Status, r.Body, tc.status)
			}
			if tc.status == 401 && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %v", r.Header)
			}
		})
	}
}

// TestIfMatch: of PATCHes sent at once against the same ETag exactly one
// is applied, the others get 412 and change nothing; the serial moves by
// one per applied change.
func TestIfMatch(t *testing.T) {
	a := startAPI(t, records.Config{})
	g := a.get(tokWrite, "dyn.test.")
	tag := g.Header.Get("ETag")
	if tag != `"1"` {
		t.Fatalf("a new zone's ETag is %s, want \"1\"", tag)
	}
	const n = 8
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := a.patch(tokWrite, "dyn.test.", change("www.dyn.test.", "A", 60, "REPLACE", fmt.Sprintf("10.0.1.%d", i)), map[string]string{"If-Match": tag})
			statuses[i] = r.Status
		}()
	}
	wg.Wait()
	won := 0
	for i, s := range statuses {
		switch s {
		case 200:
			won++
		case 412:
		default:
			t.Errorf("PATCH %d: %d", i, s)
		}
	}
	if won != 1 {
		t.Fatalf("%d PATCHes applied with the same If-Match, want 1 (statuses %v)", won, statuses)
	}
	if got := a.get(tokWrite, "dyn.test.").Header.Get("ETag"); got != `"2"` {
		t.Fatalf("ETag after one change: %s, want \"2\"", got)
	}
	for _, tc := range []struct {
		ifMatch string
		status  int
	}{{`"1"`, 412}, {`W/"2"`, 412}, {`"7", "2"`, 200}, {`*`, 200}} {
		r := a.patch(tokWrite, "dyn.test.", change("www.dyn.test.", "A", 60, "REPLACE", "10.0.2."+fmt.Sprint(len(tc.ifMatch))), map[string]string{"If-Match": tc.ifMatch})
		if r.Status != tc.status {
			t.Errorf("If-Match %s: %d %s, want %d", tc.ifMatch, r.Status, r.Body, tc.status)
		}
	}
}

// TestSerialAndNoOp: every change moves the serial by one; a PATCH that
// changes nothing (the same records again, deleting what is not there)
// leaves it.
func TestSerialAndNoOp(t *testing.T) {
	a := startAPI(t, records.Config{})
	r := a.mustPatch("dyn.test.", seed)
	if r.Header.Get("ETag") != `"2"` {
		t.Fatalf("ETag %s", r.Header.Get("ETag"))
	}
	r = a.mustPatch("dyn.test.", seed)
	if r.Header.Get("ETag") != `"2"` {
		t.Fatalf("the same records again moved the serial: %s", r.Header.Get("ETag"))
	}
	r = a.mustPatch("dyn.test.", `{"rrsets":[{"name":"none.dyn.test.","type":"A","changetype":"DELETE"}]}`)
	if r.Header.Get("ETag") != `"2"` {
		t.Fatalf("deleting nothing moved the serial: %s", r.Header.Get("ETag"))
	}
	r = a.mustPatch("dyn.test.", `{"rrsets":[{"name":"alias.dyn.test.","type":"CNAME","changetype":"DELETE"}]}`)
	if r.Header.Get("ETag") != `"3"` || strings.Contains(string(r.Body), "alias") {
		t.Fatalf("delete: %s %s", r.Header.Get("ETag"), r.Body)
	}
	if !strings.Contains(string(r.Body), `"content":"localhost. hostmaster.dyn.test. 3 `) {
		t.Fatalf("the SOA does not carry serial 3: %s", r.Body)
	}
}
