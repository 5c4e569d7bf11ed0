package edge

import (
	"bytes"
	"fmt"
	"github.com/dnsedge/dnsedge/edge/middleware"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/internal/yamlcheck"
	"go.yaml.in/yaml/v3"
	"golang.org/x/tools/txtar"
)

// TestConfigGolden runs every testdata/config/*.txtar: config.yaml (and an
// optional resolv.conf) in, the expected problems or a summary out.
func TestConfigGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/config/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(f)
			if err != nil {
				t.Fatal(err)
			}
			parts := make(map[string]string)
			for _, af := range ar.Files {
				parts[af.Name] = string(af.Data)
			}
			resolv := filepath.Join(t.TempDir(), "resolv.conf")
			rc, ok := parts["resolv.conf"]
			if !ok {
				rc = "nameserver 192.0.2.53\n"
			}
			if err := os.WriteFile(resolv, []byte(rc), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := parse("config.yaml", []byte(parts["config.yaml"]), resolv)
			var got string
			if err != nil {
				got = err.Error()
			} else {
				got = "ok: " + summarize(cfg)
				for _, w := range cfg.Warnings() {
					got += "\n" + w.String()
				}
			}
			// Problems without a position are printed with the file only.
			got = strings.ReplaceAll(got, "config.yaml: upstreams", "(no file):0:0: upstreams")
			want := strings.TrimSpace(parts["want"])
			if strings.TrimSpace(got) != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func summarize(c *Config) string {
	cache := "cache off"
	if c.Cache.On() {
		cc := c.Cache.Config()
		cache = fmt.Sprintf("cache %d entries", cc.MaxEntries)
		if !cc.DisableStale {
			cache += fmt.Sprintf(", serve-stale %s", cc.MaxStale)
		}
	}
	out := fmt.Sprintf("%d listeners, %d upstreams, %d groups, bootstrap %s, %s",
		len(c.Listeners), len(c.Upstreams), len(c.Groups), strings.Join(c.Bootstrap, " "), cache)
	// The carry sections are shown when the file changes them.
	if c.ECS != (middleware.ECSConfig{}).WithDefaults() || len(c.Tags.Trusted) > 0 ||
		c.Tags.OptionCode != middleware.DefaultTagOptionCode || c.Trace.OptionCode != middleware.DefaultTraceOptionCode {
		out += fmt.Sprintf(", ecs %s doh %s /%d /%d, tags option %d trusted %q, trace option %d",
			c.ECS.Default, c.ECS.DoH, c.ECS.V4Bits, c.ECS.V6Bits, c.Tags.OptionCode, c.Tags.Trusted, c.Trace.OptionCode)
	}
	if tr := c.Tracing; tr.On() {
		out += fmt.Sprintf(", tracing to %s", tr.OTLPEndpoint)
		if tr.SampleRatio != nil {
			out += fmt.Sprintf(" sampling %g", *tr.SampleRatio)
		}
	}
	if d := c.DNSSEC; d.On() || d.AuditLog.Path != "" {
		out += fmt.Sprintf(", dnssec validate %v anchors %d negative %q skew %s nsec3 %d", d.Enabled,
			len(d.TrustAnchors), d.NegativeTrustAnchors, d.Skew, *d.MaxNSEC3Iterations)
		if a := d.AuditLog; a.Path != "" {
			out += fmt.Sprintf(" audit %q max_size %s max_files %d buffer %d", a.Path, a.MaxSize, a.MaxFiles, a.Buffer)
		}
	}
	if c.TSIG.On() {
		out += fmt.Sprintf(", tsig keys %v fudge %s, listener tsig [", c.TSIG.Keys, c.TSIG.Fudge)
		for i, l := range c.Listeners {
			if i > 0 {
				out += " "
			}
			out += l.TSIG
		}
		out += "]"
	}
	if cc := c.Consul; cc.On() {
		out += fmt.Sprintf(", consul %s domain %s only_passing %v stale_after %s idle_after %s first_wait %s ttl %s/%v",
			cc.Address, cc.Domain, *cc.OnlyPassing, cc.StaleAfter, cc.IdleAfter, cc.FirstWait, cc.TTL.Default, cc.TTL.Services)
		if cc.Policy.Enabled {
			out += " policy from " + cc.Policy.Prefix
		}
	}
	if d := c.Dnstap; d.On() {
		out += fmt.Sprintf(", dnstap file %q socket %q identity %q queue %d", d.File, d.Socket, d.Identity, d.Queue)
	}
	out += summarizeAdmin(c)
	return out
}

func TestDefaultConfig(t *testing.T) {
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 192.0.2.53\nnameserver 2001:db8::53\n"), 0o644)
	cfg, err := parse("(default)", defaultConfig, resolv)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.SystemUpstreams || len(cfg.Upstreams) != 2 || cfg.Upstreams[1].URL != "udp://[2001:db8::53]:53" {
		t.Fatalf("upstreams = %+v", cfg.Upstreams)
	}
	if len(cfg.Listeners) != 10 || !cfg.Listeners[5].Optional || cfg.Groups[0].Name != DefaultGroup ||
		cfg.TLS == nil || !cfg.TLS.SelfSigned {
		t.Fatalf("listeners = %+v groups = %+v", cfg.Listeners, cfg.Groups)
	}
}

// FuzzParseConfig: no input makes the loader panic, whatever it accepts
// validates, and the type walker misses nothing that yaml.v3's strict
// decoder refuses.
func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/config/*.txtar")
	for _, name := range files {
		if ar, err := txtar.ParseFile(name); err == nil {
			for _, af := range ar.Files {
				if af.Name == "config.yaml" {
					f.Add(af.Data)
				}
			}
		}
	}
	f.Add(defaultConfig)
	resolv := filepath.Join(f.TempDir(), "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 192.0.2.53\n"), 0o644)
	f.Fuzz(func(t *testing.T, data []byte) {
		var root yaml.Node
		if yaml.Unmarshal(data, &root) == nil {
			dec := yaml.NewDecoder(bytes.NewReader(data))
			dec.KnownFields(true)
			strict := dec.Decode(new(Config))
			if strict != nil && strict != io.EOF && !strings.Contains(strict.Error(), "alias") &&
				len(yamlcheck.CheckTree(&root, reflect.TypeFor[Config]())) == 0 {
				t.Fatalf("yaml.v3 refuses what the walker accepts: %v", strict)
			}
		}
		cfg, err := parse("fuzz.yaml", data, resolv)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
	})
}

// TestREADMEConfig loads the complete example of README.md's
// Configuration section, so the documentation cannot drift from what the
// loader accepts.
func TestREADMEConfig(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## Configuration")
	if !ok {
		t.Fatal("README.md has no Configuration section")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml example in README.md's Configuration section")
	}
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 192.0.2.53\n"), 0o644)
	cfg, err := parse("README.md", []byte(example), resolv)
	if err != nil {
		t.Fatalf("the README example does not load:\n%v", err)
	}
	if len(cfg.Listeners) < 6 || cfg.TLS == nil || len(cfg.Upstreams) < 3 {
		t.Errorf("the README example lost parts: %s", summarize(cfg))
	}
}
