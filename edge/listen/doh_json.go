package listen

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// The JSON API is the one Google Public DNS and Cloudflare serve next to
// RFC 8484 (https://developers.google.com/speed/public-dns/docs/doh/json):
// GET path?name=example.com&type=AAAA&do=1&cd=0&edns_client_subnet=
// 192.0.2.0/24&ct=application/x-javascript.

// JSON API media types: the default one and those ct may ask for.
const (
	dnsJSONType = "application/dns-json"
	jsonType    = "application/json"
	jsJSONType  = "application/x-javascript"
)

// wantsJSON reports whether a GET request of raw query string rawQuery
// and Accept header accept is for the JSON API: it has no dns parameter,
// and accepts application/dns-json or has a name parameter.
func wantsJSON(rawQuery, accept string) bool {
	if _, ok := dohQueryParam(rawQuery, "dns"); ok {
		return false
	}
	if _, ok := dohQueryParam(rawQuery, "name"); ok {
		return true
	}
	return strings.Contains(accept, dnsJSONType)
}

// jsonParams are the parameters of one JSON API query.
type jsonParams struct {
	name   string // fully qualified
	qtype  uint16
	do, cd bool
	ecs    netip.Prefix // invalid when absent
	ct     string       // the response media type
}

// parseJSONParams checks the JSON API parameters of the raw query string
// rawQuery: name (required, a domain name), type (a mnemonic such as AAAA
// or a number; default A), do and cd (0, 1, false or true),
// edns_client_subnet (a CIDR prefix or an address) and ct (the response
// media type). Unknown parameters are ignored, as Google does.
func parseJSONParams(rawQuery string) (jsonParams, *dohError) {
	p := jsonParams{qtype: dns.TypeA, ct: dnsJSONType}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return p, dohBadRequest("bad query string")
	}
	name := q.Get("name")
	if name == "" {
		return p, dohBadRequest("missing name parameter")
	}
	if _, ok := dns.IsDomainName(name); !ok || len(name) > 253 || strings.HasPrefix(name, ".") && name != "." {
		return p, dohBadRequest("invalid name")
	}
	p.name = dns.Fqdn(name)
	var wire [256]byte
	if _, err := dns.PackDomainName(p.name, wire[:], 0, nil, false); err != nil {
		return p, dohBadRequest("invalid name") // e.g. a trailing backslash
	}
	var ok bool
	if t := q.Get("type"); t != "" {
		if p.qtype, ok = parseJSONType(t); !ok {
			return p, dohBadRequest("invalid type")
		}
	}
	if p.do, ok = parseJSONFlag(q.Get("do")); !ok {
		return p, dohBadRequest("invalid do")
	}
	if p.cd, ok = parseJSONFlag(q.Get("cd")); !ok {
		return p, dohBadRequest("invalid cd")
	}
	if s := q.Get("edns_client_subnet"); s != "" {
		if p.ecs, ok = parseJSONSubnet(s); !ok {
			return p, dohBadRequest("invalid edns_client_subnet")
		}
	}
	switch ct := q.Get("ct"); ct {
	case "", dnsJSONType:
	case jsonType, jsJSONType:
		p.ct = ct
	default:
		return p, dohBadRequest("unsupported ct")
	}
	return p, nil
}

// parseJSONType parses a query type given by mnemonic (AAAA, TYPE65) or
// number. Type 0 and OPT are not questions.
func parseJSONType(s string) (uint16, bool) {
	var t uint16
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		t = uint16(n)
	} else if v, ok := dns.StringToType[strings.ToUpper(s)]; ok {
		t = v
	} else if n, ok := strings.CutPrefix(strings.ToUpper(s), "TYPE"); ok {
		v, err := strconv.ParseUint(n, 10, 16)
		if err != nil {
			return 0, false
		}
		t = uint16(v)
	}
	return t, t != 0 && t != dns.TypeOPT
}

func parseJSONFlag(s string) (v, ok bool) {
	switch strings.ToLower(s) {
	case "", "0", "false":
		return false, true
	case "1", "true":
		return true, true
	}
	return false, false
}

// parseJSONSubnet parses an ECS prefix (RFC 7871): a CIDR prefix, or an
// address taken as a full-length prefix. The host bits are cleared.
func parseJSONSubnet(s string) (netip.Prefix, bool) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), true
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
	}
	return p.Masked(), true
}

// jsonQuery builds the DNS query of p: recursion desired, CD from p, and
// an OPT with DO and the client subnet when p has them.
func jsonQuery(p jsonParams) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(p.name, p.qtype)
	m.RecursionDesired = true
	m.CheckingDisabled = p.cd
	if p.do || p.ecs.IsValid() {
		m.SetEdns0(EDNSSize, p.do)
		if p.ecs.IsValid() {
			family := uint16(1)
			if p.ecs.Addr().Is6() {
				family = 2
			}
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{
				Code:          dns.EDNS0SUBNET,
				Family:        family,
				SourceNetmask: uint8(p.ecs.Bits()),
				Address:       p.ecs.Addr().AsSlice(),
			})
		}
	}
	return m
}

// serveJSON answers a JSON API request.
func (l *DoH) serveJSON(r *dohRequest, w *dohResponse, id string) {
	p, derr := parseJSONParams(r.rawQuery)
	if derr != nil {
		l.m.drop(reasonProtocol)
		w.failJSON(derr)
		return
	}
	if !l.tryAcquire() {
		l.m.drop(reasonOverload)
		w.failJSON(&dohError{http.StatusServiceUnavailable, "overloaded"})
		return
	}
	defer l.release()
	req := &pipeline.Request{
		Msg:      jsonQuery(p),
		Client:   r.client,
		Local:    l.addr,
		Listener: pipeline.KindDoH,
		ClientID: id,
		TLS:      r.tls,
		ECS:      p.ecs,
		// Wire stays nil: the query was built from URL parameters and
		// never had a wire form to verify or sign.
		Received: r.received,
		MaxSize:  dns.MaxMsgSize,
	}
	req.TraceID, req.TraceParent, req.TraceStage = r.trace()
	m, err := l.call(req)
	w.traceID, w.traceParent = req.Trace(), req.TraceParent
	comment := jsonComment(req, m, err)
	reply, send := Finish(req, m, err, l.log)
	if !send {
		l.m.drop(reasonHandler)
		w.abort = true // as serveWire does
		return
	}
	buf := getBuf()
	defer putBuf(buf)
	wire, err := pack(reply, *buf, req.MaxSize)
	if err != nil {
		l.log.Error("bad reply from handler", "err", err, "question", question(req), "trace_id", req.Trace())
		reply, _ = Finish(req, nil, errInternal, l.log)
		wire, _ = pack(reply, *buf, req.MaxSize)
		comment = errInternal.Text
	}
	body, err := json.Marshal(renderJSON(reply, p.ecs, comment))
	if err != nil {
		l.log.Error("render json reply", "err", err, "question", question(req), "trace_id", req.Trace())
		w.failJSON(&dohError{http.StatusInternalServerError, "internal error"})
		return
	}
	l.m.response(reply.Rcode, reply.Truncated)
	w.status, w.kind, w.ctype, w.cache, w.body = http.StatusOK, dohRespJSON, p.ct, dohCacheControl(wire), body
}

// jsonReply is a reply in the JSON API format.
type jsonReply struct {
	Status     int
	TC         bool
	RD         bool
	RA         bool
	AD         bool
	CD         bool
	Question   []jsonQuestion
	Answer     []jsonRR `json:",omitempty"`
	Authority  []jsonRR `json:",omitempty"`
	Additional []jsonRR `json:",omitempty"`
	ECS        string   `json:"edns_client_subnet,omitempty"`
	Comment    string   `json:",omitempty"`
}

type jsonQuestion struct {
	Name string `json:"name"`
	Type uint16 `json:"type"`
}

type jsonRR struct {
	Name string `json:"name"`
	Type uint16 `json:"type"`
	TTL  uint32
	Data string `json:"data"`
}

// jsonComment is the Comment of the JSON reply to req, which the handler
// answered with m and err: why the answer is what it is, given whatever
// EDNS the query had (do=1 or not), as Google's and Cloudflare's JSON APIs
// give it. It is the Extended DNS Error of the outcome (Request.EDE: the
// error's, or the reason a stage recorded, such as "served stale (RFC
// 8767): upstream unreachable" or "answer from fallback zone: ..."), or
// its code's name when it has no text, followed by the EXTRA-TEXT of the
// EDE options in m not already said (an upstream's); empty when there is
// nothing to say.
func jsonComment(req *pipeline.Request, m *dns.Msg, err error) string {
	if m == nil && err == nil {
		err = errNoAnswer // as Finish answers it
	}
	var texts []string
	if code, text, ok := req.EDE(err); ok {
		if text == "" {
			text = dns.ExtendedErrorCodeToString[code]
		}
		texts = append(texts, text)
	}
	if err == nil {
		for _, rr := range m.Extra {
			opt, ok := rr.(*dns.OPT)
			if !ok {
				continue
			}
			for _, o := range opt.Option {
				e, ok := o.(*dns.EDNS0_EDE)
				if !ok || e.ExtraText == "" || slices.ContainsFunc(texts, func(s string) bool { return strings.Contains(s, e.ExtraText) }) {
					continue
				}
				texts = append(texts, e.ExtraText)
			}
		}
	}
	return strings.Join(texts, "; ")
}

// renderJSON converts the reply m to the JSON API format, with comment as
// its Comment (see jsonComment). A record's data is its RDATA in
// presentation format; OPT records are left out.
func renderJSON(m *dns.Msg, ecs netip.Prefix, comment string) jsonReply {
	j := jsonReply{
		Status: m.Rcode,
		TC:     m.Truncated,
		RD:     m.RecursionDesired,
		RA:     m.RecursionAvailable,
		AD:     m.AuthenticatedData,
		CD:     m.CheckingDisabled,
	}
	for _, q := range m.Question {
		j.Question = append(j.Question, jsonQuestion{q.Name, q.Qtype})
	}
	j.Answer = jsonRRs(m.Answer)
	j.Authority = jsonRRs(m.Ns)
	j.Additional = jsonRRs(m.Extra)
	if ecs.IsValid() {
		j.ECS = ecs.String()
	}
	j.Comment = comment
	return j
}

func jsonRRs(rrs []dns.RR) []jsonRR {
	var out []jsonRR
	for _, rr := range rrs {
		h := rr.Header()
		if h.Rrtype == dns.TypeOPT {
			continue
		}
		data := strings.TrimPrefix(rr.String(), h.String())
		out = append(out, jsonRR{Name: h.Name, Type: h.Rrtype, TTL: h.Ttl, Data: data})
	}
	return out
}
