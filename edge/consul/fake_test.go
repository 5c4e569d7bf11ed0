package consul

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// fakeConsul is an httptest Consul agent serving /v1/health/service/NAME
// from a table, with the X-Consul-Index the test's index function gives
// for the n-th request. It never blocks: every request is answered at
// once, the worst case of index churn.
type fakeConsul struct {
	mu       sync.Mutex
	services map[string][]*api.ServiceEntry
	index    func(n int) uint64
	fail     bool
	// indexes are the index parameters of the requests, "" for none.
	indexes []string
}

func startFake(t testing.TB, f *fakeConsul) *api.Client {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := api.NewClient(&api.Config{Address: srv.Listener.Addr().String(), Scheme: "http", Token: "-"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const prefix = "/v1/health/service/"
	if strings.HasPrefix(r.URL.Path, "/v1/catalog/node/") {
		// No nodes: Consul answers an unknown node with null.
		w.Header().Set("X-Consul-Index", "3")
		w.Write([]byte("null"))
		return
	}
	if len(r.URL.Path) <= len(prefix) || r.URL.Path[:len(prefix)] != prefix {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.indexes = append(f.indexes, r.URL.Query().Get("index"))
	n := len(f.indexes)
	fail := f.fail
	entries := f.services[r.URL.Path[len(prefix):]]
	idx := uint64(n)
	if f.index != nil {
		idx = f.index(n)
	}
	f.mu.Unlock()
	if fail {
		http.Error(w, "rpc error: No cluster leader", http.StatusInternalServerError)
		return
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(idx, 10))
	w.Header().Set("Content-Type", "application/json")
	if entries == nil {
		entries = []*api.ServiceEntry{}
	}
	json.NewEncoder(w).Encode(entries)
}

func (f *fakeConsul) setFail(v bool) {
	f.mu.Lock()
	f.fail = v
	f.mu.Unlock()
}

func (f *fakeConsul) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.indexes...)
}

// entry is one instance: node name and address, service address (may be
// empty), port, tags, status, and tagged IPv6 address of the node (may be
// empty).
func entry(node, nodeAddr, svcAddr string, port int, status string, tags ...string) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node:    &api.Node{Node: node, Address: nodeAddr, TaggedAddresses: map[string]string{}},
		Service: &api.AgentService{Service: "web", Address: svcAddr, Port: port, Tags: tags, Weights: api.AgentWeights{Passing: 10, Warning: 1}},
		Checks:  api.HealthChecks{{Node: node, CheckID: "c-" + node, Status: status}},
	}
}

func newTestBackend(t *testing.T, cfg Config, client *api.Client, clock clockwork.Clock) *Backend {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:8500" // not dialled: Client overrides it
	}
	b, err := New(cfg, Options{Client: client, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestFakeConsulIndexChurn: a Consul that answers with a backward index,
// then 0, then an index moving on every request, always with the same
// instances, makes the view swap once, sends one request with index 0 for
// the reset, never blocks on 0 otherwise, and sends no more requests than
// the token bucket allows.
func TestFakeConsulIndexChurn(t *testing.T) {
	f := &fakeConsul{
		services: map[string][]*api.ServiceEntry{"web": {entry("n1", "10.0.0.1", "", 80, api.HealthPassing)}},
		index: func(n int) uint64 {
			switch n {
			case 1:
				return 500
			case 2:
				return 20 // backwards
			case 3:
				return 0
			}
			return uint64(1000 + n) // churn
		},
	}
	fc := clockwork.NewFakeClock()
	b := newTestBackend(t, Config{}, startFake(t, f), fc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := b.answer(ctx, query("web.service.consul.", 1, 0), "web.service.consul.", 0)
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("first answer: %v %v", r.Msg, err)
	}
	// 20 s of fake time; sleepers: the watch and the reaper's ticker.
	for range 200 {
		if err := fc.BlockUntilContext(ctx, 2); err != nil {
			t.Fatalf("watch never slept: %v (requests %d)", err, len(f.sent()))
		}
		fc.Advance(100 * time.Millisecond)
	}
	sent := f.sent()
	if len(sent) < 5 || sent[0] != "" || sent[1] != "500" || sent[2] != "" || sent[3] != "1" {
		t.Fatalf("request indexes start %v, want [\"\" 500 \"\" 1 …]", sent[:min(len(sent), 5)])
	}
	for i, s := range sent[4:] {
		if s == "" || s == "0" {
			t.Fatalf("request %d blocked on index 0: %v", i+4, sent)
		}
	}
	// 20 s at 10 per second, the burst of 2, one in flight.
	if len(sent) > 203 {
		t.Errorf("%d requests in 20 s of churn, want at most 203", len(sent))
	}
	w := b.service("web", "")
	if sw := w.swaps.Load(); sw != 1 {
		t.Errorf("%d swaps for unchanged content, want 1", sw)
	}
}

func query(name string, qtype uint16, edns int) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	if edns > 0 {
		q.SetEdns0(uint16(edns), false)
	}
	return q
}
