package l2

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/internal/field"
)

func TestSpecValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := write("fleet.key", strings.Repeat("k", 32)+"\n")
	short := write("short.key", "secret-fleet-key")
	empty := write("empty", " \n")
	pw := write("redis.pw", "hunter2\n")
	ok := Spec{Redis: RedisSpec{Address: "127.0.0.1:6379"}, KeyFile: key}
	tests := []struct {
		name  string
		mod   func(s *Spec)
		paths []string // the field paths of the problems, in order
	}{
		{"off", func(s *Spec) { *s = Spec{} }, nil},
		{"minimal", func(*Spec) {}, nil},
		{"everything", func(s *Spec) {
			s.Redis.Username, s.Redis.PasswordFile, s.Budget, s.MinBudget, s.Timeout = "dnsedge", pw, 3*time.Millisecond, time.Millisecond, time.Second
			s.Namespace, s.WriteQueue, s.Breaker = "fleet-a", 10, BreakerSpec{Failures: 2, Cooldown: time.Second, MaxCooldown: time.Minute}
		}, nil},
		{"settings without an address", func(s *Spec) { s.Redis.Address = "" }, []string{"redis.address"}},
		{"no fleet key", func(s *Spec) { s.KeyFile = "" }, []string{"key_file"}},
		{"two fleet keys", func(s *Spec) { s.KeyEnv = "X" }, []string{"key_file"}},
		{"missing key file", func(s *Spec) { s.KeyFile = filepath.Join(dir, "nope") }, []string{"key_file"}},
		{"empty key file", func(s *Spec) { s.KeyFile = empty }, []string{"key_file"}},
		{"short key", func(s *Spec) { s.KeyFile = short }, []string{"key_file"}},
		{"unset key variable", func(s *Spec) { s.KeyFile, s.KeyEnv = "", "DNSEDGE_TEST_UNSET_VARIABLE" }, []string{"key_env"}},
		{"missing password file", func(s *Spec) { s.Redis.PasswordFile = filepath.Join(dir, "nope") }, []string{"redis.password_file"}},
		{"negative budget", func(s *Spec) { s.Budget = -1 }, []string{"budget"}},
		{"floor above budget", func(s *Spec) { s.Budget, s.MinBudget = time.Millisecond, 2*time.Millisecond }, []string{"min_budget"}},
		{"timeout below budget", func(s *Spec) { s.Timeout = time.Millisecond }, []string{"timeout"}},
		{"cooldown above its cap", func(s *Spec) { s.Breaker.Cooldown, s.Breaker.MaxCooldown = time.Minute, time.Second }, []string{"breaker.cooldown"}},
		{"negative queue", func(s *Spec) { s.WriteQueue = -1 }, []string{"write_queue"}},
		{"namespace with a colon", func(s *Spec) { s.Namespace = "a:b" }, []string{"namespace"}},
		{"missing CA file", func(s *Spec) { s.Redis.TLS = &TLSSpec{CAFile: filepath.Join(dir, "nope")} }, []string{"redis.tls.ca_file"}},
		{"CA file without PEM", func(s *Spec) { s.Redis.TLS = &TLSSpec{CAFile: pw} }, []string{"redis.tls.ca_file"}},
		{"certificate without key", func(s *Spec) { s.Redis.TLS = &TLSSpec{CertFile: pw} }, []string{"redis.tls.cert_file"}},
		{"several problems", func(s *Spec) { s.KeyFile, s.WriteQueue = "", -1 }, []string{"key_file", "write_queue"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := ok
			tt.mod(&s)
			var got []string
			for _, err := range field.Flatten(s.Validate()) {
				fe, isField := err.(*field.Error)
				if !isField {
					t.Fatalf("problem without a field path: %v", err)
				}
				got = append(got, fe.Path)
				if strings.Contains(err.Error(), "kkkk") || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "secret-fleet-key") {
					t.Errorf("a secret in an error: %v", err)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.paths, ",") {
				t.Errorf("problems at %v, want %v (%v)", got, tt.paths, s.Validate())
			}
		})
	}
}

func TestSpecConfig(t *testing.T) {
	t.Setenv("DNSEDGE_TEST_FLEET_KEY", strings.Repeat("f", 40))
	c, err := Spec{Redis: RedisSpec{Address: "[::1]:6380", TLS: &TLSSpec{}}, KeyEnv: "DNSEDGE_TEST_FLEET_KEY"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Key) != strings.Repeat("f", 40) || c.Budget != DefaultBudget || c.MinBudget != DefaultMinBudget ||
		c.Timeout != DefaultTimeout || c.Namespace != DefaultNamespace || c.WriteQueue != DefaultWriteQueue ||
		c.BreakerFailures != DefaultFailures || c.TLS == nil || c.TLS.ServerName != "::1" {
		t.Errorf("Config = %+v", c)
	}
}
