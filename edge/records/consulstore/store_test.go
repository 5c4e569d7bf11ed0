package consulstore_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/dnsedge/dnsedge/edge/records"
	"github.com/dnsedge/dnsedge/edge/records/consulstore"
	"github.com/dnsedge/dnsedge/internal/consultest"
	"github.com/dnsedge/dnsedge/internal/leaktest"
)

const prefix = "test/records/"

func client(t *testing.T, a *consultest.Agent) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr, Scheme: "http", Token: "-"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// manager returns a Manager over a store of the agent's prefix keeping
// dyn.test., following the prefix.
func manager(t *testing.T, c *api.Client) (*records.Manager, *consulstore.Store) {
	t.Helper()
	st := consulstore.New(c, prefix, consulstore.Options{Timeout: 2 * time.Second})
	m := records.New(records.Deps{Store: st})
	if err := m.Ensure([]string{"dyn.test."}); err != nil {
		t.Fatal(err)
	}
	st.Follow(m, 5*time.Second)
	return m, st
}

func patchA(ip string) *records.Patch {
	ttl := int64(60)
	return &records.Patch{RRsets: []records.Change{{Name: "www.dyn.test.", Type: "A", TTL: &ttl, Changetype: records.ChangeReplace, Records: []records.Record{{Content: ip}}}}}
}

func waitSerial(t *testing.T, m *records.Manager, serial uint32) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		s, _ := m.Get("dyn.test.")
		if s.Serial == serial {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serial %d after 2 s, want %d", s.Serial, serial)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStore: two Managers over one prefix. A change through one reaches
// the other; a change from a version another instance has moved past is
// ErrStale and changes nothing; a key deleted behind the store's back is
// created again by the next change (after one ErrStale); with the agent
// stopped, changes are ErrUnavailable and the zones stay; closing leaves
// no goroutine.
func TestStore(t *testing.T) {
	before := leaktest.Snapshot()
	a := consultest.Start(t)
	c := client(t, a)
	m1, _ := manager(t, c)
	m2, _ := manager(t, c)

	if _, err := m1.Apply("ci", "dyn.test.", nil, patchA("10.0.0.1"), 3600); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, m2, 2)
	p, _, err := c.KV().Get(prefix+"dyn.test", nil)
	if err != nil || p == nil || !strings.Contains(string(p.Value), `"content":"10.0.0.1"`) {
		t.Fatalf("key %sdyn.test: %v %v", prefix, p, err)
	}

	// m2 changes the zone; m1, held at serial 2 by a match on it, loses.
	if _, err := m2.Apply("ci", "dyn.test.", nil, patchA("10.0.0.2"), 3600); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, m1, 3)
	if _, err := m1.Apply("ci", "dyn.test.", func(s uint32) bool { return s == 2 }, patchA("10.0.0.3"), 3600); !errors.Is(err, records.ErrStale) {
		t.Fatalf("change from serial 2: %v, want ErrStale", err)
	}

	// The key deleted: the next change is refused once, then made.
	if _, err := c.KV().Delete(prefix+"dyn.test", nil); err != nil {
		t.Fatal(err)
	}
	var applied bool
	for range 3 {
		if _, err := m1.Apply("ci", "dyn.test.", nil, patchA("10.0.0.4"), 3600); err == nil {
			applied = true
			break
		} else if !errors.Is(err, records.ErrStale) {
			t.Fatalf("change after the key was deleted: %v", err)
		}
	}
	if !applied {
		t.Fatal("no change made after the key was deleted")
	}
	waitSerial(t, m2, 4)

	a.Stop()
	if _, err := m2.Apply("ci", "dyn.test.", nil, patchA("10.0.0.5"), 3600); !errors.Is(err, records.ErrUnavailable) {
		t.Fatalf("change with the agent stopped: %v, want ErrUnavailable", err)
	}
	for i, m := range []*records.Manager{m1, m2} {
		if s, _ := m.Get("dyn.test."); s.Serial != 4 || s.RRsets[1].Records[0].Content != "10.0.0.4" {
			t.Errorf("manager %d with the agent stopped: %+v", i+1, s)
		}
	}
	m1.Close()
	m2.Close()
	leaktest.Check(t, before, 5*time.Second, "net/http.(*persistConn)", "os/exec", "internal/poll")
}
