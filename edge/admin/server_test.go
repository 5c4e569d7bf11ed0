package admin_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge/admin"
	"github.com/dnsedge/dnsedge/internal/leaktest"
)

// TestServerClose: a listener serves until Close, Close ends it and its
// connections, and nothing of it keeps running.
func TestServerClose(t *testing.T) {
	before := leaktest.Snapshot()
	srv, err := admin.Listen("127.0.0.1:0", nil, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + srv.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("got %q", b)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv.Close() // twice is fine
	c.CloseIdleConnections()
	if _, err := c.Get("http://" + srv.Addr().String() + "/"); err == nil {
		t.Fatal("served after Close")
	}
	again, err := admin.Listen(srv.Addr().String(), nil, http.NotFoundHandler(), nil)
	if err != nil {
		t.Fatalf("address not released by Close: %v", err)
	}
	again.Close()
	leaktest.Check(t, before, 5*time.Second)
}
