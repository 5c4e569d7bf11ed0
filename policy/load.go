package policy

import "github.com/dnsedge/dnsedge/internal/yamlcheck"

// Load decodes a stand-alone policy document (the schema of Spec at its
// top level) from data, strictly, and compiles it. Every problem is
// reported in one *yamlcheck.Error as "name:line:col: path: message", in
// the words the configuration file uses: values of the wrong type,
// unknown keys, and what Compile finds. It reads bytes, not a file, so
// that the document may come from anywhere.
func Load(name string, data []byte) (*Policy, error) {
	var spec Spec
	doc, err := yamlcheck.Decode(name, data, &spec)
	if err != nil {
		return nil, err
	}
	p, cerr := Compile(spec)
	if err := doc.Check(cerr); err != nil {
		return nil, err
	}
	return p, nil
}
