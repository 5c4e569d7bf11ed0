package policy

// Spec is a policy as written: the policy: section of the configuration
// file, or a document of its own given to Load (the same schema, so that
// it can also come from a key-value store, see edge/consul). Decode it
// strictly (yaml.v3 with these tags, as internal/yamlcheck does); Compile
// checks it.
type Spec struct {
	// Version identifies the policy in metrics and query logs; free
	// text, required when there are rules.
	Version string `yaml:"version"`
	// Sticky is what keeps a client on its side of percent and weight
	// splits: client_id (the default; the source address for clients
	// without one), source, or ecs (the ECS subnet, else the source
	// address).
	Sticky string `yaml:"sticky"`
	// Rules are tried most specific first (see Policy); the first that
	// matches decides.
	Rules []RuleSpec `yaml:"rules"`
}

// Sticky keys.
const (
	StickyClientID = "client_id"
	StickySource   = "source"
	StickyECS      = "ecs"
)

// RuleSpec is one rule: what it matches and what it does. A rule needs at
// least one action: route, split, tags, ecs, answer, allow_any or require_tsig.
type RuleSpec struct {
	// Name names the rule in logs, metrics and errors; default
	// "rules[i]". Names are unique.
	Name  string    `yaml:"name"`
	Match MatchSpec `yaml:"match"`
	// Route sends the query to this upstream group.
	Route string `yaml:"route"`
	// Split chooses the upstream group per client; not with Route.
	Split *SplitSpec `yaml:"split"`
	// Tags are added to the request's tags.
	Tags []string `yaml:"tags"`
	// ECS is what to do with the EDNS Client Subnet option (RFC 7871)
	// of the forwarded query.
	ECS *ECSSpec `yaml:"ecs"`
	// Answer answers locally; not with Route or Split.
	Answer *AnswerSpec `yaml:"answer"`
	// AllowANY forwards ANY queries as asked instead of answering them
	// with the RFC 8482 minimal response.
	AllowANY bool `yaml:"allow_any"`
	// RequireTSIG refuses the matching queries unless they are signed
	// with a key dnsedge holds and verifies (RFC 8945).
	RequireTSIG bool `yaml:"require_tsig"`
}

// MatchSpec is what a rule matches. Within one key the values are
// alternatives (any of them matches); across keys all must match. An
// empty MatchSpec matches every query.
type MatchSpec struct {
	// Source lists networks (CIDR, or an address alone) of the client.
	Source []string `yaml:"source"`
	// ECS lists networks that must contain the query's ECS subnet; a
	// query without ECS does not match.
	ECS []string `yaml:"ecs"`
	// ClientID lists client ids (DoH path, DoT/DoQ SNI label), exactly.
	ClientID []string `yaml:"client_id"`
	// QNamePrefix lists beginnings of the query name, case-insensitive:
	// "api-v2." matches api-v2.example.com, "staging-" matches
	// staging-db.corp. A trailing "*" is allowed and means nothing more
	// ("api-v2.*").
	QNamePrefix []string `yaml:"qname_prefix"`
	// QNameSuffix lists domains: the name itself and every name below
	// it match.
	QNameSuffix []string `yaml:"qname_suffix"`
	// QType lists query types by name (A, AAAA, HTTPS, TYPE65).
	QType []string `yaml:"qtype"`
	// Listener lists listener kinds: udp, tcp, dot, doh, doq.
	Listener []string `yaml:"listener"`
	// Tags lists tags of the request (set by the client or by earlier
	// stages), as "key=value" or a bare word.
	Tags []string `yaml:"tags"`
}

// SplitSpec divides the clients of a rule between upstream groups, in one
// of three modes: Percent (of clients to Canary, the rest to Base),
// Weights (across several groups), or Whitelist (the listed clients to
// Canary, the rest to Base). Percent and weight splits are sticky: a
// client lands on the side a keyed hash of its sticky key gives, with the
// key taken from Seed, so every instance that runs the same policy puts
// it on the same side, across reloads and version bumps.
type SplitSpec struct {
	// Percent of the clients, 0 to 100 in steps of 0.01, go to Canary.
	Percent *float64 `yaml:"percent"`
	// Weights maps group names to positive weights.
	Weights   map[string]int `yaml:"weights"`
	Whitelist *WhitelistSpec `yaml:"whitelist"`
	Canary    string         `yaml:"canary"`
	Base      string         `yaml:"base"`
	// Seed keys the hash; default the rule's name. Change it to deal the
	// clients anew. A percent or weight split needs a rule name or a
	// seed, so that adding a rule before it does not move clients.
	Seed string `yaml:"seed"`
}

// WhitelistSpec lists the clients a whitelist split sends to the canary.
type WhitelistSpec struct {
	ClientID []string `yaml:"client_id"`
	Source   []string `yaml:"source"`
}

// ECSSpec is an ECS decision as written.
type ECSSpec struct {
	// Mode: pass (forward the client's option as it is), strip (remove
	// it), add (send the source address cut to V4Bits/V6Bits when the
	// client sent none), replace (send Prefix, or the source address cut
	// to V4Bits/V6Bits when Prefix is empty, in place of the client's).
	Mode string `yaml:"mode"`
	// V4Bits and V6Bits: default 24 and 56 (RFC 7871 §11.1).
	V4Bits *int   `yaml:"v4_bits"`
	V6Bits *int   `yaml:"v6_bits"`
	Prefix string `yaml:"prefix"`
}

// AnswerSpec answers locally: Rcode alone (NXDOMAIN, NODATA, REFUSED), or
// Records, in zone file syntax with absolute names, answered with
// NOERROR.
type AnswerSpec struct {
	Rcode   string   `yaml:"rcode"`
	Records []string `yaml:"records"`
}
