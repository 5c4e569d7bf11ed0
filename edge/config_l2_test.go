package edge

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// TestREADMEL2Config loads the commented-out cache.l2 block of README.md's
// complete example, uncommented, with its files made in a temporary
// directory, so that the documented section cannot drift from what the
// loader accepts.
func TestREADMEL2Config(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "  # l2:") || len(block) > 0 && strings.HasPrefix(line, "  #   ") {
			block = append(block, "  "+strings.TrimPrefix(line, "  # "))
			continue
		}
		if len(block) > 0 {
			break
		}
	}
	if len(block) < 10 {
		t.Fatalf("no cache.l2 block in README.md's example: %q", block)
	}
	dir := t.TempDir()
	write := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := transporttest.NewCA(t)
	leafKey, err := x509.MarshalPKCS8PrivateKey(ca.Leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"/etc/dnsedge/fleet.key", write("fleet.key", []byte(strings.Repeat("k", 32))),
		"/etc/dnsedge/redis.password", write("redis.password", []byte("pw")),
		"/etc/dnsedge/redis-ca.pem", ca.WritePEM(t),
		"/etc/dnsedge/redis-client.pem", write("client.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Leaf.Certificate[0]})),
		"/etc/dnsedge/redis-client.key", write("client.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: leafKey})),
	).Replace("listeners: [{proto: udp, address: \"127.0.0.1:0\"}]\ncache:\n" + strings.Join(block, "\n") + "\n")
	resolv := filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 192.0.2.53\n"), 0o644)
	cfg, err := parse("README.md", []byte(text), resolv)
	if err != nil {
		t.Fatalf("the README's cache.l2 block does not load:\n%v\n%s", err, text)
	}
	l2 := cfg.Cache.L2
	if !l2.On() || l2.Redis.Username != "dnsedge" || l2.Redis.TLS == nil || l2.Budget != 2*time.Millisecond ||
		l2.MinBudget != 250*time.Microsecond || l2.Breaker.Failures != 5 {
		t.Errorf("the README's cache.l2 block lost parts: %+v", l2)
	}
	if _, err := l2.Config(); err != nil {
		t.Errorf("the README's cache.l2 block does not build: %v", err)
	}
}
