package yamlcheck

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The YAML decoder stops at the first value of the wrong type and speaks
// of Go types ("cannot unmarshal !!str into time.Duration", "field x not
// found in type edge.Config", column 1). So before decoding, the node tree
// is walked against the type decoded into: every value of the wrong type and
// every unknown key is reported at its own line and column, in the words
// of the file, and then taken out of the tree (a wrong value becomes null,
// so list indexes stay put), so that what remains decodes and validates.
//
// This reflection serves error reporting only: decoding itself is still
// yaml.v3's, with the yaml tags of the section types.

// decodeProblem is a value of the wrong type or an unknown key.
type decodeProblem struct {
	path      string // the field path, as in field.Error
	line, col int
	msg       string // the whole message, path included where it helps
	// keep: the value at path was decoded all the same (a key set twice
	// keeps its first value), so its validation problems still count.
	keep bool
}

// maxWalk bounds the nodes one walk visits, aliases expanded, so that an
// alias bomb cannot make it run long; the decoder refuses such documents.
const maxWalk = 1 << 16

type walker struct {
	problems []decodeProblem
	drop     map[*yaml.Node]bool // values of the wrong type, unknown keys
	steps    int
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// CheckTree walks root against t and returns its problems, without a file
// name, dropping the nodes at fault from the tree (unknown keys leave
// their mapping, values of the wrong type become null), so that what
// remains decodes into t.
func CheckTree(root *yaml.Node, t reflect.Type) []Problem {
	var ps []Problem
	for _, p := range checkTree(root, t) {
		ps = append(ps, Problem{Line: p.line, Col: p.col, Msg: p.msg})
	}
	return ps
}

// checkTree is CheckTree with the field path of each problem.
func checkTree(root *yaml.Node, t reflect.Type) []decodeProblem {
	if root.Kind == 0 {
		return nil // an empty file
	}
	w := &walker{drop: make(map[*yaml.Node]bool)}
	w.walk(root, t, "")
	if len(w.drop) > 0 {
		w.prune(root, make(map[*yaml.Node]bool))
	}
	return w.problems
}

func (w *walker) add(n *yaml.Node, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	w.problems = append(w.problems, decodeProblem{path: path, line: n.Line, col: n.Column, msg: msg})
	w.drop[n] = true
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if w.steps++; w.steps > maxWalk {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			w.walk(c, t, path)
		}
		return
	case yaml.AliasNode:
		if n.Alias != nil {
			w.walk(n.Alias, t, path)
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // any field may be left empty
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(n, path, "%s", yamlMessage(err))
		}
		return
	}
	switch {
	case t == durationType:
		w.scalar(n, t, path, func(v string) string {
			return fmt.Sprintf("%q is not a duration (write it like 30s, 5m or 1h)", v)
		}, "a duration (like 30s, 5m or 1h)")
		return
	case t.Kind() == reflect.Struct:
		w.mapping(n, t, path)
		return
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		if n.Kind != yaml.SequenceNode {
			w.add(n, path, "expected a list, not %s", describe(n))
			return
		}
		for i, c := range n.Content {
			w.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
		return
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "expected a mapping (key: value), not %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			w.walk(k, t.Key(), path)
			w.walk(v, t.Elem(), joinPath(path, k.Value))
		}
		return
	case t.Kind() == reflect.Interface:
		return
	}
	switch t.Kind() {
	case reflect.Bool:
		w.scalar(n, t, path, func(v string) string { return fmt.Sprintf("expected true or false, not %q", v) }, "true or false")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" {
			// yaml.v3 would drop the fraction of 1.5 silently.
			if f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64); err != nil || f != math.Trunc(f) {
				w.add(n, path, "%q is not a whole number", n.Value)
				return
			}
		}
		w.scalar(n, t, path, func(v string) string {
			if i, ok := new(big.Int).SetString(strings.ReplaceAll(v, "_", ""), 0); ok {
				if i.Sign() < 0 && t.Kind() >= reflect.Uint {
					return fmt.Sprintf("%s must not be negative", v)
				}
				return fmt.Sprintf("%s is too large", v)
			}
			return fmt.Sprintf("%q is not a whole number", v)
		}, "a whole number")
	case reflect.Float32, reflect.Float64:
		w.scalar(n, t, path, func(v string) string { return fmt.Sprintf("%q is not a number", v) }, "a number")
	case reflect.String:
		w.scalar(n, t, path, func(v string) string { return fmt.Sprintf("%q is not text", v) }, "text")
	default:
		w.scalar(n, t, path, func(v string) string { return fmt.Sprintf("%q does not fit here", v) }, "a value")
	}
}

// scalar checks that n is a scalar that decodes into t. bad words the
// problem with a scalar, want names what is expected in place of a list
// or a mapping.
func (w *walker) scalar(n *yaml.Node, t reflect.Type, path string, bad func(string) string, want string) {
	if n.Kind != yaml.ScalarNode {
		w.add(n, path, "expected %s, not %s", want, describe(n))
		return
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		w.add(n, path, "%s", bad(n.Value))
	}
}

// mapping checks the keys of a mapping against the fields of struct t,
// inline structs included.
func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		w.add(n, path, "expected a mapping (key: value), not %s", describe(n))
		return
	}
	names, fields := yamlFields(t)
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			w.walk(v, mergeType(v, t), path)
			continue
		}
		f, ok := fields[k.Value]
		if !ok {
			w.unknownKey(k, path, names)
			w.drop[v] = true
			continue
		}
		if line, dup := seen[k.Value]; dup {
			w.add(k, joinPath(path, k.Value), "set twice (first at line %d)", line)
			w.problems[len(w.problems)-1].keep = true
			w.drop[v] = true
			continue
		}
		seen[k.Value] = k.Line
		w.walk(v, f, joinPath(path, k.Value))
	}
}

// mergeType is the type a merge key's value (<<: *anchor) is checked
// against: the mapping's own, or a list of it.
func mergeType(v *yaml.Node, t reflect.Type) reflect.Type {
	if v.Kind == yaml.SequenceNode {
		return reflect.SliceOf(t)
	}
	return t
}

func (w *walker) unknownKey(k *yaml.Node, path string, known []string) {
	where := "at the top level"
	if path != "" {
		where = "in " + path
	}
	if near := nearest(k.Value, known); near != "" {
		w.add(k, "", "unknown key %q %s: did you mean %q?", k.Value, where, near)
	} else {
		w.add(k, "", "unknown key %q %s (known: %s)", k.Value, where, strings.Join(known, ", "))
	}
	w.problems[len(w.problems)-1].path = joinPath(path, k.Value)
}

// prune takes the dropped nodes out of the tree: unknown keys and their
// values leave their mapping, wrong values become null.
func (w *walker) prune(n *yaml.Node, done map[*yaml.Node]bool) {
	if done[n] {
		return
	}
	done[n] = true
	switch n.Kind {
	case yaml.MappingNode:
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if w.drop[k] {
				continue
			}
			if w.drop[v] {
				v = nullNode(v)
			}
			kept = append(kept, k, v)
		}
		n.Content = kept
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if w.drop[c] {
				n.Content[i] = nullNode(c)
			}
		}
	}
	for _, c := range n.Content {
		w.prune(c, done)
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		w.prune(n.Alias, done)
	}
}

func nullNode(at *yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: at.Line, Column: at.Column}
}

// yamlFields returns the keys struct t accepts, in the order of its
// fields, and the type of each, with the fields of inline structs, as
// yaml.v3 maps them.
func yamlFields(t reflect.Type) (names []string, types map[string]reflect.Type) {
	types = make(map[string]reflect.Type)
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if slices.Contains(strings.Split(opts, ","), "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				in, inTypes := yamlFields(ft)
				names = append(names, in...)
				for k, v := range inTypes {
					types[k] = v
				}
				continue
			}
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		names = append(names, name)
		types[name] = f.Type
	}
	return names, types
}

// describe names what a node is, for "expected X, not Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping (key: value)"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return strconv.Quote(n.Value)
}

// yamlMessage returns a decoding error's message without yaml's prefixes.
func yamlMessage(err error) string {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	if sm := yamlLine.FindStringSubmatch(msg); sm != nil {
		msg = sm[2]
	}
	return strings.TrimPrefix(msg, "yaml: ")
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// nearest returns the known key within two edits of key, if exactly one
// is that close.
func nearest(key string, known []string) string {
	best, found := "", 0
	if len(key) > 64 {
		return ""
	}
	for _, k := range known {
		if editDistance(key, k) <= 2 {
			best, found = k, found+1
		}
	}
	if found != 1 {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
