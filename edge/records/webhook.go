package records

import (
	_ "embed"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/admin"
	"github.com/dnsedge/dnsedge/edge/internal/dnsname"
)

// WebhookMediaType is the media type of the ExternalDNS webhook provider
// protocol, version 1: requests and answers carry it.
const WebhookMediaType = "application/external.dns.webhook+json;version=1"

// WebhookOpenAPI describes the webhook provider protocol as served here,
// for tests and for readers.
//
//go:embed webhook.json
var WebhookOpenAPI []byte

// Endpoint is ExternalDNS's endpoint: one name, type and its targets.
type Endpoint struct {
	DNSName          string             `json:"dnsName,omitempty"`
	Targets          []string           `json:"targets,omitempty"`
	RecordType       string             `json:"recordType,omitempty"`
	SetIdentifier    string             `json:"setIdentifier,omitempty"`
	RecordTTL        int64              `json:"recordTTL,omitempty"`
	Labels           map[string]string  `json:"labels,omitempty"`
	ProviderSpecific []ProviderProperty `json:"providerSpecific,omitempty"`
}

// ProviderProperty is one of an endpoint's providerSpecific entries.
type ProviderProperty struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Changes is the body of POST /records, with the keys of ExternalDNS's
// published webhook schema (plan.Changes: create, updateOld, updateNew,
// delete). encoding/json matches keys without regard to case, so the
// Go field names very old releases sent (Create, ...) are read too.
type Changes struct {
	Create    []*Endpoint `json:"create"`
	UpdateOld []*Endpoint `json:"updateOld"`
	UpdateNew []*Endpoint `json:"updateNew"`
	Delete    []*Endpoint `json:"delete"`
}

// DomainFilter is the answer of GET /: the zones the provider manages.
// Filters is the list of the published webhook schema; Include is the
// same list under the key ExternalDNS's DomainFilter reads.
type DomainFilter struct {
	Filters []string `json:"filters"`
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
}

// Webhook serves the ExternalDNS webhook provider protocol over the API
// zones one principal may change: GET / (negotiation: the domain filter),
// GET /records, POST /records (applied per zone, each zone's changes all
// or none), POST /adjustendpoints. It is immutable and safe for
// concurrent use.
type Webhook struct {
	m       *Manager
	p       *admin.Principal
	cfg     Config
	origins []string
}

// NewWebhook returns the provider of the zones of origins (kept by m)
// that p may change, acting as p.
func NewWebhook(m *Manager, origins []string, p *admin.Principal, cfg Config) *Webhook {
	h := &Webhook{m: m, p: p, cfg: cfg}
	for _, o := range slices.Sorted(slices.Values(origins)) {
		if p.Allows(o, true) {
			h.origins = append(h.origins, o)
		}
	}
	return h
}

// Register adds the provider's routes to mux.
func (h *Webhook) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", h.negotiate)
	mux.HandleFunc("GET /records", h.records)
	mux.HandleFunc("POST /records", h.apply)
	mux.HandleFunc("POST /adjustendpoints", h.adjust)
}

// zones returns the API zones p may change, sorted.
func (h *Webhook) zones() []string { return h.origins }

func (h *Webhook) write(w http.ResponseWriter, status int, v any) {
	b, err := compactJSON(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", WebhookMediaType)
	w.Header().Set("Vary", "Content-Type")
	w.WriteHeader(status)
	w.Write(b)
}

// accepts reports whether r's Accept header admits the webhook media type.
func accepts(r *http.Request) bool {
	a := r.Header.Get("Accept")
	if a == "" {
		return true
	}
	for part := range strings.SplitSeq(a, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "application/external.dns.webhook+json", "application/json", "application/*", "*/*":
			return true
		}
	}
	return false
}

func (h *Webhook) negotiate(w http.ResponseWriter, r *http.Request) {
	if !accepts(r) {
		writeError(w, http.StatusNotAcceptable, "Accept", "this provider speaks "+WebhookMediaType)
		return
	}
	df := DomainFilter{Filters: []string{}}
	for _, o := range h.zones() {
		df.Filters = append(df.Filters, strings.TrimSuffix(o, "."))
	}
	df.Include = df.Filters
	h.write(w, http.StatusOK, df)
}

// targetIsName lists the types whose whole RDATA is a domain name, and
// nameLast those whose last field is: ExternalDNS writes them without the
// final dot.
var (
	targetIsName = map[uint16]bool{dns.TypeCNAME: true, dns.TypeNS: true, dns.TypePTR: true, dns.TypeDNAME: true}
	nameLast     = map[uint16]bool{dns.TypeMX: true, dns.TypeSRV: true}
)

func (h *Webhook) records(w http.ResponseWriter, r *http.Request) {
	if !accepts(r) {
		writeError(w, http.StatusNotAcceptable, "Accept", "this provider speaks "+WebhookMediaType)
		return
	}
	out := []*Endpoint{}
	for _, o := range h.zones() {
		s, err := h.m.Get(o)
		if err != nil {
			continue
		}
		for _, set := range s.RRsets {
			t := dns.StringToType[set.Type]
			if t == dns.TypeSOA {
				continue
			}
			e := &Endpoint{DNSName: strings.TrimSuffix(set.Name, "."), RecordType: set.Type, RecordTTL: int64(set.TTL), Targets: make([]string, len(set.Records))}
			for i, rec := range set.Records {
				e.Targets[i] = externalTarget(t, rec.Content)
			}
			out = append(out, e)
		}
	}
	h.write(w, http.StatusOK, out)
}

// externalTarget writes content as ExternalDNS writes targets: host
// names without the final dot.
func externalTarget(t uint16, content string) string {
	switch {
	case targetIsName[t]:
		return strings.TrimSuffix(content, ".")
	case nameLast[t]:
		if i := strings.LastIndexByte(content, ' '); i >= 0 {
			return content[:i+1] + strings.TrimSuffix(content[i+1:], ".")
		}
	}
	return content
}

// zoneTarget turns an ExternalDNS target into RDATA in master file
// syntax: host names made absolute, TXT quoted unless it already is.
func zoneTarget(t uint16, target string) string {
	abs := func(n string) string {
		if n == "" || strings.HasSuffix(n, ".") {
			return n
		}
		return n + "."
	}
	switch {
	case targetIsName[t]:
		return abs(target)
	case nameLast[t]:
		if i := strings.LastIndexByte(target, ' '); i >= 0 {
			return target[:i+1] + abs(target[i+1:])
		}
	case t == dns.TypeTXT && !strings.HasPrefix(target, `"`):
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(target) + `"`
	}
	return target
}

func (h *Webhook) body(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil ||
		(mt != "application/external.dns.webhook+json" && mt != "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type", "the body must be "+WebhookMediaType)
		return false
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "body", "body is larger than "+strconv.FormatInt(h.cfg.MaxBodyBytes, 10)+" bytes")
		return false
	}
	// Not strict: ExternalDNS may add fields to its endpoint.
	if ierr := decodeJSON(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes), v, false); ierr != nil {
		writeError(w, ierr.Status, ierr.Field, ierr.Msg)
		return false
	}
	return true
}

func (h *Webhook) adjust(w http.ResponseWriter, r *http.Request) {
	var eps []*Endpoint
	if !h.body(w, r, &eps) {
		return
	}
	if eps == nil {
		eps = []*Endpoint{}
	}
	h.write(w, http.StatusOK, eps)
}

// zoneChange is one zone's part of a POST /records.
type zoneChange struct {
	patch Patch
	keys  map[setKey]bool
}

func (h *Webhook) apply(w http.ResponseWriter, r *http.Request) {
	var ch Changes
	if !h.body(w, r, &ch) {
		return
	}
	byZone := make(map[string]*zoneChange)
	add := func(list string, i int, e *Endpoint, del bool) *InputError {
		f := fmt.Sprintf("%s[%d]", list, i)
		if e == nil {
			return badInput(f, "null endpoint")
		}
		if e.SetIdentifier != "" {
			return badInput(f+".setIdentifier", "set identifiers (routing policies) are not supported")
		}
		if _, ok := dns.IsDomainName(e.DNSName); !ok || e.DNSName == "" {
			return badInput(f+".dnsName", "%q is not a domain name", e.DNSName)
		}
		name := dnsname.Lower(dns.Fqdn(e.DNSName))
		origin := Lookup(h.origins, name)
		if origin == "" {
			return badInput(f+".dnsName", "%s is in no zone of the domain filter", name)
		}
		t, ok := dns.StringToType[strings.ToUpper(e.RecordType)]
		if !ok {
			return badInput(f+".recordType", "unknown type %q", e.RecordType)
		}
		zc := byZone[origin]
		if zc == nil {
			zc = &zoneChange{keys: make(map[setKey]bool)}
			byZone[origin] = zc
		}
		k := setKey{name, t}
		if del {
			if zc.keys[k] {
				return nil
			}
			zc.patch.RRsets = append(zc.patch.RRsets, Change{Name: name, Type: dns.TypeToString[t], Changetype: ChangeDelete})
			zc.keys[k] = true
			return nil
		}
		ttl := e.RecordTTL
		if ttl == 0 {
			ttl = int64(h.cfg.Webhook.defaultTTL())
		}
		c := Change{Name: name, Type: dns.TypeToString[t], Changetype: ChangeReplace, TTL: &ttl}
		for _, tg := range e.Targets {
			c.Records = append(c.Records, Record{Content: zoneTarget(t, tg)})
		}
		if zc.keys[k] {
			// A delete of the same RRset (updateOld) gives way to it.
			i := slices.IndexFunc(zc.patch.RRsets, func(x Change) bool {
				return x.Name == name && x.Type == c.Type && x.Changetype == ChangeDelete
			})
			if i < 0 {
				return badInput(f, "%s %s is changed twice", name, c.Type)
			}
			zc.patch.RRsets[i] = c
			return nil
		}
		zc.patch.RRsets = append(zc.patch.RRsets, c)
		zc.keys[k] = true
		return nil
	}
	lists := []struct {
		name string
		eps  []*Endpoint
		del  bool
	}{{"delete", ch.Delete, true}, {"updateOld", ch.UpdateOld, true}, {"create", ch.Create, false}, {"updateNew", ch.UpdateNew, false}}
	for _, l := range lists {
		for i, e := range l.eps {
			if ierr := add(l.name, i, e, l.del); ierr != nil {
				writeError(w, ierr.Status, ierr.Field, ierr.Msg)
				return
			}
		}
	}
	origins := make([]string, 0, len(byZone))
	for o := range byZone {
		origins = append(origins, o)
	}
	slices.Sort(origins)
	for _, o := range origins {
		if _, err := h.m.Apply(h.p.ID, o, nil, &byZone[o].patch, h.cfg.MaxTTL); err != nil {
			if ie, ok := err.(*InputError); ok {
				writeError(w, ie.Status, ie.Field, "zone "+o+": "+ie.Msg)
				return
			}
			status := http.StatusInternalServerError
			if errors.Is(err, ErrUnavailable) {
				status = http.StatusServiceUnavailable
			}
			writeError(w, status, "", "zone "+o+": "+err.Error())
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *WebhookConfig) defaultTTL() uint32 {
	if c == nil || c.DefaultTTL == 0 {
		return DefaultWebhookTTL
	}
	return c.DefaultTTL
}
