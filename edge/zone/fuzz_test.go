package zone

import (
	"bytes"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// answerAll asks z every type of interest at every name it holds and at a
// name below each, with and without DO, so answering is fuzzed too.
func answerAll(t *testing.T, z *Zone) {
	names := 0
	for name := range z.names {
		if names++; names > 64 {
			break
		}
		below := "x." + name
		if name == "." {
			below = "x."
		}
		for _, qn := range []string{name, below} {
			for _, qt := range []uint16{dns.TypeA, dns.TypeCNAME, dns.TypeANY, dns.TypeDS, dns.TypeMX, dns.TypeRRSIG} {
				m := z.Answer(query(qn, qt, true))
				if m.Len() > dns.MaxMsgSize || len(qn) > 250 {
					continue // too big to pack, a matter for the listener
				}
				if _, err := m.Pack(); err != nil {
					t.Errorf("answer for %s %s does not pack: %v", qn, dns.TypeToString[qt], err)
				}
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(exampleZone))
	f.Add([]byte("$TTL 60\n@ SOA ns hm 1 2 3 4 5\n* CNAME *\n"))
	f.Add([]byte("a CNAME b\nb CNAME a\nc NS d.c\nd.c A 1.2.3.4\n"))
	f.Add([]byte("$ORIGIN other.\nwww A 1.2.3.4\n"))
	f.Add([]byte("$GENERATE 1-4 h$ A 10.0.0.$\n"))
	f.Add([]byte("@ SOA ns hm ( 1 2\n 3 4 5 )\n"))
	f.Add([]byte("*.a.b NS x\nc.d.e MX 10 c.d.e\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		z, err := Parse("example.", bytes.NewReader(data), "fuzz.zone")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.zone") {
				t.Errorf("error does not name the file: %v", err)
			}
			return
		}
		answerAll(t, z)
	})
}

func FuzzFromRecords(f *testing.F) {
	f.Add("example.", "api 60 IN A 10.0.0.1", "@ 300 IN MX 10 mail")
	f.Add("internal.", "* 300 IN A 127.0.0.1", "x CNAME y")
	f.Add(".", "* A 127.0.0.1", "tld NS ns.tld")
	f.Add("a.b.", "$ORIGIN c.\nx A 1.1.1.1", "")
	f.Add("Ex\\.ample.", "w\\.x A 1.1.1.1", "@ CNAME x")
	f.Fuzz(func(t *testing.T, origin, a, b string) {
		z, err := FromRecords(origin, []string{a, b})
		if err != nil {
			return
		}
		answerAll(t, z)
		s, err := NewSet(z)
		if err != nil {
			t.Fatal(err)
		}
		if s.Lookup(z.Origin()) != z {
			t.Errorf("set does not find the zone %q by its origin", z.Origin())
		}
	})
}
