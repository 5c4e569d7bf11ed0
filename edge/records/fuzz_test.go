package records

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// FuzzPatch feeds PATCH bodies through decoding, checking and applying
// to a zone with data: nothing panics; a refused body is an *InputError
// naming a field; an accepted one gives a zone that builds, one serial
// on, and survives a snapshot round trip unchanged.
func FuzzPatch(f *testing.F) {
	for _, s := range []string{
		`{"rrsets":[{"name":"www.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":"10.0.0.1"}]}]}`,
		`{"rrsets":[{"name":"dyn.test.","type":"MX","ttl":60,"changetype":"REPLACE","records":[{"content":"10 mail"}]}]}`,
		`{"rrsets":[{"name":"t.dyn.test.","type":"TXT","ttl":0,"changetype":"REPLACE","records":[{"content":"\"a b\" c"}]}]}`,
		`{"rrsets":[{"name":"_s._tcp.dyn.test.","type":"SRV","ttl":60,"changetype":"REPLACE","records":[{"content":"0 5 443 www"}]}]}`,
		`{"rrsets":[{"name":"*.dyn.test.","type":"CNAME","ttl":60,"changetype":"REPLACE","records":[{"content":"www"}]}]}`,
		`{"rrsets":[{"name":"alias.dyn.test.","type":"CNAME","changetype":"DELETE"}]}`,
		`{"rrsets":[{"name":"x.dyn.test.","type":"CAA","ttl":60,"changetype":"REPLACE","records":[{"content":"0 issue \"ca.example\""}]}]}`,
		`{"rrsets":[{"name":"x.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":"10.0.0.1 ( ; x"}]}]}`,
		`{"rrsets":[{"name":"x.dyn.test.","type":"TXT","ttl":60,"changetype":"REPLACE","records":[{"content":"$INCLUDE /etc/passwd"}]}]}`,
		`{"rrsets":[]}`, `{}`, `[`, ``,
	} {
		f.Add(s)
	}
	base := emptyVersion("dyn.test.")
	p, ierr := DecodePatch(strings.NewReader(`{"rrsets":[
		{"name":"www.dyn.test.","type":"A","ttl":60,"changetype":"REPLACE","records":[{"content":"10.0.0.1"}]},
		{"name":"alias.dyn.test.","type":"CNAME","ttl":60,"changetype":"REPLACE","records":[{"content":"www"}]}]}`))
	if ierr != nil {
		f.Fatal(ierr)
	}
	changes, ierr := plan(p, base.origin, DefaultMaxTTL)
	if ierr != nil {
		f.Fatal(ierr)
	}
	base, _, err := apply(base, changes)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		p, ierr := DecodePatch(strings.NewReader(body))
		if ierr != nil {
			if ierr.Field == "" || ierr.Status < 400 || ierr.Status > 499 {
				t.Fatalf("refusal without a field or 4xx status: %+v", ierr)
			}
			return
		}
		changes, ierr := plan(p, base.origin, DefaultMaxTTL)
		if ierr != nil {
			if !strings.HasPrefix(ierr.Field, "rrsets") {
				t.Fatalf("refusal outside rrsets: %+v", ierr)
			}
			return
		}
		next, _, err := apply(base, changes)
		var ie *InputError
		switch {
		case errors.Is(err, errNoChange):
			return
		case errors.As(err, &ie):
			if !strings.HasPrefix(ie.Field, "rrsets") {
				t.Fatalf("refusal outside rrsets: %+v", ie)
			}
			return
		case err != nil:
			t.Fatalf("apply: %v", err)
		}
		if next.zone == nil || next.serial != base.serial+1 || next.seq != base.seq+1 {
			t.Fatalf("accepted change: zone %v, serial %d, seq %d", next.zone != nil, next.serial, next.seq)
		}
		snap := next.snapshot()
		again, err := fromSnapshot(next.origin, snap, DefaultMaxTTL)
		if err != nil {
			t.Fatalf("snapshot of an accepted change does not load: %v", err)
		}
		a, _ := json.Marshal(snap)
		b, _ := json.Marshal(again.snapshot())
		if string(a) != string(b) {
			t.Fatalf("snapshot round trip:\n%s\n%s", a, b)
		}
	})
}

// FuzzChange checks one RRset change, field by field, the way a PATCH
// body's parsed changes are: nothing panics, a refusal names a field of
// the change, and accepted records print as content that parses back to
// the same records.
func FuzzChange(f *testing.F) {
	for _, c := range []struct {
		name, typ, content string
		ttl                int64
	}{
		{"www.dyn.test.", "A", "10.0.0.1", 60}, {"dyn.test.", "MX", "10 mail", 60},
		{"t.dyn.test", "TXT", `"a \" b" c`, 0}, {"_s._tcp.dyn.test.", "SRV", "0 5 443 www", 1},
		{"x.dyn.test.", "CAA", `0 issue "ca.example"`, 60}, {"x.dyn.test.", "SSHFP", "1 1 123456789abcdef67890123456789abcdef67890", 60},
		{"x.dyn.test.", "A", "10.0.0.1 ( ; x", 60}, {"x.dyn.test.", "TXT", "$ORIGIN evil.", 60},
		{"x.dyn.test.", "HTTPS", `1 . alpn="h2,h3"`, 60}, {"*.dyn.test.", "CNAME", "www", 60},
	} {
		f.Add(c.name, c.typ, c.content, c.ttl)
	}
	f.Fuzz(func(t *testing.T, name, typ, content string, ttl int64) {
		c := Change{Name: name, Type: typ, TTL: &ttl, Changetype: ChangeReplace, Records: []Record{{content}}}
		k, rs, ierr := c.parse("dyn.test.", DefaultMaxTTL, "rrsets[0]")
		if ierr != nil {
			if !strings.HasPrefix(ierr.Field, "rrsets[0]") || ierr.Status != 400 {
				t.Fatalf("refusal: %+v", ierr)
			}
			return
		}
		v := rs.view(k)
		again := Change{Name: v.Name, Type: v.Type, TTL: &ttl, Changetype: ChangeReplace, Records: v.Records}
		_, rs2, ierr := again.parse("dyn.test.", DefaultMaxTTL, "rrsets[0]")
		if ierr != nil {
			t.Fatalf("accepted %q %s %q prints as %q, which is refused: %v", name, typ, content, v.Records[0].Content, ierr)
		}
		if !sameSet(rs, rs2) {
			t.Fatalf("accepted %q %s %q prints as %q, which parses to another record", name, typ, content, v.Records[0].Content)
		}
	})
}
