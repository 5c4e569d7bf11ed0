package consul

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestPrefixWatch: an agent whose index churns (and once goes backwards)
// while the keys stay hands on the keys once; a write to a key (its
// ModifyIndex moves) hands them on again; the churn costs requests at
// the token bucket's rate, not a busy loop; a backward index is followed
// by a request that does not block.
func TestPrefixWatch(t *testing.T) {
	var (
		mu       sync.Mutex
		modify   uint64 = 5
		index    uint64 = 10
		requests atomic.Int64
		sawZero  atomic.Int64
		wentBack bool
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		if r.URL.Path != "/v1/kv/p/" || !r.URL.Query().Has("recurse") {
			http.NotFound(w, r)
			return
		}
		if wi := r.URL.Query().Get("index"); wi == "" || wi == "0" {
			if n > 1 {
				sawZero.Add(1)
			}
		}
		mu.Lock()
		index++
		if n == 4 && !wentBack {
			index, wentBack = 3, true // a restarted agent
		}
		idx, mod := index, modify
		mu.Unlock()
		w.Header().Set("X-Consul-Index", strconv.FormatUint(idx, 10))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `[{"Key":"p/zone","Value":%q,"ModifyIndex":%d,"CreateIndex":1}]`, base64.StdEncoding.EncodeToString([]byte("v")), mod)
	}))
	defer srv.Close()
	client, err := api.NewClient(&api.Config{Address: srv.Listener.Addr().String(), Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	got := make(chan []KVPair, 4)
	pw := WatchPrefix(client, "p/", func(p []KVPair) { calls.Add(1); got <- p }, nil)
	defer pw.Close()
	if !pw.WaitReady(t.Context(), 5*time.Second) {
		t.Fatal("no first read")
	}
	if p := <-got; len(p) != 1 || p[0].Key != "p/zone" || string(p[0].Value) != "v" || p[0].ModifyIndex != 5 {
		t.Fatalf("first read: %+v", p)
	}
	start := time.Now()
	for requests.Load() < 8 && time.Since(start) < 5*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	if c := calls.Load(); c != 1 {
		t.Fatalf("%d calls after churn with the same keys, want 1", c)
	}
	if sawZero.Load() != 1 {
		t.Errorf("%d requests with index 0 after the first, want 1 (after the index went back)", sawZero.Load())
	}
	mu.Lock()
	modify = index + 1
	mu.Unlock()
	select {
	case p := <-got:
		if p[0].ModifyIndex <= 5 {
			t.Fatalf("second call: %+v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write to the key was not handed on")
	}
	pw.Close()
	elapsed := time.Since(start)
	if n, max := requests.Load(), int64(2+float64(watchRate)*elapsed.Seconds()+4); n > max {
		t.Errorf("%d requests in %s, want at most %d (the token bucket)", n, elapsed, max)
	}
}
