package policy

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEExamples loads the policy examples of policy/README.md and of
// the top README's Policy section, so that neither can drift from what
// Load accepts.
func TestREADMEExamples(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ file, after string }{
		{"README.md", "## Schema"},
		{"../README.md", "### Policy"},
	} {
		data, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, ok := strings.Cut(string(data), c.after)
		_, rest, ok2 := strings.Cut(rest, "```yaml\n")
		example, _, ok3 := strings.Cut(rest, "```")
		if !ok || !ok2 || !ok3 {
			t.Fatalf("%s: no yaml example after %q", c.file, c.after)
		}
		p, err := Load(c.file, []byte(example))
		if err != nil {
			t.Fatalf("%s: the example does not load:\n%v", c.file, err)
		}
		if p.Len() < 4 || p.Version() == "" {
			t.Errorf("%s: the example lost parts: %d rules, version %q", c.file, p.Len(), p.Version())
		}
		if err := p.Shadowed(); err != nil {
			t.Errorf("%s: %v", c.file, err)
		}
	}
}
