package consulstore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge/records"
	"github.com/dnsedge/dnsedge/edge/records/consulstore"
)

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		name, origin, key string
	}{
		{"zone", "dyn.test.", "dnsedge/records/dyn.test"},
		{"root", ".", "dnsedge/records/."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := consulstore.Key(records.DefaultConsulPrefix, tc.origin)
			if k != tc.key {
				t.Fatalf("Key(%q) = %q, want %q", tc.origin, k, tc.key)
			}
			if o, ok := consulstore.OriginOf(records.DefaultConsulPrefix, k); !ok || o != tc.origin {
				t.Fatalf("OriginOf(%q) = %q %v, want %q", k, o, ok, tc.origin)
			}
		})
	}
	for _, key := range []string{"dnsedge/records/", "dnsedge/records/a/b", "other/dyn.test", "dnsedge/records/dyn.test.", "dnsedge/records/a..b"} {
		if o, ok := consulstore.OriginOf(records.DefaultConsulPrefix, key); ok {
			t.Errorf("OriginOf(%q) = %q, want none", key, o)
		}
	}
}

func TestEncodeDecode(t *testing.T) {
	snap := records.Snapshot{Origin: "dyn.test.", Seq: 3, Serial: 4, RRsets: []records.RRset{
		{Name: "dyn.test.", Type: "SOA", TTL: 3600, Records: []records.Record{{Content: "localhost. hostmaster.dyn.test. 4 3600 600 86400 60"}}},
		{Name: "www.dyn.test.", Type: "A", TTL: 60, Records: []records.Record{{Content: "10.0.0.1"}}},
	}}
	e := &records.Entry{Seq: 3, Serial: 4, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), By: "ci"}
	b, err := consulstore.Encode(snap, e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"last":{"by":"ci","time":"2026-01-02T03:04:05.000Z","serial":4}`) {
		t.Errorf("value lacks the last change: %s", b)
	}
	got, err := consulstore.Decode("dyn.test.", b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Origin != snap.Origin || got.Seq != snap.Seq || got.Serial != snap.Serial || len(got.RRsets) != 2 || got.RRsets[1].Records[0].Content != "10.0.0.1" {
		t.Fatalf("round trip: %+v", got)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"not JSON", `zone`, "invalid character"},
		{"other format", `{"format":2,"zone":{"origin":"dyn.test.","seq":1,"serial":2}}`, "format 2, want 1"},
		{"no format", `{"zone":{"origin":"dyn.test.","seq":1,"serial":2}}`, "format 0, want 1"},
		{"other zone", `{"format":1,"zone":{"origin":"other.test.","seq":1,"serial":2}}`, `holds zone "other.test."`},
		{"seq 0", `{"format":1,"zone":{"origin":"dyn.test.","seq":0,"serial":2}}`, "seq 0"},
		{"serial 0", `{"format":1,"zone":{"origin":"dyn.test.","seq":1,"serial":0}}`, "serial 0"},
		{"unknown field", `{"format":1,"zone":{"origin":"dyn.test.","seq":1,"serial":2},"extra":1}`, `unknown field "extra"`},
		{"trailing data", `{"format":1,"zone":{"origin":"dyn.test.","seq":1,"serial":2}} {}`, "data after"},
		{"rrset without type", `{"format":1,"zone":{"origin":"dyn.test.","seq":1,"serial":2,"rrsets":[{"name":"a.dyn.test."}]}}`, "rrsets[0]: no name or type"},
		{"wrong type", `{"format":1,"zone":{"origin":"dyn.test.","seq":"1","serial":2}}`, "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := consulstore.Decode("dyn.test.", []byte(tc.value))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "zone dyn.test.: ") {
				t.Fatalf("Decode: %v, want an error about the zone containing %q", err, tc.want)
			}
		})
	}
}

// FuzzDecode: Decode never panics, and what it accepts encodes and
// decodes to the same snapshot.
func FuzzDecode(f *testing.F) {
	good, _ := consulstore.Encode(records.Snapshot{Origin: "dyn.test.", Seq: 1, Serial: 2, RRsets: []records.RRset{
		{Name: "www.dyn.test.", Type: "A", TTL: 60, Records: []records.Record{{Content: "10.0.0.1"}}},
	}}, nil)
	f.Add(good)
	f.Add([]byte(`{"format":1,"zone":{"origin":"dyn.test.","seq":1,"serial":2}}`))
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		snap, err := consulstore.Decode("dyn.test.", b)
		if err != nil {
			return
		}
		again, err := consulstore.Encode(snap, nil)
		if err != nil {
			t.Fatalf("accepted value does not encode: %v", err)
		}
		snap2, err := consulstore.Decode("dyn.test.", again)
		if err != nil {
			t.Fatalf("re-encoded value refused: %v", err)
		}
		if snap2.Seq != snap.Seq || snap2.Serial != snap.Serial || len(snap2.RRsets) != len(snap.RRsets) {
			t.Fatalf("round trip changed the snapshot: %+v -> %+v", snap, snap2)
		}
	})
}
