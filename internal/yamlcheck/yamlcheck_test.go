package yamlcheck

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/internal/field"
)

type doc struct {
	Name  string        `yaml:"name"`
	Wait  time.Duration `yaml:"wait"`
	Items []struct {
		N int `yaml:"n"`
	} `yaml:"items"`
}

// TestDecodeAndCheck checks the three sources of problems — wrong values
// and unknown keys, validation errors placed by path, and validation
// errors under a wrong value, which are left out — and their order.
func TestDecodeAndCheck(t *testing.T) {
	t.Parallel()
	var d doc
	data := "name: x\nwait: soon\nitems:\n  - n: 1\n  - n: 1.5\n  - m: 2\nname: y\n"
	dc, err := Decode("d.yaml", []byte(data), &d)
	if err != nil {
		t.Fatal(err)
	}
	verr := errors.Join(
		field.Errorf("items[0].n", "too small"),
		field.Errorf("items[1].n", "repeats the type problem"),
		field.Errorf("name", "bad name"),
		errors.New("no place"),
	)
	got := dc.Check(verr).Error()
	want := strings.Join([]string{
		"d.yaml: no place",
		"d.yaml:1:7: name: bad name",
		`d.yaml:2:7: wait: "soon" is not a duration (write it like 30s, 5m or 1h)`,
		"d.yaml:4:8: items[0].n: too small",
		`d.yaml:5:8: items[1].n: "1.5" is not a whole number`,
		`d.yaml:6:5: unknown key "m" in items[2]: did you mean "n"?`,
		"d.yaml:7:1: name: set twice (first at line 1)",
	}, "\n")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if d.Name != "x" || len(d.Items) != 3 || d.Items[0].N != 1 {
		t.Errorf("decoded %+v", d)
	}
	if err := dc.Check(nil); err == nil {
		t.Error("Check(nil) forgot the decoding problems")
	}
	var nilDoc *Doc
	if ps := nilDoc.Place(field.Errorf("a", "b")); len(ps) != 1 || ps[0].String() != ": a: b" {
		t.Errorf("nil Doc placed %v", ps)
	}
	if _, err := Decode("d.yaml", []byte("a: [\n"), &d); err == nil {
		t.Error("Decode accepted broken YAML")
	}
}
