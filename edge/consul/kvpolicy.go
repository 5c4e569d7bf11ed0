package consul

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/dnsedge/dnsedge/internal/yamlcheck"
	"github.com/dnsedge/dnsedge/policy"
)

// Keys of a policy version under the prefix: PREFIX + ActiveKey names
// the version in force; PREFIX + VERSION + "/" + RouteKey and WeightKey
// hold it.
const (
	ActiveKey = "active"
	RouteKey  = "route"
	WeightKey = "weight"
)

// versionName is what a version may be called: one key segment.
var versionName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// CheckVersion reports whether v can name a version.
func CheckVersion(v string) error {
	if !versionName.MatchString(v) {
		return fmt.Errorf("version %q: use letters, digits, '.', '_' and '-' (first a letter or digit), at most 128", v)
	}
	if v == ActiveKey {
		return fmt.Errorf("version %q is the name of the active key", v)
	}
	return nil
}

// WeightSpec is the document of a version's weight key: the splits of
// the rules of its route key, by rule name, each in the schema of a
// rule's split in a policy file.
type WeightSpec struct {
	Splits map[string]policy.SplitSpec `yaml:"splits"`
}

// LoadVersion decodes and compiles a version kept in KV: route, the
// document of key routeKey, is a policy document (the schema of a policy
// file: version, sticky, rules), and weight, the document of key
// weightKey (nil when the key is absent), gives the rules their splits
// (WeightSpec). Both are YAML or JSON. The policy's version is the
// version's name; a route document that names another is refused. Every
// problem is reported in one *yamlcheck.Error as "key:line:col: path:
// message", the problems of a split at the weight key.
func LoadVersion(version, routeKey string, route []byte, weightKey string, weight []byte) (*policy.Policy, error) {
	var spec policy.Spec
	rdoc, err := yamlcheck.Decode(routeKey, route, &spec)
	if err != nil {
		return nil, err
	}
	var ws WeightSpec
	var wdoc *yamlcheck.Doc
	if weight != nil {
		if wdoc, err = yamlcheck.Decode(weightKey, weight, &ws); err != nil {
			return nil, joinDocErrors(rdoc.Check(nil), err)
		}
	}
	var rerrs, werrs []error
	if spec.Version == "" {
		spec.Version = version
	} else if spec.Version != version {
		rerrs = append(rerrs, field.Errorf("version", "%q differs from the version's key %q", spec.Version, version))
	}
	// from maps the index of a rule whose split comes from the weight
	// document to the split's name.
	from := make(map[int]string)
	for name, sp := range ws.Splits {
		i := ruleIndex(spec.Rules, name)
		at := field.Join("splits", name)
		switch {
		case i < 0:
			werrs = append(werrs, field.Errorf(at, "no rule named %q in %s", name, routeKey))
		case spec.Rules[i].Split != nil:
			werrs = append(werrs, field.Errorf(at, "rule %q already has a split in %s", name, routeKey))
		default:
			sp := sp
			spec.Rules[i].Split = &sp
			from[i] = name
		}
	}
	for _, e := range field.Flatten(compileErr(spec)) {
		var fe *field.Error
		if errors.As(e, &fe) {
			if i, rest, ok := splitPath(fe.Path); ok {
				if name, mine := from[i]; mine {
					werrs = append(werrs, field.Wrap(field.Join(field.Join("splits", name), rest), fe.Err))
					continue
				}
			}
		}
		rerrs = append(rerrs, e)
	}
	if err := joinDocErrors(rdoc.Check(errors.Join(rerrs...)), wdoc.Check(errors.Join(werrs...))); err != nil {
		return nil, err
	}
	return policy.Compile(spec)
}

func compileErr(spec policy.Spec) error {
	_, err := policy.Compile(spec)
	return err
}

func ruleIndex(rules []policy.RuleSpec, name string) int {
	for i, r := range rules {
		if r.Name == name {
			return i
		}
	}
	return -1
}

// splitPath parses "rules[I].split…" into I and what follows "split".
func splitPath(p string) (int, string, bool) {
	var i int
	var rest string
	if _, err := fmt.Sscanf(p, "rules[%d]", &i); err != nil {
		return 0, "", false
	}
	head := fmt.Sprintf("rules[%d].split", i)
	if p != head && !strings.HasPrefix(p, head+".") && !strings.HasPrefix(p, head+"[") {
		return 0, "", false
	}
	rest = strings.TrimPrefix(strings.TrimPrefix(p, head), ".")
	return i, rest, true
}

// joinDocErrors joins the *yamlcheck.Error of several documents into
// one, sorted by document then line.
func joinDocErrors(errs ...error) error {
	var all []yamlcheck.Problem
	for _, err := range errs {
		if err == nil {
			continue
		}
		var ye *yamlcheck.Error
		if errors.As(err, &ye) {
			all = append(all, ye.Problems...)
			continue
		}
		all = append(all, yamlcheck.Problem{Msg: err.Error()})
	}
	if len(all) == 0 {
		return nil
	}
	return &yamlcheck.Error{Problems: all}
}
