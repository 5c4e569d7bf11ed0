package edge

import (
	"embed"
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// statusPage is the /status page: HTML, script and style compiled in,
// served from the metrics listener only, to the same origin only.
//
//go:embed statuspage
var statusPage embed.FS

// statusCSP is the Content-Security-Policy of every /status response:
// nothing but the page's own origin, no inline script or style, no
// framing, no form or base-URI tricks.
const statusCSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// statusState is what /status keeps between requests: the providers of
// the sections other parts of dnsedge fill, and the recent samples its
// rates are computed from.
type statusState struct {
	version string
	started time.Time // when the server was made: the counters' origin
	// canary, rollback and drills return the state of the canary, of
	// the rollback watch and of the drills, as JSON-able values, for the
	// sections of the same names; a nil func, or a nil result, shows as
	// "none". Set them once in New, before the server is shared, e.g.
	// s.status.canary = func() any { return s.CanaryStatus() }. They are
	// called once per /status.json request, concurrently.
	canary, rollback, drills func() any
	window                   window
}

// StatusBody is what /status.json answers and the page shows.
type StatusBody struct {
	Version    string           `json:"version"`
	Now        time.Time        `json:"now"`
	Generation stamp            `json:"generation"`
	Policy     statusPolicy     `json:"policy"`
	Window     float64          `json:"window_seconds"`
	Listeners  []statusListener `json:"listeners"`
	Cache      statusCache      `json:"cache"`
	Paths      []statusPath     `json:"paths"`
	Canary     any              `json:"canary"`
	Rollback   any              `json:"rollback"`
	Drills     any              `json:"drills"`
}

type statusPolicy struct {
	Source  string `json:"source"`
	Version string `json:"version"`
}

// statusListener is one listener kind: its addresses and, over the
// window, its query rate and latency quantiles (from
// dnsedge_query_duration_seconds; 0 without queries).
type statusListener struct {
	Kind      string   `json:"kind"`
	Addresses []string `json:"addresses"`
	QPS       float64  `json:"qps"`
	P50ms     float64  `json:"p50_ms"`
	P99ms     float64  `json:"p99_ms"`
}

// statusCache is the share of cacheable answers served from the cache
// (fresh or stale) over the window; Ratio is 0 without any.
type statusCache struct {
	Hits     uint64  `json:"hits"`
	Upstream uint64  `json:"upstream"`
	Ratio    float64 `json:"hit_ratio"`
}

type statusPath struct {
	Name        string  `json:"name"`
	Upstream    string  `json:"upstream"`
	Proto       string  `json:"proto"`
	Family      string  `json:"family"`
	Address     string  `json:"address"`
	Breaker     string  `json:"breaker"`
	SRTTms      float64 `json:"srtt_ms"`
	Loss        float64 `json:"loss"`
	Consecutive int     `json:"consecutive_failures"`
	LastError   string  `json:"last_error,omitempty"`
	LastErrorAt string  `json:"last_error_at,omitempty"`
}

// status answers /status.json.
func (s *Server) statusJSON(w http.ResponseWriter, _ *http.Request) {
	body := s.Status(time.Now())
	statusHeaders(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(body)
}

// Status returns what /status shows at now.
func (s *Server) Status(now time.Time) StatusBody {
	g := s.gen.Load()
	body := StatusBody{Version: s.status.version, Now: now.UTC(), Generation: g.stamp}
	body.Policy.Source, body.Policy.Version = s.policyInForce(g)

	cur := s.sample(now)
	base, span := s.status.window.add(cur, s.status.started)
	body.Window = span.Seconds()
	addrs := s.listenerAddrs()
	for _, kind := range listenerKinds {
		st := statusListener{Kind: kind, Addresses: addrs[kind]}
		d := cur.kinds[kind].minus(base.kinds[kind])
		if len(st.Addresses) == 0 && d.count == 0 {
			continue
		}
		if span > 0 {
			st.QPS = float64(d.count) / span.Seconds()
		}
		st.P50ms, st.P99ms = 1000*d.quantile(0.5), 1000*d.quantile(0.99)
		body.Listeners = append(body.Listeners, st)
	}
	body.Cache = cur.cache(base)

	for _, p := range g.paths() {
		h := p.Health.Snapshot()
		sp := statusPath{
			Name: p.Name(), Upstream: p.ID.Upstream, Proto: p.ID.Proto, Family: p.Family.String(), Address: p.ID.Addr.String(),
			Breaker: h.State.String(), SRTTms: float64(h.SRTT.Microseconds()) / 1000, Loss: h.Loss, Consecutive: h.Consecutive,
		}
		if e := p.Health.LastError(); e != nil {
			sp.LastError, sp.LastErrorAt = e.Err, e.At.UTC().Format(time.RFC3339)
		}
		body.Paths = append(body.Paths, sp)
	}
	body.Canary, body.Rollback, body.Drills = provided(s.status.canary), provided(s.status.rollback), provided(s.status.drills)
	return body
}

// provided returns what f returns, "none" for a nil f or a nil result.
func provided(f func() any) any {
	if f == nil {
		return "none"
	}
	if v := f(); v != nil {
		return v
	}
	return "none"
}

// listenerKinds are the listener kinds in the order the page shows them.
var listenerKinds = []string{"udp", "tcp", "dot", "doh", "doq"}

// listenerAddrs returns the bound addresses of the listeners in force by
// kind, sorted.
func (s *Server) listenerAddrs() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]string)
	for _, ll := range s.listeners {
		out[ll.spec.Proto] = append(out[ll.spec.Proto], ll.l.Addr().String())
	}
	for _, a := range out {
		slices.Sort(a)
	}
	return out
}

// statusHeaders sets the headers that keep /status to its own origin:
// the CSP, no framing, no sniffing, no referrer, and no cross-origin
// reads (no CORS header is ever sent).
func statusHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", statusCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// statusAsset serves one embedded file of the page with its type.
func statusAsset(name, ctype string) http.HandlerFunc {
	b, err := statusPage.ReadFile("statuspage/" + name)
	if err != nil {
		panic("edge: status page asset " + name + ": " + err.Error()) // compiled in: cannot happen
	}
	return func(w http.ResponseWriter, _ *http.Request) {
		statusHeaders(w)
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(b)
	}
}

// routeStatus adds /status, its assets and /status.json to mux.
func (s *Server) routeStatus(mux *http.ServeMux) {
	mux.HandleFunc("GET /status", statusAsset("index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /status/app.js", statusAsset("app.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /status/app.css", statusAsset("app.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET /status.json", s.statusJSON)
}
