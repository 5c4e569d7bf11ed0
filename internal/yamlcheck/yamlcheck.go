// Package yamlcheck decodes a YAML document into a struct strictly and
// reports every problem of it the way dnsedge's configuration does:
// "file:line:col: path: message", in the words of the file. Values of the
// wrong type and unknown keys are found by walking the node tree against
// the type before decoding (see CheckTree); the problems a section's
// Validate returns as internal/field errors are placed at the line and
// column of the field they name.
//
// Both the configuration file (package edge) and stand-alone policy
// documents (package policy) use it, so that the same mistake reads the
// same wherever it is made.
package yamlcheck

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/dnsedge/dnsedge/internal/field"
	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a document, with where it is, or with
// Warning set, one thing that is allowed but probably not meant.
type Problem struct {
	File      string
	Line, Col int
	Msg       string
	Warning   bool
}

// String returns "file:line:col: message", with "warning: " before the
// message of a warning.
func (p Problem) String() string {
	msg := p.Msg
	if p.Warning {
		msg = "warning: " + msg
	}
	if p.Line == 0 {
		return fmt.Sprintf("%s: %s", p.File, msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, msg)
}

// Error lists every problem found in a document.
type Error struct{ Problems []Problem }

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Doc is what Decode learned of a document: where each field is, and
// which values it had to leave out. A nil *Doc places nothing.
type Doc struct {
	name string
	pos  positions
	// Problems are the values of the wrong type and the unknown keys.
	Problems []Problem
	// dropped are the paths of the values left out, whose validation
	// problems would only repeat the type problem.
	dropped []string
}

// Decode decodes data into v, a pointer to a struct whose fields have
// yaml tags. Values of the wrong type and unknown keys are left out of the
// decoding and listed in Doc.Problems; the error, an *Error, is for a
// document that cannot be decoded at all (not YAML, an alias bomb). An
// empty document leaves v alone.
func Decode(name string, data []byte, v any) (*Doc, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &Error{Problems: yamlProblems(name, err)}
	}
	d := &Doc{name: name, pos: indexPositions(&root)}
	for _, p := range checkTree(&root, reflect.TypeOf(v)) {
		d.Problems = append(d.Problems, Problem{File: name, Line: p.line, Col: p.col, Msg: p.msg})
		if !p.keep {
			d.dropped = append(d.dropped, p.path)
		}
	}
	if root.Kind != 0 {
		if err := root.Decode(v); err != nil {
			// What checkTree let through and yaml.v3 refuses (an alias
			// bomb, say) is reported as yaml.v3 words it.
			return nil, &Error{Problems: Sort(append(d.Problems, yamlProblems(name, err)...))}
		}
	}
	return d, nil
}

// Name returns the name of the document, as given to Decode.
func (d *Doc) Name() string {
	if d == nil {
		return ""
	}
	return d.name
}

// Place returns the problems of err, a validation error whose parts are
// field errors (internal/field), each at the line and column of the field
// it names, or of its nearest ancestor present in the document.
func (d *Doc) Place(err error) []Problem {
	var ps []Problem
	for _, l := range d.locate(err) {
		ps = append(ps, l.Problem)
	}
	return ps
}

// Check returns every problem of the document as an *Error, sorted by
// line: Doc.Problems, then the problems of err (placed as by Place)
// except those at or below a value already reported as being of the wrong
// type. It returns nil when there is none.
func (d *Doc) Check(err error) error {
	var ps []Problem
	if d != nil {
		ps = append(ps, d.Problems...)
	}
	for _, l := range d.locate(err) {
		if d == nil || !underAny(l.path, d.dropped) {
			ps = append(ps, l.Problem)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	return &Error{Problems: Sort(ps)}
}

// underAny reports whether path is one of paths or below one of them.
func underAny(path string, paths []string) bool {
	for _, p := range paths {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return false
}

// Sort orders problems by line and column; problems without a position
// come first, in the order found.
func Sort(ps []Problem) []Problem {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	return ps
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlProblems turns a YAML decoding error into problems with lines.
func yamlProblems(name string, err error) []Problem {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var ps []Problem
	for _, m := range msgs {
		p := Problem{File: name, Msg: m}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			p.Line, _ = strconv.Atoi(sm[1])
			p.Col, p.Msg = 1, sm[2]
		}
		ps = append(ps, p)
	}
	return ps
}

// positions maps a field path ("upstreams[2].url") to where it is.
type positions map[string][2]int

func indexPositions(root *yaml.Node) positions {
	pos := make(positions)
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
			return
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if _, dup := pos[p]; dup {
					continue // a key set twice: the first counts
				}
				pos[p] = [2]int{v.Line, v.Column}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				pos[p] = [2]int{c.Line, c.Column}
				walk(c, p)
			}
		}
	}
	walk(root, "")
	return pos
}

// lookup finds the position of path or of its nearest ancestor.
func (p positions) lookup(path string) (int, int) {
	for path != "" {
		if lc, ok := p[path]; ok {
			return lc[0], lc[1]
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0, 0
}

// located is a validation problem and the field path it was placed by.
type located struct {
	Problem
	path string
}

// locate turns validation errors into problems, placing every error that
// names its field.
func (d *Doc) locate(err error) []located {
	var pos positions
	if d != nil {
		pos = d.pos
	}
	flat := field.Flatten(err)
	ps := make([]located, 0, len(flat))
	for _, e := range flat {
		p := located{Problem: Problem{File: d.Name(), Msg: e.Error()}}
		var fe interface{ FieldPath() string }
		if errors.As(e, &fe) {
			p.path = fe.FieldPath()
			p.Line, p.Col = pos.lookup(p.path)
		}
		ps = append(ps, p)
	}
	return ps
}
