package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Errors of Authenticate: both mean 401.
var (
	ErrNoCredentials  = errors.New("no credentials: send Authorization: Bearer <token> or a client certificate")
	ErrBadCredentials = errors.New("credentials not accepted")
)

// Principal is an authenticated caller and what it may do. It is
// immutable and safe for concurrent use.
type Principal struct {
	ID      string
	zones   []string // canonical origins
	all     bool
	write   bool
	operate bool
}

// Allows reports whether p may read (write false) or change (write true)
// the zone of the canonical origin zone.
func (p *Principal) Allows(zone string, write bool) bool {
	if write && !p.write {
		return false
	}
	return p.all || slices.Contains(p.zones, zone)
}

// Zones returns the canonical origins p may reach, nil when it may reach
// every zone (see All).
func (p *Principal) Zones() []string { return slices.Clone(p.zones) }

// All reports whether p may reach every zone.
func (p *Principal) All() bool { return p.all }

// CanWrite reports whether p's access is write (or admin).
func (p *Principal) CanWrite() bool { return p.write }

// CanOperate reports whether p's access is admin: it may operate the
// server (canary, rollback, drills), whatever its zones.
func (p *Principal) CanOperate() bool { return p.operate }

func newPrincipal(g Grant) *Principal {
	p := &Principal{ID: g.ID, write: g.Access == AccessWrite || g.Access == AccessAdmin, operate: g.Access == AccessAdmin}
	for _, z := range g.Zones {
		if z == AllZones {
			p.all = true
			continue
		}
		p.zones = append(p.zones, strings.ToLower(dns.Fqdn(z)))
	}
	return p
}

// Auth tells who calls: a bearer token whose hash is configured, or a
// client certificate verified by the TLS layer whose common name is a
// configured client. It is immutable and safe for concurrent use.
type Auth struct {
	tokens  []tokenEntry
	clients map[string]*Principal
	byID    map[string]*Principal
}

type tokenEntry struct {
	sum [32]byte
	p   *Principal
}

// NewAuth returns the Auth of a validated section.
func NewAuth(c Config) *Auth {
	a := &Auth{clients: make(map[string]*Principal), byID: make(map[string]*Principal)}
	for _, t := range c.Tokens {
		var e tokenEntry
		if b, err := hex.DecodeString(t.SHA256); err == nil && len(b) == 32 {
			copy(e.sum[:], b)
		}
		e.p = newPrincipal(t.Grant)
		a.tokens = append(a.tokens, e)
		a.byID[t.ID] = e.p
	}
	for _, g := range c.Clients {
		p := newPrincipal(g)
		a.clients[g.ID] = p
		a.byID[g.ID] = p
	}
	return a
}

// Grant returns the principal of the token or client with id, nil when
// there is none.
func (a *Auth) Grant(id string) *Principal { return a.byID[id] }

// Authenticate returns the principal of r: the one of its bearer token
// when it sends an Authorization header, else the one of its verified
// client certificate. A request with neither gets ErrNoCredentials; an
// unknown token, a malformed header, or a verified certificate of no
// configured client gets ErrBadCredentials. Tokens are compared by hash,
// in constant time, against every configured one.
func (a *Auth) Authenticate(r *http.Request) (*Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return nil, ErrBadCredentials
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		var found *Principal
		for _, e := range a.tokens {
			if subtle.ConstantTimeCompare(sum[:], e.sum[:]) == 1 {
				found = e.p
			}
		}
		if found == nil {
			return nil, ErrBadCredentials
		}
		return found, nil
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		if p, ok := a.clients[r.TLS.VerifiedChains[0][0].Subject.CommonName]; ok {
			return p, nil
		}
		return nil, ErrBadCredentials
	}
	return nil, ErrNoCredentials
}
