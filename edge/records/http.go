package records

import (
	_ "embed"

	"errors"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/admin"
	"github.com/dnsedge/dnsedge/edge/internal/dnsname"
)

// OpenAPI is the OpenAPI 3 document of the records API, served at
// /api/v1/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// ZoneView is a zone as GET and PATCH return it.
type ZoneView struct {
	Name   string  `json:"name"`
	Serial uint32  `json:"serial"`
	RRsets []RRset `json:"rrsets"`
}

// errorBody is the body of every error response.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// Handler serves the records API of m to the callers auth admits; its
// routes are added to a mux by Register. It is immutable and safe for
// concurrent use.
type Handler struct {
	m       *Manager
	auth    *admin.Auth
	cfg     Config
	origins []string
}

// NewHandler returns the API of the zones of origins (canonical FQDNs,
// kept by m: see Manager.Ensure), with the limits of cfg (defaults filled
// in).
func NewHandler(m *Manager, origins []string, auth *admin.Auth, cfg Config) *Handler {
	return &Handler{m: m, auth: auth, cfg: cfg, origins: slices.Sorted(slices.Values(origins))}
}

// Register adds the routes of the API to mux: GET and PATCH
// /api/v1/zones/{zone}, and GET /api/v1/openapi.json (no credentials
// needed: it is the public description of the API).
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(OpenAPI)
	})
	mux.HandleFunc("GET /api/v1/zones/{zone}", h.get)
	mux.HandleFunc("PATCH /api/v1/zones/{zone}", h.patch)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := compactJSON(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func writeError(w http.ResponseWriter, status int, fieldPath, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="dnsedge"`)
	}
	writeJSON(w, status, errorBody{Error: msg, Field: fieldPath})
}

// zoneFor authenticates r and checks that its caller may reach the zone
// of the path (write for a change). It writes the error response and
// returns false when not.
func (h *Handler) zoneFor(w http.ResponseWriter, r *http.Request, write bool) (*admin.Principal, string, bool) {
	p, err := h.auth.Authenticate(r)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "Authorization", err.Error())
		return nil, "", false
	}
	raw := r.PathValue("zone")
	if _, ok := dns.IsDomainName(raw); !ok || raw == "" {
		writeError(w, http.StatusBadRequest, "zone", strconv.Quote(raw)+" is not a domain name")
		return nil, "", false
	}
	origin := dnsname.Lower(dns.Fqdn(raw))
	if !p.Allows(origin, write) {
		what := "read"
		if write {
			what = "change"
		}
		writeError(w, http.StatusForbidden, "zone", "grant "+p.ID+" may not "+what+" zone "+origin)
		return nil, "", false
	}
	if _, err := h.m.Get(origin); err != nil || !slices.Contains(h.origins, origin) {
		writeError(w, http.StatusNotFound, "zone", "zone "+origin+" is not kept by the records API (api: true in zones)")
		return nil, "", false
	}
	return p, origin, true
}

func etag(serial uint32) string { return `"` + strconv.FormatUint(uint64(serial), 10) + `"` }

func view(s Snapshot) ZoneView {
	return ZoneView{Name: s.Origin, Serial: s.Serial, RRsets: s.RRsets}
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	_, origin, ok := h.zoneFor(w, r, false)
	if !ok {
		return
	}
	s, err := h.m.Get(origin)
	if err != nil {
		writeError(w, http.StatusNotFound, "zone", err.Error())
		return
	}
	w.Header().Set("ETag", etag(s.Serial))
	writeJSON(w, http.StatusOK, view(s))
}

func (h *Handler) patch(w http.ResponseWriter, r *http.Request) {
	p, origin, ok := h.zoneFor(w, r, true)
	if !ok {
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type", "the body must be application/json")
		return
	}
	match, ierr := parseIfMatch(r.Header.Values("If-Match"))
	if ierr != nil {
		writeError(w, ierr.Status, ierr.Field, ierr.Msg)
		return
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "body", "body is larger than "+strconv.FormatInt(h.cfg.MaxBodyBytes, 10)+" bytes")
		return
	}
	patch, ierr := DecodePatch(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if ierr != nil {
		writeError(w, ierr.Status, ierr.Field, ierr.Msg)
		return
	}
	s, err := h.m.Apply(p.ID, origin, match, patch, h.cfg.MaxTTL)
	h.result(w, s, err)
}

// result writes the outcome of a change.
func (h *Handler) result(w http.ResponseWriter, s Snapshot, err error) {
	var ie *InputError
	switch {
	case err == nil:
		w.Header().Set("ETag", etag(s.Serial))
		writeJSON(w, http.StatusOK, view(s))
	case errors.As(err, &ie):
		writeError(w, ie.Status, ie.Field, ie.Msg)
	case errors.Is(err, ErrStale):
		writeError(w, http.StatusPreconditionFailed, "If-Match", err.Error())
	case errors.Is(err, ErrNoZone):
		writeError(w, http.StatusNotFound, "zone", err.Error())
	case errors.Is(err, ErrUnavailable):
		writeError(w, http.StatusServiceUnavailable, "", "change not committed: "+err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "", "change not committed: "+err.Error())
	}
}

// parseIfMatch returns the serial test of If-Match headers (RFC 9110
// §13.1.1, strong comparison): nil when there is none, any serial for
// "*", else one of the listed entity tags.
func parseIfMatch(values []string) (func(uint32) bool, *InputError) {
	if len(values) == 0 {
		return nil, nil
	}
	var tags []string
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				tags = append(tags, t)
			}
		}
	}
	if len(tags) == 1 && tags[0] == "*" {
		return func(uint32) bool { return true }, nil
	}
	var serials []uint32
	for _, t := range tags {
		if strings.HasPrefix(t, "W/") {
			continue // weak tags never match strongly
		}
		n, err := strconv.ParseUint(strings.Trim(t, `"`), 10, 32)
		if err != nil || len(t) < 3 || t[0] != '"' || t[len(t)-1] != '"' {
			return nil, badInput("If-Match", "%s is not an entity tag of this API (\"<serial>\")", t)
		}
		serials = append(serials, uint32(n))
	}
	return func(s uint32) bool {
		for _, x := range serials {
			if x == s {
				return true
			}
		}
		return false
	}, nil
}
