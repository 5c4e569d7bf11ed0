package edge

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"time"

	"github.com/dnsedge/dnsedge/transport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// httpEndpoint serves /metrics, /healthz and /readyz, and with
// metrics.pprof Go's profiler, for whichever generation is in force.
type httpEndpoint struct {
	srv  *http.Server
	addr net.Addr
	ln   net.Listener // for handing the socket over
	spec string       // the address as configured
}

// startHTTP binds the HTTP endpoint on addr and starts serving.
func (s *Server) startHTTP(addr string) (*httpEndpoint, error) {
	ln, err := s.inherit.TakeListener("tcp", addr)
	if err == nil && ln == nil {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen metrics %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	gather := prometheus.Gatherers{s.prom, prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		return s.gen.Load().metrics.Gather()
	})}
	mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /status/policy", s.policyStatus)
	s.routeStatus(mux)
	for path, h := range map[string]http.HandlerFunc{
		"/debug/pprof/": pprof.Index, "/debug/pprof/profile": pprof.Profile,
		"/debug/pprof/symbol": pprof.Symbol, "/debug/pprof/trace": pprof.Trace,
	} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if !s.gen.Load().cfg.Metrics.Pprof {
				http.NotFound(w, r)
				return
			}
			h(w, r)
		})
	}
	e := &httpEndpoint{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, addr: ln.Addr(), ln: ln, spec: addr}
	go e.srv.Serve(ln)
	return e, nil
}

// close stops the endpoint, giving requests in flight two seconds.
func (e *httpEndpoint) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return e.srv.Shutdown(ctx)
}

// readyz answers 200 once the configuration is loaded and the listeners
// serve, 503 before. Upstream health is not part of it: in a pod, an
// unready sidecar takes the application out of its Services too, while
// dnsedge can still answer from its cache, zones and fallback zone when
// every upstream is down. That belongs on /healthz?verbose, in metrics and
// in the log.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.started.Load() {
		http.Error(w, "not started", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// healthz answers 200 while the process lives. With ?verbose it lists
// every group's paths in race order with their health, and how many of
// them a query may use now.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintln(w, "ok")
	if !r.URL.Query().Has("verbose") {
		return
	}
	gen := s.gen.Load()
	names := make([]string, 0, len(gen.groups))
	for name := range gen.groups {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		g := gen.groups[name]
		paths := g.Paths()
		usable := 0
		for _, p := range paths {
			if p.Health.Snapshot().State != transport.Open {
				usable++
			}
		}
		fmt.Fprintf(w, "group %s (%s): %d of %d paths usable\n", name, g.Strategy.Name(), usable, len(paths))
		for _, p := range paths {
			for _, q := range []*transport.Path{p, p.Stream} {
				if q == nil {
					continue
				}
				h := q.Health.Snapshot()
				demoted := ""
				if h.Demoted {
					demoted = " demoted"
				}
				fmt.Fprintf(w, "  %s %s: breaker %s%s, srtt %s, timeout %s, loss %.2f, consecutive failures %d\n",
					q.Family, q.ID, h.State, demoted, h.SRTT.Round(time.Microsecond), h.RTO.Round(time.Microsecond), h.Loss, h.Consecutive)
			}
		}
	}
}

// pathCollector exports every current path's health at scrape time, so the
// query path pays nothing for these metrics.
type pathCollector struct{ s *Server }

var (
	pathLabels    = []string{"upstream", "proto", "family", "address"}
	descPathState = prometheus.NewDesc("dnsedge_path_breaker_state",
		"Circuit breaker state of a path: 0 closed, 1 open, 2 half-open.", pathLabels, nil)
	descPathSRTT = prometheus.NewDesc("dnsedge_path_srtt_seconds",
		"Smoothed round-trip time of a path.", pathLabels, nil)
	descPathRTO = prometheus.NewDesc("dnsedge_path_timeout_seconds",
		"Current per-attempt timeout of a path (SRTT + 4·RTTVAR, clamped).", pathLabels, nil)
	descPathFailures = prometheus.NewDesc("dnsedge_path_consecutive_failures",
		"Consecutive failures of a path.", pathLabels, nil)
	descPathOutcomes = prometheus.NewDesc("dnsedge_path_exchanges_total",
		"Exchanges on a path by outcome class (ok, rcode, canceled, timeout, network, truncated, malformed).",
		append(pathLabels[:4:4], "class"), nil)
	descPathTransitions = prometheus.NewDesc("dnsedge_path_breaker_transitions_total",
		"Breaker transitions of a path by the state entered.", append(pathLabels[:4:4], "to"), nil)
	descPathLoss = prometheus.NewDesc("dnsedge_path_loss_ratio",
		"Decaying failure rate of a path's exchanges, 0 to 1; above health.demote_loss the path is tried after the others.", pathLabels, nil)
	descPathHedges = prometheus.NewDesc("dnsedge_path_hedges_total",
		"Attempts started on a path because the attempt before it was slower than its hedge delay.", pathLabels, nil)
	descPathHedgesWon = prometheus.NewDesc("dnsedge_path_hedges_won_total",
		"Hedged attempts on a path whose answer the client got.", pathLabels, nil)
	descPathProbes = prometheus.NewDesc("dnsedge_path_probes_total",
		"Background probes sent on a path while it had no client traffic.", pathLabels, nil)
)

func (c *pathCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPathState, descPathSRTT, descPathRTO, descPathFailures, descPathOutcomes, descPathTransitions,
		descPathLoss, descPathHedges, descPathHedgesWon, descPathProbes} {
		ch <- d
	}
}

func (c *pathCollector) Collect(ch chan<- prometheus.Metric) {
	gen := c.s.gen.Load()
	if gen == nil {
		return
	}
	for _, p := range gen.paths() {
		h := p.Health.Snapshot()
		lv := []string{p.ID.Upstream, p.ID.Proto, p.Family.String(), p.ID.Addr.String()}
		ch <- prometheus.MustNewConstMetric(descPathState, prometheus.GaugeValue, float64(h.State), lv...)
		ch <- prometheus.MustNewConstMetric(descPathSRTT, prometheus.GaugeValue, h.SRTT.Seconds(), lv...)
		ch <- prometheus.MustNewConstMetric(descPathRTO, prometheus.GaugeValue, h.RTO.Seconds(), lv...)
		ch <- prometheus.MustNewConstMetric(descPathFailures, prometheus.GaugeValue, float64(h.Consecutive), lv...)
		ch <- prometheus.MustNewConstMetric(descPathLoss, prometheus.GaugeValue, h.Loss, lv...)
		ch <- prometheus.MustNewConstMetric(descPathHedges, prometheus.CounterValue, float64(h.Events[transport.EventHedge]), lv...)
		ch <- prometheus.MustNewConstMetric(descPathHedgesWon, prometheus.CounterValue, float64(h.Events[transport.EventHedgeWon]), lv...)
		ch <- prometheus.MustNewConstMetric(descPathProbes, prometheus.CounterValue, float64(h.Events[transport.EventProbe]), lv...)
		for _, cl := range transport.Classes() {
			ch <- prometheus.MustNewConstMetric(descPathOutcomes, prometheus.CounterValue, float64(h.Outcomes[cl]), append(lv, cl.String())...)
		}
		for st, n := range h.Transitions {
			ch <- prometheus.MustNewConstMetric(descPathTransitions, prometheus.CounterValue, float64(n), append(lv, transport.State(st).String())...)
		}
	}
}

// summary prints where dnsedge listens and which upstreams and paths it
// found, for the person who just started it.
func (s *Server) summary(gen *generation) {
	for _, spec := range gen.cfg.Listeners { // in the order of the file
		if ll, ok := s.listeners[gen.cfg.listenerKey(spec)]; ok {
			fmt.Fprintf(s.out, "listening on %s %s\n", spec.Proto, ll.l.Addr())
		}
	}
	for _, f := range s.caFiles() {
		fmt.Fprintf(s.out, "self-signed certificate authority: %s (trust it in clients, e.g. kdig +tls-ca=%s)\n", f, f)
		s.log.Info("self-signed certificate authority", "ca_file", f)
	}
	if s.httpEnd != nil {
		fmt.Fprintf(s.out, "metrics on http://%s/metrics\n", s.httpEnd.addr)
	}
	s.summaryAdmin(gen)
	if gen.cfg.SystemUpstreams {
		fmt.Fprintf(s.out, "upstreams taken from %s\n", ResolvConf)
	}
	for _, u := range gen.upstreams {
		fmt.Fprintf(s.out, "upstream %s\n", u)
		paths := u.Paths()
		if len(paths) == 0 {
			fmt.Fprintf(s.out, "  no paths yet (host name not resolved)\n")
		}
		for _, p := range paths {
			fmt.Fprintf(s.out, "  path %s %s %s\n", p.ID.Proto, p.Family, p.ID.Addr)
		}
	}
}
