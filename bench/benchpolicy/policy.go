// Package benchpolicy writes the policy of make bench's policy row, so that
// the benchmark and the tests that measure the policy stage use the same one.
package benchpolicy

import (
	"fmt"
	"io"
	"strings"
)

// Write writes a policy document of n rules for the policy row: rules
// over every match dimension (sources, client ids, name prefixes and
// suffixes, qtypes, listeners, tags) with routes and the three kinds of
// split, none of which the benchmark's queries match, and a last rule that
// every benchmark query from loopback matches, a percent split between
// the groups default and canary, so that each query pays for a decision
// and a split. Every rule is distinct, so none is shadowed.
func Write(w io.Writer, n int) error {
	if n < 1 {
		return fmt.Errorf("policy: want at least 1 rule, got %d", n)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version: \"bench-%d\"\nrules:\n", n)
	groups := [2]string{"default", "canary"}
	for i := range n - 1 {
		fmt.Fprintf(&b, "  - name: r%d\n    match: {", i)
		switch i % 7 {
		case 0:
			fmt.Fprintf(&b, "source: [10.%d.%d.0/24]", i/256%256, i%256)
		case 1:
			fmt.Fprintf(&b, "client_id: [client-%d]", i)
		case 2:
			fmt.Fprintf(&b, "qname_prefix: [\"svc-%d.\"]", i)
		case 3:
			fmt.Fprintf(&b, "qname_suffix: [zone-%d.example], qtype: [A, AAAA]", i)
		case 4:
			fmt.Fprintf(&b, "source: [\"2001:db8:%x::/48\"], listener: [doh]", i)
		case 5:
			fmt.Fprintf(&b, "tags: [\"team=t%d\"]", i)
		case 6:
			fmt.Fprintf(&b, "qname_suffix: [corp-%d.example], client_id: [c-%d]", i, i)
		}
		b.WriteString("}\n")
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, "    split: {percent: %d, canary: canary, base: default}\n", i%100)
		case 1:
			fmt.Fprintf(&b, "    split: {weights: {default: %d, canary: %d}}\n", i%9+1, i%5+1)
		case 2:
			fmt.Fprintf(&b, "    split: {whitelist: {client_id: [vip-%d]}, canary: canary, base: default}\n", i)
		case 3:
			fmt.Fprintf(&b, "    route: %s\n    tags: [\"rule=r%d\"]\n", groups[i%2], i)
		case 4:
			fmt.Fprintf(&b, "    answer: {rcode: NXDOMAIN}\n")
		}
	}
	b.WriteString("  - name: loopback-half\n    match: {source: [127.0.0.0/8]}\n    split: {percent: 50, canary: canary, base: default}\n")
	_, err := io.WriteString(w, b.String())
	return err
}
