package consultest

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAgentStopStart: the agent comes up with a leader on its own ports,
// goes away on Stop, and comes back on the same address on Start.
func TestAgentStopStart(t *testing.T) {
	a := Start(t)
	c := &http.Client{Timeout: 2 * time.Second}
	leader := func() (string, error) {
		resp, err := c.Get("http://" + a.HTTPAddr + "/v1/status/leader")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 256)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return b.String(), nil
	}
	if l, err := leader(); err != nil || !strings.Contains(l, "127.0.0.1:") {
		t.Fatalf("leader %q, %v", l, err)
	}
	a.Stop()
	if _, err := leader(); err == nil {
		t.Fatal("agent still answers after Stop")
	}
	a.Start()
	if l, err := leader(); err != nil || !strings.Contains(l, "127.0.0.1:") {
		t.Fatalf("after restart: leader %q, %v", l, err)
	}
}
