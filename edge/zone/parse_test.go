package zone

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		origin  string
		text    string
		wantErr []string // substrings of the error, in order; none for success
		check   map[string]string
	}{
		{
			name: "origin and TTL directives", origin: "Example.",
			text: "$TTL 120\n@ SOA ns hm 1 2 3 4 5\nwww A 192.0.2.1\n$ORIGIN sub.example.\nhost 60 A 192.0.2.2\nnext A 192.0.2.3\n",
			check: map[string]string{
				"www.example.":      "www.example. 120 IN A 192.0.2.1",
				"host.sub.example.": "host.sub.example. 60 IN A 192.0.2.2",
				"next.sub.example.": "next.sub.example. 120 IN A 192.0.2.3", // $TTL, not the last explicit TTL
			},
		},
		{
			name: "last explicit TTL without $TTL (RFC 1035 §5.1)", origin: "example.",
			text:  "a 60 A 192.0.2.1\nb A 192.0.2.2\n",
			check: map[string]string{"b.example.": "b.example. 60 IN A 192.0.2.2"},
		},
		{
			name: "default TTL", origin: "example",
			text:  "www A 192.0.2.1\n",
			check: map[string]string{"www.example.": "www.example. 3600 IN A 192.0.2.1"},
		},
		{
			name: "multi-line SOA and comments", origin: "example.",
			text:  "@ 300 IN SOA ns hm (\n 1 ; serial\n 2 3 4 5 )\nwww A 192.0.2.1 ; web\n",
			check: map[string]string{"www.example.": "www.example. 300 IN A 192.0.2.1"},
		},
		{
			name: "bad record names file and line", origin: "example.",
			text:    "www A 192.0.2.1\n\nbad A 192.0.2.x\n",
			wantErr: []string{"zones/example.zone:3: ", `"192.0.2.x"`},
		},
		{
			name: "$INCLUDE rejected", origin: "example.",
			text:    "www A 192.0.2.1\n$INCLUDE /etc/passwd\n",
			wantErr: []string{"zones/example.zone:2: ", "$INCLUDE"},
		},
		{
			name: "record outside origin", origin: "example.",
			text:    "www A 192.0.2.1\nwww.example.org. A 192.0.2.2\n",
			wantErr: []string{"zones/example.zone: ", "www.example.org. is outside the zone example."},
		},
		{
			name: "name sharing a suffix is outside", origin: "example.",
			text:    "notexample. A 192.0.2.2\n",
			wantErr: []string{"notexample. is outside the zone example."},
		},
		{
			name: "two SOAs", origin: "example.",
			text:    "@ SOA ns hm 1 2 3 4 5\n@ SOA ns hm 2 2 3 4 5\n",
			wantErr: []string{"more than one SOA"},
		},
		{
			name: "SOA below the apex", origin: "example.",
			text:    "sub SOA ns hm 1 2 3 4 5\n",
			wantErr: []string{"SOA record below the zone apex"},
		},
		{
			name: "CNAME and other data", origin: "example.",
			text:    "www CNAME web\nwww A 192.0.2.1\n",
			wantErr: []string{"www.example.: CNAME and A records at the same name"},
		},
		{
			name: "CNAME with RRSIG and NSEC is fine", origin: "example.",
			text: "www CNAME web\nwww RRSIG CNAME 13 2 300 20300101000000 20200101000000 1 example. dGVzdA==\nwww NSEC z.example. CNAME RRSIG NSEC\n",
		},
		{
			name: "two CNAMEs", origin: "example.",
			text:    "www CNAME a\nwww CNAME b\n",
			wantErr: []string{"more than one CNAME"},
		},
		{
			name: "CNAME at the apex", origin: "example.",
			text:    "@ CNAME other.org.\n",
			wantErr: []string{"CNAME at the zone apex"},
		},
		{
			name: "class CH", origin: "example.",
			text:    "www CH TXT \"x\"\n",
			wantErr: []string{"class CH not supported"},
		},
		{
			name: "every problem reported", origin: "example.",
			text:    "a.org. A 192.0.2.1\nb.org. A 192.0.2.1\n",
			wantErr: []string{"a.org. is outside", "b.org. is outside"},
		},
		{
			name: "bad origin", origin: "exa mple",
			text:    "www A 192.0.2.1\n",
			wantErr: []string{"zones/example.zone: ", "not a domain name"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			z, err := Parse(tt.origin, strings.NewReader(tt.text), "zones/example.zone")
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				msg := err.Error()
				for _, w := range tt.wantErr {
					i := strings.Index(msg, w)
					if i < 0 {
						t.Fatalf("error %q does not contain %q", err, w)
					}
					msg = msg[i+len(w):]
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tt.check {
				m := z.Answer(query(name, dns.TypeA, false))
				if got := texts(m.Answer); len(got) != 1 || got[0] != canon(t, []string{want})[0] {
					t.Errorf("%s: got %q, want %q", name, got, want)
				}
			}
		})
	}
}

func TestParseErrorLine(t *testing.T) {
	t.Parallel()
	_, err := Parse("example.", strings.NewReader("www A 192.0.2.1\nmail MX ten mail\n"), "z.zone")
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != "z.zone" || pe.Line != 2 {
		t.Fatalf("got %#v (%v), want a *ParseError at z.zone:2", err, err)
	}
	var dpe *dns.ParseError
	if !errors.As(err, &dpe) {
		t.Error("the *dns.ParseError is not in the chain")
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "example.zone")
	if err := os.WriteFile(path, []byte("www A 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	z, err := LoadFile("example.", path)
	if err != nil {
		t.Fatal(err)
	}
	if z.Origin() != "example." || z.Len() != 2 {
		t.Errorf("origin %q, %d records; want example., 2 (the SOA synthesized)", z.Origin(), z.Len())
	}
	if _, err := LoadFile("example.", filepath.Join(dir, "missing.zone")); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.zone") {
		t.Errorf("missing file: %v", err)
	}
}

func TestFromRecords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		records []string
		wantErr []string // each a line of the joined error
		check   map[string]string
	}{
		{
			name:    "relative names, default TTL and class",
			records: []string{"api 60 IN A 10.0.0.1", "@ 300 IN MX 10 mail", "mail A 10.0.0.25", "abs.example. TXT \"x\""},
			check: map[string]string{
				"api.example.":  "api.example. 60 IN A 10.0.0.1",
				"mail.example.": "mail.example. 3600 IN A 10.0.0.25",
			},
		},
		{
			name:    "TTL does not carry over between records",
			records: []string{"a 60 A 10.0.0.1", "b A 10.0.0.2"},
			check:   map[string]string{"b.example.": "b.example. 3600 IN A 10.0.0.2"},
		},
		{
			name:    "bad record named by index",
			records: []string{"a A 10.0.0.1", "b A 10.0.0.256", "c A 10.0.0.3", "d AAAA nope"},
			wantErr: []string{`records[1]: bad A A: "10.0.0.256"`, `records[3]: bad AAAA AAAA: "nope"`},
		},
		{
			name:    "outside origin",
			records: []string{"a A 10.0.0.1", "a.example.org. A 10.0.0.2"},
			wantErr: []string{"records[1]: a.example.org. is outside the zone example."},
		},
		{
			name:    "two SOAs",
			records: []string{"@ SOA ns hm 1 2 3 4 5", "www A 10.0.0.1", "@ SOA ns hm 2 2 3 4 5"},
			wantErr: []string{"records[2]: example.: more than one SOA record"},
		},
		{
			name:    "CNAME and other data at the later record",
			records: []string{"www A 10.0.0.1", "other A 10.0.0.2", "www CNAME other"},
			wantErr: []string{"records[2]: www.example.: CNAME and A records at the same name (RFC 1034 §3.6.2)"},
		},
		{
			name:    "two records in one entry",
			records: []string{"a A 10.0.0.1\nb A 10.0.0.2"},
			wantErr: []string{"records[0]: more than one record: write one record per entry"},
		},
		{
			name:    "empty entry",
			records: []string{"  "},
			wantErr: []string{"records[0]: no record"},
		},
		{
			name:    "$INCLUDE",
			records: []string{"$INCLUDE /etc/passwd"},
			wantErr: []string{`records[0]: $INCLUDE directive not allowed: "/etc/passwd"`},
		},
		{
			name:    "NS at a wildcard",
			records: []string{"* NS ns.other.org."},
			wantErr: []string{"records[0]: *.example.: NS records at a wildcard name are not supported (RFC 4592 §4.2)"},
		},
		{
			name:    "rdata that does not encode (fuzz)",
			records: []string{"0 DS 0 0 0 0"},
			wantErr: []string{"records[0]: 0.example. DS: cannot be encoded: encoding/hex: odd length hex string"},
		},
		{
			name:    "duplicates kept once",
			records: []string{"a A 10.0.0.1", "a 60 A 10.0.0.1"},
			check:   map[string]string{"a.example.": "a.example. 3600 IN A 10.0.0.1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			z, err := FromRecords("example.", tt.records)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(tt.wantErr, "\n") {
					t.Fatalf("errors:\n got %q\nwant %q", got, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tt.check {
				m := z.Answer(query(name, dns.TypeA, false))
				if got := texts(m.Answer); len(got) != 1 || got[0] != canon(t, []string{want})[0] {
					t.Errorf("%s: got %q, want %q", name, got, want)
				}
			}
		})
	}
}

// TestSynthesizedSOA checks the SOA a zone without one is given.
func TestSynthesizedSOA(t *testing.T) {
	t.Parallel()
	z, err := FromRecords("Example.", []string{"www A 10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	m := z.Answer(query("example.", dns.TypeSOA, false))
	want := canon(t, []string{"example. 3600 IN SOA localhost. hostmaster.example. 1 3600 600 86400 60"})
	if got := texts(m.Answer); !sameRRs(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
