package edge

import (
	"fmt"
	"strings"
)

// summarizeAdmin shows the admin and records sections when the file has
// an admin section, for the golden configuration tests.
func summarizeAdmin(c *Config) string {
	a := c.Admin
	if a == nil {
		return ""
	}
	var ids []string
	for _, t := range a.Tokens {
		ids = append(ids, fmt.Sprintf("%s:%s:%s", t.ID, t.Access, strings.Join(t.Zones, "+")))
	}
	for _, g := range a.Clients {
		ids = append(ids, fmt.Sprintf("cert %s:%s:%s", g.ID, g.Access, strings.Join(g.Zones, "+")))
	}
	r := c.Records
	out := fmt.Sprintf(", admin %s tls %v grants [%s], api zones %v, records max_body %d max_ttl %d compact_after %d",
		a.Address, a.TLS != nil, strings.Join(ids, " "), c.Zone.APIOrigins(), r.MaxBodyBytes, r.MaxTTL, r.CompactAfter)
	if w := r.Webhook; w != nil {
		out += fmt.Sprintf(", webhook %s as %s default_ttl %d", w.Address, w.Grant, w.DefaultTTL)
	}
	return out
}
