package drill

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/dnsedge/dnsedge/transport"
)

// Request is the body of POST /admin/v1/drills.
type Request struct {
	Target TargetRequest `json:"target"`
	Fault  FaultRequest  `json:"fault"`
	// Duration is how long the drill runs (Go syntax: "90s", "5m"); the
	// section's default_duration when empty, at most its max_duration.
	Duration string `json:"duration,omitempty"`
}

// TargetRequest picks paths: every path of Upstream that matches the
// filters given.
type TargetRequest struct {
	Upstream string `json:"upstream"`
	// Address is a path's IP address, or ip:port.
	Address string `json:"address,omitempty"`
	// Family is v4 or v6 (ipv4, ipv6 are taken too).
	Family string `json:"family,omitempty"`
	// Protocol is a path's protocol: udp, tcp (the TCP side of a UDP
	// upstream, or a tcp:// one), tls, https or quic.
	Protocol string `json:"protocol,omitempty"`
}

// FaultRequest is the fault: type drop, delay (with delay), loss (with
// percent), servfail or truncate.
type FaultRequest struct {
	Type    string   `json:"type"`
	Delay   string   `json:"delay,omitempty"`
	Percent *float64 `json:"percent,omitempty"`
}

// Target is a parsed TargetRequest; zero fields match any path.
type Target struct {
	Upstream string
	Addr     netip.Addr
	Port     uint16
	Family   transport.Family
	Proto    string
}

// Matches reports whether the path id of family fam is one of t's.
func (t Target) Matches(id transport.PathID, fam transport.Family) bool {
	switch {
	case id.Upstream != t.Upstream:
		return false
	case t.Addr.IsValid() && id.Addr.Addr() != t.Addr:
		return false
	case t.Port != 0 && id.Addr.Port() != t.Port:
		return false
	case t.Family != 0 && fam != t.Family:
		return false
	case t.Proto != "" && id.Proto != t.Proto:
		return false
	}
	return true
}

// Spec is a parsed, valid drill request.
type Spec struct {
	Target   Target
	Fault    transport.Fault
	Duration time.Duration
}

// Limits on a request's values.
const (
	// MaxDelay bounds a delay fault: beyond every path's timeout, a
	// longer delay is a drop.
	MaxDelay = time.Minute
	// maxBody bounds a request body.
	maxBody = 64 << 10
)

var protocols = []string{"udp", "tcp", "tls", "https", "quic"}

// ParseRequest reads a drill request from body and checks it against cfg
// (defaults filled in). Every problem is reported, each a *field.Error
// whose path is the JSON path of the part at fault ("fault.percent",
// "target.family", "body").
func ParseRequest(body []byte, cfg Config) (Spec, error) {
	var r Request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Spec{}, decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Spec{}, field.Errorf("body", "one JSON object expected, more follows it")
	}
	var s Spec
	var errs []error
	t := r.Target
	s.Target.Upstream = t.Upstream
	if t.Upstream == "" {
		errs = append(errs, field.Errorf("target.upstream", "required: the name of an upstream"))
	}
	if t.Address != "" {
		if ap, err := netip.ParseAddrPort(t.Address); err == nil {
			s.Target.Addr, s.Target.Port = ap.Addr().Unmap(), ap.Port()
		} else if a, err := netip.ParseAddr(t.Address); err == nil && a.Zone() == "" {
			s.Target.Addr = a.Unmap()
		} else {
			errs = append(errs, field.Errorf("target.address", "%q is not an IP address or ip:port", t.Address))
		}
	}
	switch strings.ToLower(t.Family) {
	case "":
	case "v4", "ipv4", "4":
		s.Target.Family = transport.IPv4
	case "v6", "ipv6", "6":
		s.Target.Family = transport.IPv6
	default:
		errs = append(errs, field.Errorf("target.family", "%q is not a family: v4 or v6", t.Family))
	}
	if s.Target.Addr.IsValid() && s.Target.Family != 0 && transport.FamilyOf(s.Target.Addr) != s.Target.Family {
		errs = append(errs, field.Errorf("target.family", "address %s is not %s", s.Target.Addr, s.Target.Family))
	}
	if t.Protocol != "" {
		p := strings.ToLower(t.Protocol)
		if !slices.Contains(protocols, p) {
			errs = append(errs, field.Errorf("target.protocol", "%q is not a protocol: one of %s", t.Protocol, strings.Join(protocols, ", ")))
		}
		s.Target.Proto = p
	}
	errs = append(errs, parseFault(r.Fault, &s)...)
	s.Duration = cfg.DefaultDuration
	if r.Duration != "" {
		d, err := time.ParseDuration(r.Duration)
		switch {
		case err != nil:
			errs = append(errs, field.Errorf("duration", "%q is not a duration (90s, 5m)", r.Duration))
		case d <= 0:
			errs = append(errs, field.Errorf("duration", "%v must be positive", d))
		case d > cfg.MaxDuration:
			errs = append(errs, field.Errorf("duration", "%v is more than drills.max_duration %v", d, cfg.MaxDuration))
		default:
			s.Duration = d
		}
	}
	if len(errs) > 0 {
		return Spec{}, errors.Join(errs...)
	}
	return s, nil
}

func parseFault(f FaultRequest, s *Spec) []error {
	var errs []error
	kind, ok := transport.ParseFaultKind(strings.ToLower(f.Type))
	switch {
	case f.Type == "":
		return []error{field.Errorf("fault.type", "required: drop, delay, loss, servfail or truncate")}
	case !ok:
		return []error{field.Errorf("fault.type", "%q is not a fault: drop, delay, loss, servfail or truncate", f.Type)}
	}
	s.Fault.Kind = kind
	if kind == transport.FaultDelay {
		d, err := time.ParseDuration(f.Delay)
		switch {
		case f.Delay == "":
			errs = append(errs, field.Errorf("fault.delay", "required with type delay (150ms)"))
		case err != nil:
			errs = append(errs, field.Errorf("fault.delay", "%q is not a duration (150ms)", f.Delay))
		case d <= 0 || d > MaxDelay:
			errs = append(errs, field.Errorf("fault.delay", "%v must be more than 0 and at most %v", d, MaxDelay))
		default:
			s.Fault.Delay = d
		}
	} else if f.Delay != "" {
		errs = append(errs, field.Errorf("fault.delay", "only a delay fault takes a delay"))
	}
	if kind == transport.FaultLoss {
		switch p := f.Percent; {
		case p == nil:
			errs = append(errs, field.Errorf("fault.percent", "required with type loss (30)"))
		case math.IsNaN(*p) || *p <= 0 || *p > 100:
			errs = append(errs, field.Errorf("fault.percent", "%v must be more than 0 and at most 100", *p))
		default:
			s.Fault.Percent = *p
		}
	} else if f.Percent != nil {
		errs = append(errs, field.Errorf("fault.percent", "only a loss fault takes a percent"))
	}
	if kind == transport.FaultTruncate && s.Target.Proto != "" && s.Target.Proto != "udp" {
		errs = append(errs, field.Errorf("target.protocol", "truncate acts on UDP paths only (their answer is retried over TCP), not %s", s.Target.Proto))
	}
	return errs
}

// decodeError places a JSON decoding error at the field it is about.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return field.Errorf(te.Field, "%s expected, not a JSON %s", te.Type, te.Value)
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return field.Errorf("body", "unknown field %s", strings.TrimPrefix(msg, "json: unknown field "))
	}
	return field.Errorf("body", "not a JSON drill request: %v", err)
}

// String describes t as the audit log and errors show it.
func (t Target) String() string {
	var b strings.Builder
	b.WriteString("upstream " + t.Upstream)
	if t.Addr.IsValid() {
		fmt.Fprintf(&b, " address %s", t.Addr)
		if t.Port != 0 {
			fmt.Fprintf(&b, " port %d", t.Port)
		}
	}
	if t.Family != 0 {
		b.WriteString(" family " + t.Family.String())
	}
	if t.Proto != "" {
		b.WriteString(" protocol " + t.Proto)
	}
	return b.String()
}
