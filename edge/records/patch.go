package records

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/internal/dnsname"
	"github.com/dnsedge/dnsedge/edge/zone"
)

// Change types of a PATCH.
const (
	ChangeReplace = "REPLACE" // the RRset becomes the records given
	ChangeDelete  = "DELETE"  // the RRset is removed
)

// Patch is the body of PATCH /api/v1/zones/{zone}: changes to RRsets,
// applied all or none.
type Patch struct {
	RRsets []Change `json:"rrsets"`
}

// Change is one RRset change. TTL and Records are for REPLACE only.
type Change struct {
	Name       string   `json:"name"`
	Type       string   `json:"type"`
	TTL        *int64   `json:"ttl,omitempty"`
	Changetype string   `json:"changetype"`
	Records    []Record `json:"records,omitempty"`
}

// InputError is a request refused for what it holds: the field it names
// (a JSON path such as "rrsets[2].records[0].content", "body" for the body
// as a whole) and why. Status is the HTTP status it gets.
type InputError struct {
	Status int
	Field  string
	Msg    string
}

func (e *InputError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func badInput(fieldPath, format string, args ...any) *InputError {
	return &InputError{Status: http.StatusBadRequest, Field: fieldPath, Msg: fmt.Sprintf(format, args...)}
}

func at(i int) string { return "rrsets[" + strconv.Itoa(i) + "]" }

// decodeJSON decodes one JSON value from r into v strictly (unknown
// fields refused when strict), refusing trailing data. A body past the
// limit of an http.MaxBytesReader gets 413.
func decodeJSON(r io.Reader, v any, strict bool) *InputError {
	dec := json.NewDecoder(r)
	if strict {
		dec.DisallowUnknownFields()
	}
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("data after the JSON value")
		}
	}
	if err == nil {
		return nil
	}
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &mbe):
		return &InputError{Status: http.StatusRequestEntityTooLarge, Field: "body", Msg: fmt.Sprintf("body is larger than %d bytes", mbe.Limit)}
	case errors.As(err, &ute):
		f := ute.Field
		if f == "" {
			f = "body"
		}
		return badInput(f, "must be %s, not a JSON %s", jsonKind(ute.Type.Kind().String()), ute.Value)
	case errors.As(err, &se):
		return badInput("body", "not JSON: %v (at byte %d)", se, se.Offset)
	case errors.Is(err, io.EOF):
		return badInput("body", "empty body: want a JSON object")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		if name == "" {
			return badInput("body", "unknown field %q", name)
		}
		return badInput(name, "unknown field %q", name)
	}
	return badInput("body", "%v", err)
}

func jsonKind(k string) string {
	switch k {
	case "int64", "uint32", "int", "uint64":
		return "an integer in range"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return "a " + k
}

// DecodePatch reads a PATCH body.
func DecodePatch(r io.Reader) (*Patch, *InputError) {
	p := new(Patch)
	if err := decodeJSON(r, p, true); err != nil {
		return nil, err
	}
	if p.RRsets == nil {
		return nil, badInput("rrsets", "missing: the body is {\"rrsets\": [...]}")
	}
	return p, nil
}

// refusedTypes cannot be changed through the API: the SOA is the
// server's, the rest is not zone data or belongs to signing, and API
// zones are not signed.
var refusedTypes = map[uint16]string{
	dns.TypeSOA: "the SOA is kept by the server (its serial counts the changes)",
	dns.TypeOPT: "not zone data", dns.TypeTSIG: "not zone data", dns.TypeTKEY: "not zone data",
	dns.TypeANY: "not zone data", dns.TypeAXFR: "not zone data", dns.TypeIXFR: "not zone data",
	dns.TypeNone: "not zone data", dns.TypeMAILA: "not zone data", dns.TypeMAILB: "not zone data",
	dns.TypeRRSIG: "API zones are not signed", dns.TypeNSEC: "API zones are not signed",
	dns.TypeNSEC3: "API zones are not signed", dns.TypeNSEC3PARAM: "API zones are not signed",
	dns.TypeNXT: "obsolete (RFC 3755): API zones are not signed",
}

// parse checks c against the zone of origin and returns the RRset it
// names and, for REPLACE, the records it sets. Field paths start at
// prefix ("rrsets[3]").
func (c *Change) parse(origin string, maxTTL uint32, prefix string) (setKey, rrset, *InputError) {
	var k setKey
	ct := c.Changetype
	if ct != ChangeReplace && ct != ChangeDelete {
		if c.Changetype == "" {
			return k, rrset{}, badInput(prefix+".changetype", "missing: REPLACE or DELETE")
		}
		return k, rrset{}, badInput(prefix+".changetype", "changetype %q must be REPLACE or DELETE", c.Changetype)
	}
	if c.Name == "" {
		return k, rrset{}, badInput(prefix+".name", "missing")
	}
	if _, ok := dns.IsDomainName(c.Name); !ok || strings.ContainsAny(c.Name, " \t\r\n;()\"") {
		return k, rrset{}, badInput(prefix+".name", "%q is not a domain name", c.Name)
	}
	k.name = dnsname.Lower(dns.Fqdn(c.Name))
	if !dns.IsSubDomain(origin, k.name) {
		return k, rrset{}, badInput(prefix+".name", "%s is outside the zone %s", k.name, origin)
	}
	t, ok := dns.StringToType[strings.ToUpper(c.Type)]
	if !ok {
		if c.Type == "" {
			return k, rrset{}, badInput(prefix+".type", "missing")
		}
		return k, rrset{}, badInput(prefix+".type", "unknown type %q", c.Type)
	}
	if why, no := refusedTypes[t]; no {
		return k, rrset{}, badInput(prefix+".type", "type %s cannot be changed: %s", dns.TypeToString[t], why)
	}
	k.typ = t
	if ct == ChangeDelete {
		if c.TTL != nil || len(c.Records) > 0 {
			return k, rrset{}, badInput(prefix, "DELETE takes no ttl or records")
		}
		return k, rrset{}, nil
	}
	if c.TTL == nil {
		return k, rrset{}, badInput(prefix+".ttl", "missing: REPLACE needs a ttl")
	}
	if *c.TTL < 0 || *c.TTL > int64(maxTTL) {
		return k, rrset{}, badInput(prefix+".ttl", "ttl %d is out of range 0 to %d", *c.TTL, maxTTL)
	}
	if len(c.Records) == 0 {
		return k, rrset{}, badInput(prefix+".records", "REPLACE needs records (DELETE removes an RRset)")
	}
	rs := rrset{ttl: uint32(*c.TTL), rrs: make([]dns.RR, 0, len(c.Records))}
	buf := make([]byte, dns.MaxMsgSize)
	for j, r := range c.Records {
		f := fmt.Sprintf("%s.records[%d].content", prefix, j)
		rr, err := parseRData(origin, k, rs.ttl, r.Content)
		if err == nil {
			err = printsBack(origin, k, rs.ttl, rr)
		}
		if err != nil {
			return k, rrset{}, badInput(f, "%v", err)
		}
		if _, err := dns.PackRR(rr, buf, 0, nil, false); err != nil {
			return k, rrset{}, badInput(f, "cannot be encoded: %v", err)
		}
		for i, have := range rs.rrs {
			if dns.IsDuplicate(have, rr) {
				return k, rrset{}, badInput(f, "the same record as records[%d]", i)
			}
		}
		rs.rrs = append(rs.rrs, rr)
	}
	return k, rs, nil
}

// parseRData parses content as the RDATA of a record of k, in master file
// syntax with names relative to origin.
func parseRData(origin string, k setKey, ttl uint32, content string) (dns.RR, error) {
	if strings.TrimSpace(content) == "" {
		return nil, errors.New("empty")
	}
	if strings.ContainsAny(content, "\n\r\x00") {
		return nil, errors.New("holds a line break: one record per content")
	}
	line := fmt.Sprintf("%s %d IN %s %s", k.name, ttl, dns.TypeToString[k.typ], content)
	zp := dns.NewZoneParser(strings.NewReader(line), origin, "")
	zp.SetIncludeAllowed(false)
	rr, ok := zp.Next()
	if !ok {
		if err := zp.Err(); err != nil {
			return nil, rdataError(err)
		}
		return nil, errors.New("no record")
	}
	if _, more := zp.Next(); more {
		return nil, errors.New("more than one record")
	}
	if err := zp.Err(); err != nil {
		return nil, rdataError(err)
	}
	if rr.Header().Rrtype != k.typ {
		return nil, fmt.Errorf("is not %s data", dns.TypeToString[k.typ])
	}
	if strings.TrimSpace(strings.TrimPrefix(rr.String(), rr.Header().String())) == "" {
		// A TXT of ";" (a comment) parses as a record with no strings,
		// which no zone can hold and the API could not print back.
		return nil, errors.New("no data (a ';' starts a comment)")
	}
	return rr, nil
}

// printsBack checks that rr's content, as the API prints it and as
// snapshots and the journal keep it, parses back to the same record:
// miekg/dns takes some RDATA that it then prints in a form it does not
// read again (a CAA tag holding a quote), and such a record would be lost
// at the next restart.
func printsBack(origin string, k setKey, ttl uint32, rr dns.RR) error {
	c := content(rr)
	again, err := parseRData(origin, k, ttl, c)
	if err != nil || content(again) != c {
		return fmt.Errorf("is read as %q, which does not read back as the same record", strings.TrimSpace(c))
	}
	return nil
}

// rdataError returns the parser's complaint without its position, which
// is that of a line the caller never wrote.
func rdataError(err error) error {
	var pe *dns.ParseError
	if !errors.As(err, &pe) {
		return err
	}
	msg := strings.TrimPrefix(pe.Error(), "dns: ")
	if i := strings.LastIndex(msg, " at line: "); i >= 0 {
		msg = msg[:i]
	}
	return fmt.Errorf("malformed rdata: %s", msg)
}

// planned is a checked change of a request, with where it came from.
type planned struct {
	idx int
	key setKey
	del bool
	set rrset
}

// plan checks every change of p against the zone of origin: each alone,
// and no RRset named twice. It changes nothing.
func plan(p *Patch, origin string, maxTTL uint32) ([]planned, *InputError) {
	out := make([]planned, 0, len(p.RRsets))
	seen := make(map[setKey]int, len(p.RRsets))
	for i := range p.RRsets {
		c := &p.RRsets[i]
		k, rs, err := c.parse(origin, maxTTL, at(i))
		if err != nil {
			return nil, err
		}
		if j, dup := seen[k]; dup {
			return nil, badInput(at(i), "%s %s is already changed by rrsets[%d]", k.name, dns.TypeToString[k.typ], j)
		}
		seen[k] = i
		out = append(out, planned{idx: i, key: k, del: c.Changetype == ChangeDelete, set: rs})
	}
	return out, nil
}

// apply returns the version of base after changes, built and checked as
// a whole (a CNAME beside other data, NS at a wildcard, ...), and the
// diff. It returns errNoChange when the changes leave base as it is.
// base is not modified.
func apply(base *version, changes []planned) (*version, []Diff, error) {
	next := &version{origin: base.origin, seq: base.seq + 1, serial: nextSerial(base.serial), sets: make(map[setKey]rrset, len(base.sets)+len(changes))}
	for k, s := range base.sets {
		next.sets[k] = s
	}
	var diff []Diff
	byKey := make(map[setKey]int, len(changes))
	for _, c := range changes {
		byKey[c.key] = c.idx
		old, had := base.sets[c.key]
		d := Diff{Name: c.key.name, Type: dns.TypeToString[c.key.typ]}
		if had {
			v := old.view(c.key)
			d.Before = &v
		}
		if c.del {
			if !had {
				continue
			}
			delete(next.sets, c.key)
			d.Changetype = ChangeDelete
		} else {
			if had && sameSet(old, c.set) {
				continue
			}
			next.sets[c.key] = c.set
			v := c.set.view(c.key)
			d.After, d.Changetype = &v, ChangeReplace
		}
		diff = append(diff, d)
	}
	if len(diff) == 0 {
		return base, nil, errNoChange
	}
	index, err := next.build()
	if err != nil {
		return nil, nil, blame(err, index, byKey)
	}
	return next, diff, nil
}

// blame turns the zone builder's first problem into an InputError at the
// change that caused it.
func blame(err error, index []recordAt, byKey map[setKey]int) *InputError {
	var re *zone.RecordError
	if !errors.As(err, &re) || re.Index < 0 || re.Index >= len(index) {
		return badInput("rrsets", "%v", err)
	}
	ra := index[re.Index]
	if i, ok := byKey[ra.key]; ok {
		return badInput(fmt.Sprintf("%s.records[%d]", at(i), ra.n), "%v", re.Err)
	}
	for k, i := range byKey {
		if k.name == ra.key.name {
			return badInput(at(i), "%v", re.Err)
		}
	}
	return badInput("rrsets", "%v", re.Err)
}

func sameSet(a, b rrset) bool {
	if a.ttl != b.ttl || len(a.rrs) != len(b.rrs) {
		return false
	}
	for i := range a.rrs {
		// The text, not dns.IsDuplicate: that compares hex fields
		// (SSHFP, TLSA, DS) as given, so that a lower-case digest would
		// differ from the upper-case one it prints as.
		if content(a.rrs[i]) != content(b.rrs[i]) {
			return false
		}
	}
	return true
}

// Diff is what one change did to one RRset, for the audit log and the
// journal: the RRset before (nil when it did not exist) and after (nil
// when deleted).
type Diff struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Changetype string `json:"changetype"`
	Before     *RRset `json:"before"`
	After      *RRset `json:"after"`
}

// compactJSON is json.Marshal without the HTML escaping, for log lines.
func compactJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
