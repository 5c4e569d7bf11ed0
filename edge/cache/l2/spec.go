package l2

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dnsedge/dnsedge/internal/field"
)

// Spec is the cache.l2 section of the configuration file: the shared
// answer cache in Redis. It is off unless redis.address is set.
type Spec struct {
	Redis RedisSpec `yaml:"redis"`
	// Budget is the longest a miss waits for Redis before it asks the
	// upstream too; default 2ms. The budget in force is lower when Redis
	// has been faster: 3 × the p99 of its recent lookups, never below
	// MinBudget (default 250µs).
	Budget    time.Duration `yaml:"budget"`
	MinBudget time.Duration `yaml:"min_budget"`
	// Timeout bounds every Redis command, a lookup that lost the race to
	// the upstream included (its answer still fills the local cache);
	// default 50ms.
	Timeout time.Duration `yaml:"timeout"`
	// KeyFile names a file holding the fleet key, KeyEnv an environment
	// variable holding it; exactly one is required. Every value is
	// signed with it (HMAC-SHA256); at least 32 bytes, surrounding
	// white space ignored.
	KeyFile string `yaml:"key_file"`
	KeyEnv  string `yaml:"key_env"`
	// Namespace starts every key; default "dnsedge".
	Namespace string `yaml:"namespace"`
	// WriteQueue bounds the answers waiting to be written; default 1024.
	// Past it, writes are dropped and counted.
	WriteQueue int         `yaml:"write_queue"`
	Breaker    BreakerSpec `yaml:"breaker"`
}

// RedisSpec says how to reach Redis.
type RedisSpec struct {
	// Address is host:port; an empty address turns the shared cache off.
	Address string `yaml:"address"`
	// Username and the password (read from PasswordFile or the
	// environment variable PasswordEnv, never written in the file
	// itself) log in with AUTH (Redis ACL, or the default user when
	// Username is empty).
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	DB           int    `yaml:"db"`
	// PoolSize bounds the connections; default 10 per CPU.
	PoolSize int      `yaml:"pool_size"`
	TLS      *TLSSpec `yaml:"tls"`
}

// TLSSpec turns on TLS to Redis.
type TLSSpec struct {
	// CAFile is a PEM file of roots used instead of the system pool.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate, for a Redis that
	// asks for one (tls-auth-clients).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the server's certificate must carry;
	// default the address's host.
	ServerName string `yaml:"server_name"`
}

// BreakerSpec tunes the breaker that skips Redis while it fails.
type BreakerSpec struct {
	// Failures is how many consecutive failed or late lookups and
	// failed writes open it; default 5.
	Failures int `yaml:"failures"`
	// Cooldown is how long it stays open before a background probe;
	// default 1s, doubled after each failed probe up to MaxCooldown
	// (default 30s).
	Cooldown    time.Duration `yaml:"cooldown"`
	MaxCooldown time.Duration `yaml:"max_cooldown"`
}

// Defaults of Spec.
const (
	DefaultBudget      = 2 * time.Millisecond
	DefaultMinBudget   = 250 * time.Microsecond
	DefaultTimeout     = 50 * time.Millisecond
	DefaultNamespace   = "dnsedge"
	DefaultWriteQueue  = 1024
	DefaultFailures    = 5
	DefaultCooldown    = time.Second
	DefaultMaxCooldown = 30 * time.Second
	// MinKeyLen is the shortest fleet key accepted: as long as the MAC.
	MinKeyLen = 32
)

// On reports whether the shared cache is configured.
func (s Spec) On() bool { return s.Redis.Address != "" }

// Validate reports every problem of the section joined, each a
// *field.Error at a path relative to the section ("redis.address"). It
// reads the key and password files to check them; their contents are
// never part of an error.
func (s Spec) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, field.Errorf(path, format, args...)) }
	if !s.On() {
		if s != (Spec{}) {
			add("redis.address", "required when any other l2 key is set")
		}
		return errors.Join(errs...)
	}
	if _, err := s.config(); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"budget", s.Budget}, {"min_budget", s.MinBudget}, {"timeout", s.Timeout}, {"breaker.cooldown", s.Breaker.Cooldown}, {"breaker.max_cooldown", s.Breaker.MaxCooldown}} {
		if d.v < 0 {
			add(d.name, "must not be negative")
		}
	}
	c := s.withDefaults()
	if c.MinBudget > c.Budget {
		add("min_budget", "min_budget %s is above budget %s", c.MinBudget, c.Budget)
	}
	if c.Timeout < c.Budget {
		add("timeout", "timeout %s is below budget %s", c.Timeout, c.Budget)
	}
	if c.Breaker.Cooldown > c.Breaker.MaxCooldown {
		add("breaker.cooldown", "cooldown %s is above max_cooldown %s", c.Breaker.Cooldown, c.Breaker.MaxCooldown)
	}
	if s.WriteQueue < 0 {
		add("write_queue", "must not be negative")
	}
	if s.Breaker.Failures < 0 {
		add("breaker.failures", "must not be negative")
	}
	if s.Redis.PoolSize < 0 {
		add("redis.pool_size", "must not be negative")
	}
	if s.Redis.DB < 0 {
		add("redis.db", "must not be negative")
	}
	if strings.ContainsAny(s.Namespace, ": \t\r\n") {
		add("namespace", "must not contain ':' or white space")
	}
	return errors.Join(errs...)
}

// withDefaults returns s with every zero field that has a default set.
func (s Spec) withDefaults() Spec {
	set := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	set(&s.Budget, DefaultBudget)
	set(&s.MinBudget, min(DefaultMinBudget, s.Budget))
	set(&s.Timeout, DefaultTimeout)
	set(&s.Breaker.Cooldown, DefaultCooldown)
	set(&s.Breaker.MaxCooldown, max(DefaultMaxCooldown, s.Breaker.Cooldown))
	if s.Namespace == "" {
		s.Namespace = DefaultNamespace
	}
	if s.WriteQueue == 0 {
		s.WriteQueue = DefaultWriteQueue
	}
	if s.Breaker.Failures == 0 {
		s.Breaker.Failures = DefaultFailures
	}
	return s
}

// Config returns the Store configuration the section describes, reading
// the fleet key, the password and the TLS files, or every problem with
// them joined as *field.Error values relative to the section.
func (s Spec) Config() (Config, error) {
	if err := s.Validate(); err != nil {
		return Config{}, err
	}
	return s.config()
}

func (s Spec) config() (Config, error) {
	var errs []error
	d := s.withDefaults()
	cfg := Config{
		Addr: s.Redis.Address, Username: s.Redis.Username, DB: s.Redis.DB, PoolSize: s.Redis.PoolSize,
		Budget: d.Budget, MinBudget: d.MinBudget, Timeout: d.Timeout,
		Namespace: d.Namespace, WriteQueue: d.WriteQueue,
		BreakerFailures: d.Breaker.Failures, BreakerCooldown: d.Breaker.Cooldown, BreakerMaxCooldown: d.Breaker.MaxCooldown,
	}
	key, err := secret("key_file", s.KeyFile, "key_env", s.KeyEnv, true)
	switch {
	case err != nil:
		errs = append(errs, err)
	case len(key) < MinKeyLen:
		path := "key_file"
		if s.KeyEnv != "" {
			path = "key_env"
		}
		errs = append(errs, field.Errorf(path, "the fleet key has %d bytes, want at least %d", len(key), MinKeyLen))
	}
	cfg.Key = key
	pw, err := secret("redis.password_file", s.Redis.PasswordFile, "redis.password_env", s.Redis.PasswordEnv, false)
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Password = string(pw)
	if s.Redis.TLS != nil {
		t, err := s.Redis.TLS.config(s.Redis.Address)
		if err != nil {
			errs = append(errs, err)
		}
		cfg.TLS = t
	}
	return cfg, errors.Join(errs...)
}

// secret reads a value from the file named at filePath or the
// environment variable named at envPath, white space around it removed;
// at most one may be set, and one must be when required.
func secret(filePath, file, envPath, env string, required bool) ([]byte, error) {
	switch {
	case file != "" && env != "":
		return nil, field.Errorf(filePath, "set either %s or %s, not both", filePath, envPath)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, field.Wrap(filePath, err)
		}
		b = []byte(strings.TrimSpace(string(b)))
		if len(b) == 0 {
			return nil, field.Errorf(filePath, "%s is empty", file)
		}
		return b, nil
	case env != "":
		v, ok := os.LookupEnv(env)
		if v = strings.TrimSpace(v); !ok || v == "" {
			return nil, field.Errorf(envPath, "environment variable %s is not set or empty", env)
		}
		return []byte(v), nil
	case required:
		return nil, field.Errorf(filePath, "a fleet key is required: set %s or %s", filePath, envPath)
	}
	return nil, nil
}

func (t TLSSpec) config(addr string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if c.ServerName == "" {
		if i := strings.LastIndexByte(addr, ':'); i > 0 {
			c.ServerName = strings.Trim(addr[:i], "[]")
		}
	}
	var errs []error
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		switch {
		case err != nil:
			errs = append(errs, field.Wrap("redis.tls.ca_file", err))
		default:
			c.RootCAs = x509.NewCertPool()
			if !c.RootCAs.AppendCertsFromPEM(pem) {
				errs = append(errs, field.Errorf("redis.tls.ca_file", "%s holds no PEM certificate", t.CAFile))
			}
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, field.Errorf("redis.tls.cert_file", "cert_file and key_file go together"))
	} else if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			errs = append(errs, field.Wrap("redis.tls.cert_file", fmt.Errorf("load client certificate: %w", err)))
		} else {
			c.Certificates = []tls.Certificate{cert}
		}
	}
	return c, errors.Join(errs...)
}
