package canary

import (
	"slices"

	"github.com/miekg/dns"
)

// Decision is the outcome of a policy for one query, as far as the canary
// compares it: the rule that matched, the group the query goes to (the
// route, or the side of a split), the tags added, the ECS action, whether
// an ANY query is let through, and the local answer, if any.
type Decision struct {
	Rule     string   `json:"rule"`
	Route    string   `json:"route"`
	Tags     []string `json:"tags,omitempty"`
	ECS      string   `json:"ecs,omitempty"`
	AllowANY bool     `json:"allow_any,omitempty"`
	// Answer is the policy's local answer; nil when it forwards.
	Answer *dns.Msg `json:"-"`
}

// Compare returns the names of the parts of b that differ from a: rule,
// route, tags (as sets), ecs, allow_any, answer (structurally, see
// Compare); nil when they agree.
func (a Decision) Compare(b Decision) []string {
	var out []string
	if a.Rule != b.Rule {
		out = append(out, "rule")
	}
	if a.Route != b.Route {
		out = append(out, "route")
	}
	if !sameSet(a.Tags, b.Tags) {
		out = append(out, "tags")
	}
	if a.ECS != b.ECS {
		out = append(out, "ecs")
	}
	if a.AllowANY != b.AllowANY {
		out = append(out, "allow_any")
	}
	if (a.Answer == nil) != (b.Answer == nil) || (a.Answer != nil && Compare(a.Answer, b.Answer) != 0) {
		out = append(out, "answer")
	}
	return out
}

func sameSet(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}
