package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/miekg/dns"
)

// Bounds of a tag option's data.
const (
	// MaxTags is the most tags a query carries.
	MaxTags = 16
	// MaxTagData is the longest tag option data, in bytes.
	MaxTagData = 512
)

// ParseTags reads the data of a tag option: tags of the form
// "key=value", joined with commas ("env=prod,stage=canary"). A key is
// letters, digits, '-', '_' and '.'; a value is printable ASCII other than
// ',' and may be empty. At most MaxTags tags and MaxTagData bytes. It
// returns why the data is not that, and then no tags.
func ParseTags(data []byte) ([]string, error) {
	if len(data) == 0 {
		return nil, errors.New("empty tag option")
	}
	if len(data) > MaxTagData {
		return nil, fmt.Errorf("tag option of %d bytes is over %d", len(data), MaxTagData)
	}
	var tags []string
	start := 0
	for i := 0; i <= len(data); i++ {
		if i < len(data) && data[i] != ',' {
			continue
		}
		t := data[start:i]
		if err := checkTag(t); err != nil {
			return nil, err
		}
		if len(tags) == MaxTags {
			return nil, fmt.Errorf("more than %d tags", MaxTags)
		}
		tags = append(tags, string(t))
		start = i + 1
	}
	return tags, nil
}

// CheckTag reports why t cannot be a tag, nil when it can.
func CheckTag(t string) error { return checkTag([]byte(t)) }

func checkTag(t []byte) error {
	eq := -1
	for i, c := range t {
		if c == '=' {
			eq = i
			break
		}
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("tag %q: key holds %q", t, c)
		}
	}
	if eq <= 0 {
		return fmt.Errorf("tag %q is not key=value", t)
	}
	for _, c := range t[eq+1:] {
		if c < 0x20 || c > 0x7e || c == ',' {
			return fmt.Errorf("tag %q: value holds %q", t, c)
		}
	}
	return nil
}

// appendTagData appends the data of a tag option carrying tags.
func appendTagData(dst []byte, tags []string) []byte {
	n := len(tags) - 1
	for _, t := range tags {
		n += len(t)
	}
	dst = slices.Grow(dst, n)
	for i, t := range tags {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, t...)
	}
	return dst
}

// Tags takes the tag options of trusted clients into req.Tags. Nobody's
// tag option goes upstream as sent: the forward handler builds its own
// from req.Tags, so an untrusted client's is dropped there.
//
// A Tags is safe for concurrent use.
type Tags struct {
	code     uint16
	prefixes []netip.Prefix
	ids      map[string]bool
}

// NewTags returns the stage for cfg, which must have passed Validate.
func NewTags(cfg TagsConfig) (*Tags, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Tags{code: uint16(cfg.OptionCode), ids: make(map[string]bool)}
	for _, s := range cfg.Trusted {
		p, id, _ := parseTrusted(s)
		if id != "" {
			t.ids[id] = true
		} else {
			t.prefixes = append(t.prefixes, p)
		}
	}
	return t, nil
}

// Trusted reports whether req's client may tag its queries.
func (t *Tags) Trusted(req *pipeline.Request) bool {
	if req.ClientID != "" && t.ids[req.ClientID] {
		return true
	}
	a := req.Client.Addr().Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Middleware merges a trusted client's tags into req.Tags, after those
// already there; a malformed tag option adds nothing.
func (t *Tags) Middleware(next pipeline.Handler) pipeline.Handler {
	if len(t.prefixes) == 0 && len(t.ids) == 0 {
		return next
	}
	return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		opt := req.Msg.IsEdns0()
		if opt == nil || !t.Trusted(req) {
			return next.ServeDNS(ctx, req)
		}
		for _, o := range opt.Option {
			lo, ok := o.(*dns.EDNS0_LOCAL)
			if !ok || lo.Code != t.code {
				continue
			}
			if tags, err := ParseTags(lo.Data); err == nil {
				req.Tags = mergeTags(req.Tags, tags)
			}
			break
		}
		return next.ServeDNS(ctx, req)
	})
}

// mergeTags returns have with the tags of add it lacks, at most MaxTags
// in all, in a new slice (have may be shared).
func mergeTags(have, add []string) []string {
	out := make([]string, len(have), max(len(have), min(len(have)+len(add), MaxTags)))
	copy(out, have)
outer:
	for _, a := range add {
		if len(out) == MaxTags {
			break
		}
		for _, h := range out {
			if h == a {
				continue outer
			}
		}
		out = append(out, a)
	}
	return out
}
