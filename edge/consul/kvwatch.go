package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/internal/promreg"
	"github.com/dnsedge/dnsedge/internal/yamlcheck"
	"github.com/dnsedge/dnsedge/policy"
)

// kvState is what the policy watcher reads from the prefix: the active
// key and the documents of the version it names. Comparable, so that an
// index moved by another key under the prefix changes nothing.
type kvState struct {
	active         string
	hasActive      bool
	route, weight  string
	hasRoute, hasW bool
}

// PolicyVersion is a version in force: its name and compiled policy.
type PolicyVersion struct {
	Name   string
	Policy *policy.Policy
}

// PolicyStatus is what the watcher last did, for metrics and the status
// endpoint.
type PolicyStatus struct {
	// InForce is the version in force; empty for none.
	InForce string `json:"in_force"`
	// Active is the version the active key names.
	Active string `json:"active"`
	// Error is why Active is not in force (key, line, field and
	// problem); empty when it is.
	Error string `json:"error,omitempty"`
	// Key is the key the error is about.
	Key string `json:"key,omitempty"`
	// At is when the watcher last read a change.
	At time.Time `json:"at"`
}

// PolicyWatcher keeps the policy in force in step with the prefix: a
// blocking query on the prefix, and on every change of the active key or
// the active version's keys, the version is read whole, validated with
// the policy file's validator, and swapped in atomically. An invalid
// version changes nothing: its error goes to the log, the metric
// dnsedge_consul_policy_errors_total and Status. Safe for concurrent use.
type PolicyWatcher struct {
	prefix string
	log    *slog.Logger
	// groups are the upstream groups the configuration declares: a
	// version that routes elsewhere is invalid.
	groups map[string]bool
	w      *watch[kvState]

	cur    atomic.Pointer[PolicyVersion]
	status atomic.Pointer[PolicyStatus]
	errs   atomic.Uint64
	swaps  atomic.Uint64
	// changed is signalled (without blocking) after each version read.
	changed chan struct{}
}

// NewPolicyWatcher starts watching cfg's policy prefix with client, and
// waits up to cfg.FirstWait for the version in force at start. groups
// are the groups a version may route to. Close stops it.
func NewPolicyWatcher(cfg Config, client *api.Client, groups []string, log *slog.Logger, clock clockwork.Clock) *PolicyWatcher {
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	pw := &PolicyWatcher{prefix: cfg.Policy.Prefix, log: log, groups: make(map[string]bool), changed: make(chan struct{}, 1)}
	for _, g := range groups {
		pw.groups[g] = true
	}
	pw.status.Store(&PolicyStatus{})
	pw.w = newWatch(pw.fetch(client), func(a, b kvState) bool { return a == b }, clock)
	pw.w.onSwap = pw.apply
	pw.w.start()
	if !pw.w.waitReady(context.Background(), cfg.FirstWait) {
		log.Warn("no policy from consul yet; running without one until it answers", "prefix", pw.prefix)
	}
	return pw
}

// Close stops the watch.
func (pw *PolicyWatcher) Close() error {
	pw.w.stop()
	return nil
}

// Current returns the version in force; nil for none.
func (pw *PolicyWatcher) Current() *PolicyVersion { return pw.cur.Load() }

// Status returns what the watcher last did.
func (pw *PolicyWatcher) Status() PolicyStatus { return *pw.status.Load() }

// Changed is signalled after each change read from the prefix was
// handled (applied or refused); one pending signal at most.
func (pw *PolicyWatcher) Changed() <-chan struct{} { return pw.changed }

func (pw *PolicyWatcher) fetch(client *api.Client) fetchFunc[kvState] {
	return func(ctx context.Context, index uint64) (kvState, uint64, error) {
		q := &api.QueryOptions{WaitIndex: index, WaitTime: BlockWait}
		pairs, meta, err := client.KV().List(pw.prefix, q.WithContext(ctx))
		if err != nil {
			return kvState{}, 0, err
		}
		var st kvState
		byKey := make(map[string][]byte, len(pairs))
		for _, p := range pairs {
			byKey[p.Key] = p.Value
		}
		if v, ok := byKey[pw.prefix+ActiveKey]; ok {
			st.active, st.hasActive = strings.TrimSpace(string(v)), true
			base := pw.prefix + st.active + "/"
			var r, w []byte
			r, st.hasRoute = byKey[base+RouteKey]
			w, st.hasW = byKey[base+WeightKey]
			st.route, st.weight = string(r), string(w)
		}
		return st, meta.LastIndex, nil
	}
}

// apply reads the version st names and puts it in force when valid.
func (pw *PolicyWatcher) apply(st kvState) {
	defer func() {
		select {
		case pw.changed <- struct{}{}:
		default:
		}
	}()
	now := time.Now()
	cur := pw.cur.Load()
	inForce := ""
	if cur != nil {
		inForce = cur.Name
	}
	if !st.hasActive {
		pw.status.Store(&PolicyStatus{InForce: inForce, At: now})
		return
	}
	p, key, err := pw.load(st)
	if err != nil {
		pw.errs.Add(1)
		pw.status.Store(&PolicyStatus{InForce: inForce, Active: st.active, Error: err.Error(), Key: key, At: now})
		pw.log.Error("policy version from consul refused; the version in force stays", "active", st.active, "in_force", inForce, "key", key, "error", err.Error())
		return
	}
	pw.cur.Store(&PolicyVersion{Name: st.active, Policy: p})
	pw.swaps.Add(1)
	pw.status.Store(&PolicyStatus{InForce: st.active, Active: st.active, At: now})
	pw.log.Info("policy version from consul in force", "version", st.active, "previous", inForce, "rules", p.Len())
}

// load compiles the version st names; key is the key at fault on error.
func (pw *PolicyWatcher) load(st kvState) (*policy.Policy, string, error) {
	activeKey := pw.prefix + ActiveKey
	if err := CheckVersion(st.active); err != nil {
		return nil, activeKey, fmt.Errorf("%s: %w", activeKey, err)
	}
	routeKey := pw.prefix + st.active + "/" + RouteKey
	weightKey := pw.prefix + st.active + "/" + WeightKey
	if !st.hasRoute {
		return nil, routeKey, fmt.Errorf("%s names version %q, which has no key %s", activeKey, st.active, routeKey)
	}
	var weight []byte
	if st.hasW {
		weight = []byte(st.weight)
	}
	p, err := LoadVersion(st.active, routeKey, []byte(st.route), weightKey, weight)
	if err != nil {
		return nil, faultKey(err, routeKey), err
	}
	var missing []string
	for _, g := range p.Groups() {
		if !pw.groups[g] {
			missing = append(missing, g)
		}
	}
	if len(missing) > 0 {
		return nil, routeKey, fmt.Errorf("%s: rules route to groups %s, which the configuration does not declare", routeKey, strings.Join(missing, ", "))
	}
	return p, "", nil
}

// faultKey returns the document of the first problem of err.
func faultKey(err error, def string) string {
	var ye *yamlcheck.Error
	if errors.As(err, &ye) && len(ye.Problems) > 0 && ye.Problems[0].File != "" {
		return ye.Problems[0].File
	}
	return def
}

var (
	descPolicyInfo = prometheus.NewDesc("dnsedge_policy_info",
		"The policy in force: 1, labelled with its version.", []string{"version"}, nil)
	descPolicyRules = prometheus.NewDesc("dnsedge_policy_rules",
		"Rules of the policy in force.", nil, nil)
	descKVStatus = prometheus.NewDesc("dnsedge_consul_policy_status",
		"The version the active key names: 1, labelled with it, whether it is in force (ok) or refused (invalid), and the key at fault.",
		[]string{"active", "state", "key"}, nil)
	descKVErrors = prometheus.NewDesc("dnsedge_consul_policy_errors_total",
		"Policy versions read from Consul KV and refused.", nil, nil)
	descKVSwaps = prometheus.NewDesc("dnsedge_consul_policy_swaps_total",
		"Policy versions read from Consul KV and put in force.", nil, nil)
)

// Register registers the watcher's metrics with reg (nil: none),
// replacing those of a previous generation: dnsedge_policy_info and
// dnsedge_policy_rules follow the version in force.
func (pw *PolicyWatcher) Register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	if err := promreg.Replace(reg, kvCollector{pw}); err != nil {
		return fmt.Errorf("consul: register policy metrics: %w", err)
	}
	return nil
}

type kvCollector struct{ pw *PolicyWatcher }

func (c kvCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPolicyInfo, descPolicyRules, descKVStatus, descKVErrors, descKVSwaps} {
		ch <- d
	}
}

func (c kvCollector) Collect(ch chan<- prometheus.Metric) {
	pw := c.pw
	if v := pw.cur.Load(); v != nil {
		ch <- prometheus.MustNewConstMetric(descPolicyInfo, prometheus.GaugeValue, 1, v.Name)
		ch <- prometheus.MustNewConstMetric(descPolicyRules, prometheus.GaugeValue, float64(v.Policy.Len()))
	}
	if st := pw.status.Load(); st.Active != "" {
		state := "ok"
		if st.Error != "" {
			state = "invalid"
		}
		ch <- prometheus.MustNewConstMetric(descKVStatus, prometheus.GaugeValue, 1, st.Active, state, st.Key)
	}
	ch <- prometheus.MustNewConstMetric(descKVErrors, prometheus.CounterValue, float64(pw.errs.Load()))
	ch <- prometheus.MustNewConstMetric(descKVSwaps, prometheus.CounterValue, float64(pw.swaps.Load()))
}
