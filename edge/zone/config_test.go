package zone

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/internal/field"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := ZoneSpec{Origin: "example.", Records: []string{"www A 192.0.2.1"}}
	tenant := func(name string, ids, nets []string) TenantSpec {
		return TenantSpec{Name: name, ClientIDs: ids, Networks: nets, Zones: []ZoneSpec{ok}}
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // "path: message substring", in order
	}{
		{name: "empty", cfg: Config{}},
		{name: "valid", cfg: Config{
			Zones:        []ZoneSpec{ok, {Origin: "Corp", File: "corp.zone"}},
			Tenants:      []TenantSpec{tenant("a", []string{"a"}, []string{"10.0.0.0/8", "10.1.2.3", "2001:db8::/32"})},
			Fallback:     []ZoneSpec{{Origin: "internal.", Records: []string{"* 300 IN A 127.0.0.1"}}},
			PollInterval: time.Second,
		}},
		{name: "origin", cfg: Config{Zones: []ZoneSpec{
			{Records: []string{"www A 192.0.2.1"}},
			{Origin: "bad name.", Records: []string{"www A 192.0.2.1"}},
			{Origin: "a..b", File: "x"},
		}}, want: []string{"zones[0]: zone needs an origin", "zones[1].origin: origin \"bad name.\" is not a domain name", "zones[2].origin: "}},
		{name: "duplicate origin", cfg: Config{Zones: []ZoneSpec{ok, {Origin: "EXAMPLE", File: "x"}}},
			want: []string{"zones[1].origin: zone example. already defined at zones[0]"}},
		{name: "same origin in two lists is fine", cfg: Config{Zones: []ZoneSpec{ok}, Fallback: []ZoneSpec{ok},
			Tenants: []TenantSpec{tenant("a", []string{"a"}, nil)}}},
		{name: "api zones", cfg: Config{
			Zones:    []ZoneSpec{{Origin: "dyn.", API: true}, {Origin: "both.", API: true, Records: []string{"www A 192.0.2.1"}}, {Origin: "file.", API: true, File: "f"}},
			Fallback: []ZoneSpec{{Origin: "fb.", API: true}},
			Tenants:  []TenantSpec{{Name: "t", ClientIDs: []string{"t"}, Zones: []ZoneSpec{{Origin: "t.", API: true}}}},
		}, want: []string{
			"zones[1].api: zone both. is kept by the records API: it takes no file or records",
			"zones[2].api: zone file. is kept by the records API",
			"fallback[0].api: only shared zones",
			"tenants[0].zones[0].api: only shared zones",
		}},
		{name: "file and records", cfg: Config{Zones: []ZoneSpec{
			{Origin: "a.", File: "a.zone", Records: []string{"www A 192.0.2.1"}},
			{Origin: "b."},
		}}, want: []string{"zones[0]: zone a. sets both file and records", "zones[1]: zone b. needs a file or records"}},
		{name: "bad records", cfg: Config{Fallback: []ZoneSpec{ok, {Origin: "internal.", Records: []string{
			"* 300 IN A 127.0.0.1", "x A nope", "y.example. A 127.0.0.1", "@ SOA a b 1 2 3 4 5", "@ SOA a b 2 2 3 4 5",
		}}}}, want: []string{
			`fallback[1].records[1]: bad A A: "nope"`,
			"fallback[1].records[2]: y.example. is outside the zone internal.",
			"fallback[1].records[4]: internal.: more than one SOA",
		}},
		{name: "tenants", cfg: Config{Tenants: []TenantSpec{
			tenant("", []string{"x"}, nil),
			tenant("a", nil, nil),
			tenant("a", []string{"y"}, nil),
			{Name: "b", ClientIDs: []string{"z"}},
		}}, want: []string{
			"tenants[0]: tenant needs a name",
			`tenants[1]: tenant "a" needs client_ids, networks or tsig_keys`,
			`tenants[2].name: tenant "a" already defined at tenants[1]`,
			`tenants[3].zones: tenant "b" has no zones`,
		}},
		{name: "networks and client ids", cfg: Config{Tenants: []TenantSpec{
			tenant("a", []string{"id1", ""}, []string{"10.0.0.0/8", "10.0.0.0/33", "nope"}),
			tenant("b", []string{"id1"}, []string{"10.1.2.3/8", "::ffff:10.0.0.0/104", "fe80::1%eth0"}),
		}}, want: []string{
			"tenants[0].client_ids[1]: client id is empty",
			`tenants[0].networks[1]: "10.0.0.0/33" is not a network: prefix length out of range`,
			`tenants[0].networks[2]: "nope" is neither`,
			`tenants[1].client_ids[0]: client id "id1" already belongs to tenants[0].client_ids[0]`,
			"tenants[1].networks[0]: network 10.0.0.0/8 already belongs to tenants[0].networks[0]",
			"tenants[1].networks[1]: network 10.0.0.0/8 already belongs to tenants[0].networks[0]",
			`tenants[1].networks[2]: network "fe80::1%eth0" must not have a zone`,
		}},
		{name: "tenant zones", cfg: Config{Tenants: []TenantSpec{{Name: "a", ClientIDs: []string{"a"}, Zones: []ZoneSpec{
			ok, {Origin: "example.", Records: []string{"a CNAME b", "a TXT x"}},
		}}}}, want: []string{
			"tenants[0].zones[1].origin: zone example. already defined at tenants[0].zones[0]",
			"tenants[0].zones[1].records[1]: a.example.: CNAME and TXT records at the same name",
		}},
		{name: "poll interval", cfg: Config{PollInterval: -time.Second}, want: []string{"zone_poll_interval: must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			var got []string
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe *field.Error
					if !errors.As(e, &fe) {
						t.Errorf("%v is not a *field.Error", e)
						continue
					}
					if !strings.HasPrefix(e.Error(), fe.FieldPath()+": ") {
						t.Errorf("%q does not start with its path %q", e, fe.FieldPath())
					}
					got = append(got, e.Error())
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("problem %d:\n got %s\nwant %s...", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestConfigEmpty(t *testing.T) {
	t.Parallel()
	if !(&Config{PollInterval: time.Second}).Empty() {
		t.Error("a config with only a poll interval is not empty")
	}
	for _, c := range []Config{
		{Zones: []ZoneSpec{{}}}, {Tenants: []TenantSpec{{}}}, {Fallback: []ZoneSpec{{}}},
	} {
		if c.Empty() {
			t.Errorf("%+v is empty", c)
		}
	}
}

// TestNewReportsEveryProblem checks that New reports configuration problems
// and every broken zone file, with file and line.
func TestNewReportsEveryProblem(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{PollInterval: -1}, nil, nil); err == nil {
		t.Error("New accepted an invalid config")
	}
	dir := t.TempDir()
	writeFile(t, dir+"/a.zone", "www A 192.0.2.1\nbad A x\n")
	writeFile(t, dir+"/b.zone", "www A 192.0.2.1\n\n\nbad TXT \"unterminated\n")
	_, err := New(Config{
		Zones:    []ZoneSpec{{Origin: "a.", File: dir + "/a.zone"}, {Origin: "c.", File: dir + "/missing.zone"}},
		Fallback: []ZoneSpec{{Origin: "b.", File: dir + "/b.zone"}},
	}, nil, nil)
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{dir + "/a.zone:2: ", dir + "/missing.zone", dir + "/b.zone:4: "}
	if len(lines) != len(want) {
		t.Fatalf("got %q, want problems starting %q", lines, want)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("problem %d is %q, want it to name %q", i, lines[i], w)
		}
	}
	if !slices.ContainsFunc(lines, func(s string) bool { return strings.Contains(s, "no such file") }) {
		t.Errorf("the missing file is not reported as such: %q", lines)
	}
}
