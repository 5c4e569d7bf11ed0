package validate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/internal/field"
)

const (
	dsAnchor     = "example. 3600 IN DS 31589 13 2 2A8C7D5E0B3E45B0F2C6E5E0E2A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5"
	dnskeyAnchor = "example. 3600 IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ=="
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Size
		err  string
	}{
		{"4096", 4096, ""},
		{"100MB", 100e6, ""},
		{"100 MB", 100e6, ""},
		{"1KiB", 1024, ""},
		{"2GiB", 2 << 30, ""},
		{"7B", 7, ""},
		{"", 0, "not a size"},
		{"MB", 0, "not a size"},
		{"-1", 0, "not a size"},
		{"10mb", 0, "unknown unit"},
		{"1.5MB", 0, "unknown unit"},
		{"2000GB", 0, "larger than 1TiB"},
		{"99999999999999999999", 0, "not a size"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSize(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("ParseSize(%q) = %d, %v; want an error with %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"100MB", "4096", "1KiB", " 3 GB", "x", "99999999999999GB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err != nil {
			if v != 0 {
				t.Errorf("ParseSize(%q) = %d with error %v", s, v, err)
			}
			return
		}
		if v < 0 || v > maxSize {
			t.Errorf("ParseSize(%q) = %d, out of bounds", s, v)
		}
		back, err := ParseSize(v.String())
		if err != nil || back != v {
			t.Errorf("ParseSize(%q) = %d, whose String %q reads back as %d, %v", s, v, v.String(), back, err)
		}
	})
}

// TestParseAnchorsBound: a $GENERATE line cannot make a file of tens of
// thousands of anchors (the fuzzer's slow inputs); a real file parses.
func TestParseAnchorsBound(t *testing.T) {
	tests := []struct {
		name, text, wantErr string
		want                int
	}{
		{name: "two anchors", text: dsAnchor + "\n" + dnskeyAnchor + "\n", want: 2},
		{name: "generated", text: "$GENERATE 1-65535 x$ DS 1 13 2 00\n", wantErr: "more than 1000 trust anchors"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rrs, err := ParseAnchors(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || rrs != nil {
					t.Fatalf("%d records, err %v; want %q", len(rrs), err, tt.wantErr)
				}
				return
			}
			if err != nil || len(rrs) != tt.want {
				t.Fatalf("%d records, err %v; want %d", len(rrs), err, tt.want)
			}
		})
	}
}

func FuzzParseAnchors(f *testing.F) {
	for _, s := range []string{dsAnchor, dnskeyAnchor, dsAnchor + "\n" + dnskeyAnchor, "example. IN A 192.0.2.1",
		"; comment only\n", "$INCLUDE /etc/passwd\n", "example. CH DS 1 13 2 00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rrs, err := ParseAnchors(s)
		if err != nil {
			if rrs != nil {
				t.Errorf("records %v with error %v", rrs, err)
			}
			return
		}
		if len(rrs) == 0 {
			t.Error("no records and no error")
		}
		for _, rr := range rrs {
			if err := checkAnchor(rr); err != nil {
				t.Errorf("accepted %v: %v", rr, err)
			}
		}
	})
}

func TestValidateConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "anchors.txt")
	if err := os.WriteFile(good, []byte("; the test zone\n"+dsAnchor+"\n"+dnskeyAnchor+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte("example. 3600 IN A 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	neg := -2
	tests := []struct {
		name string
		cfg  Config
		want []string // "path: text" of each problem
	}{
		{"empty", Config{}, nil},
		{"anchors inline and from a file", Config{Enabled: true, TrustAnchors: []string{dsAnchor, good}}, nil},
		{"audit to stdout", Config{AuditLog: AuditConfig{Path: Stdout}}, nil},
		{"bad anchors", Config{TrustAnchors: []string{
			"example. 3600 IN A 192.0.2.1",
			"example. 3600 IN DNSKEY 0 3 13 " + strings.Fields(dnskeyAnchor)[7],
			"example. 3600 CH DS 31589 13 2 00",
			bad,
			filepath.Join(dir, "missing.txt"),
			"example. IN DS nonsense",
		}}, []string{
			"trust_anchors[0]: trust anchor for example.: A record, want DS or DNSKEY",
			"trust_anchors[1]: trust anchor for example.: DNSKEY without the zone key flag",
			"trust_anchors[2]: trust anchor for example.: class CH, want IN",
			"trust_anchors[3]: trust anchor file " + bad + ": trust anchor for example.: A record, want DS or DNSKEY",
			"trust_anchors[4]: read trust anchor file",
			"trust_anchors[5]: parse trust anchor",
		}},
		{"bounds", Config{
			NegativeTrustAnchors: []string{"ok.example.", "bad..name"},
			Skew:                 -time.Second,
			MaxNSEC3Iterations:   &neg,
			AuditLog:             AuditConfig{Path: "/tmp/x", MaxSize: 10, MaxFiles: -2, Buffer: -1},
		}, []string{
			"negative_trust_anchors[1]: \"bad..name\" is not a domain name",
			"skew: skew -1s must be from 0s to 24h0m0s",
			"max_nsec3_iterations: max_nsec3_iterations -2 must be from 0 to 65535",
			"audit_log.max_size: max_size 10 must be at least 4096B",
			"audit_log.max_files: max_files -2 must be from -1 to 1000",
			"audit_log.buffer: buffer -1 must be from 1 to 1048576",
		}},
		{"audit keys without a path", Config{AuditLog: AuditConfig{Buffer: 10}}, []string{
			"audit_log.path: the audit log needs a path (a file or \"stdout\")",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			errs := field.Flatten(tt.cfg.Validate())
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d problems %v, want %d", len(errs), errs, len(tt.want))
			}
			for i, err := range errs {
				var fe *field.Error
				if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), tt.want[i]) {
					t.Errorf("problem %d: %v, want %q...", i, err, tt.want[i])
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := Config{AuditLog: AuditConfig{Path: Stdout}}.WithDefaults()
	if c.Enabled || c.Skew != 5*time.Minute || *c.MaxNSEC3Iterations != 150 ||
		c.AuditLog.MaxSize != 100e6 || c.AuditLog.MaxFiles != 5 || c.AuditLog.Buffer != 4096 {
		t.Errorf("defaults %+v", c)
	}
	zero := 0
	c = Config{MaxNSEC3Iterations: &zero}.WithDefaults()
	if *c.MaxNSEC3Iterations != 0 || c.AuditLog.Buffer != 0 {
		t.Errorf("an explicit 0 iterations or no audit log changed: %+v", c)
	}
	dc, err := Config{TrustAnchors: []string{dsAnchor}, NegativeTrustAnchors: []string{"Lab.Example"}}.dnssecConfig()
	if err != nil || len(dc.Anchors) != 1 || dc.NegativeAnchors[0] != "lab.example." || dc.Skew != DefaultSkew || dc.MaxNSEC3Iterations != 150 {
		t.Errorf("validator config %+v, %v", dc, err)
	}
}

func TestResolveFiles(t *testing.T) {
	t.Parallel()
	c := Config{TrustAnchors: []string{dsAnchor, "anchors.txt", "/etc/anchors.txt"}}
	c.ResolveFiles("/srv/dnsedge")
	want := []string{dsAnchor, "/srv/dnsedge/anchors.txt", "/etc/anchors.txt"}
	if strings.Join(c.TrustAnchors, "|") != strings.Join(want, "|") {
		t.Errorf("got %q", c.TrustAnchors)
	}
}
