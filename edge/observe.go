package edge

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/consul"
	"github.com/dnsedge/dnsedge/edge/listen"
	"github.com/dnsedge/dnsedge/transport"
)

// exchangeVec is dnsedge_path_exchange_duration_seconds: how long each
// exchange attempt on a path took, whatever its outcome.
func exchangeVec() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "dnsedge_path_exchange_duration_seconds",
		Help: "Duration of the exchange attempts queries made on a path, by upstream, protocol, family and address, whatever their outcome (a timeout counts its timeout).",
		// From loopback (tens of microseconds) to the longest timeout.
		Buckets: listen.LatencyBuckets,
	}, pathLabels)
}

// observeExchanges makes every path the server's health registry creates
// report its exchange times to vec. Each path's observer is bound once,
// when its health is made, so an exchange costs one Observe; a path the
// registry forgets (a reload dropped it, a host name now resolves to
// other addresses) takes its series with it.
func (s *Server) observeExchanges(vec *prometheus.HistogramVec) {
	s.health.ObserveExchanges(func(id transport.PathID) transport.Observer {
		return vec.WithLabelValues(exchangeLabels(id)...)
	}, func(id transport.PathID) {
		vec.DeleteLabelValues(exchangeLabels(id)...)
	})
}

// exchangeLabels are the path labels of id, as pathCollector's.
func exchangeLabels(id transport.PathID) []string {
	fam := transport.IPv4
	if id.Addr.Addr().Unmap().Is6() {
		fam = transport.IPv6
	}
	return []string{id.Upstream, id.Proto, fam.String(), id.Addr.String()}
}

// stamp is what a generation is known by once it is committed: its
// number (1 for the first, counting every committed reload), when it was
// committed, and a hash of its configuration.
type stamp struct {
	Seq    uint64    `json:"number"`
	Loaded time.Time `json:"loaded"`
	Hash   string    `json:"config_hash"`
}

// stampGen numbers gen and records when it was committed. Called under
// s.mu (or before the server is shared) right before gen goes in force.
func (s *Server) stampGen(gen *generation) {
	s.genSeq++
	gen.stamp = stamp{Seq: s.genSeq, Loaded: time.Now(), Hash: configHash(gen.cfg)}
}

// configHash returns the first 12 hex digits of the SHA-256 of cfg's
// effective configuration (as JSON), "" when it cannot be encoded.
func configHash(cfg *Config) string {
	b, err := json.Marshal(cfg)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// policyInForce returns where the policy of gen comes from (consul,
// config or none) and the version in force ("" for none), for /status.
func (s *Server) policyInForce(g *generation) (source, version string) {
	switch cfg := g.cfg; {
	case cfg.Consul.On() && cfg.Consul.Policy.Enabled:
		each(s.pool, func(key any, pw *consul.PolicyWatcher) {
			if g.parts.holds(key) {
				version = pw.Status().InForce
			}
		})
		return "consul", version
	case cfg.policy != nil:
		return "config", cfg.policy.Version()
	}
	return "none", ""
}

// infoCollector exports, at scrape time, what the running server is:
// its build and the generation in force. (The policy version in force is
// dnsedge_policy_info, exported by the generation's policy stage.)
type infoCollector struct {
	s       *Server
	version string
}

var (
	descBuildInfo = prometheus.NewDesc("dnsedge_build_info",
		"Always 1; the labels tell the version of dnsedge and the Go release it was built with.",
		[]string{"version", "goversion", "goos", "goarch"}, nil)
	descGenInfo = prometheus.NewDesc("dnsedge_generation_info",
		"Always 1; the labels tell the configuration generation in force: its number (1 at start, +1 per committed reload) and the hash of its configuration.",
		[]string{"generation", "config_hash"}, nil)
	descGenLoaded = prometheus.NewDesc("dnsedge_generation_loaded_timestamp_seconds",
		"When the configuration generation in force was committed, in seconds since the Unix epoch.", nil, nil)
)

func (c *infoCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuildInfo, descGenInfo, descGenLoaded} {
		ch <- d
	}
}

func (c *infoCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, c.version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	g := c.s.gen.Load()
	if g == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descGenInfo, prometheus.GaugeValue, 1, strconv.FormatUint(g.stamp.Seq, 10), g.stamp.Hash)
	ch <- prometheus.MustNewConstMetric(descGenLoaded, prometheus.GaugeValue, float64(g.stamp.Loaded.UnixNano())/1e9)
}
