// Package consulstore keeps the records API's zones in Consul KV (the
// store of `records.store: consul`), so that every instance pointed at
// the same agent and prefix serves the same zones: one key per zone holds
// the whole zone, a commit is a check-and-set on that key's ModifyIndex,
// and every instance follows the prefix with blocking queries and hands
// the changes other instances made to its records.Manager.
package consulstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/records"
)

// Format is the version of the value layout; a value of another version
// is refused, never guessed at.
const Format = 1

// value is what a zone's key holds: the layout version, the zone as a
// whole, and who made its last change and when (for readers of the KV;
// the audit line stays with the instance that made it).
type value struct {
	Format int              `json:"format"`
	Zone   records.Snapshot `json:"zone"`
	Last   *lastChange      `json:"last,omitempty"`
}

type lastChange struct {
	By     string `json:"by"`
	Time   string `json:"time"`
	Serial uint32 `json:"serial"`
}

// Key returns the key of the zone of origin (a canonical FQDN) under
// prefix: the origin without its final dot, "." for the root.
func Key(prefix, origin string) string {
	name := strings.TrimSuffix(origin, ".")
	if name == "" {
		name = "."
	}
	return prefix + name
}

// OriginOf returns the origin whose key under prefix is key, and false
// when key is not one (another key under the prefix, or a deeper one).
func OriginOf(prefix, key string) (string, bool) {
	name, ok := strings.CutPrefix(key, prefix)
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	if name == "." {
		return ".", true
	}
	if _, ok := dns.IsDomainName(name); !ok || strings.HasSuffix(name, ".") {
		return "", false
	}
	return dns.CanonicalName(name), true
}

// Encode returns the value of snap's key, with the entry e that made it
// (nil: none).
func Encode(snap records.Snapshot, e *records.Entry) ([]byte, error) {
	v := value{Format: Format, Zone: snap}
	if e != nil {
		v.Last = &lastChange{By: e.By, Time: e.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"), Serial: e.Serial}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode zone %s: %w", snap.Origin, err)
	}
	return b, nil
}

// Decode reads the value of the key of origin. The value must be of
// this Format, hold the zone of origin, and have a serial; the records
// are checked by the Manager when it takes the snapshot.
func Decode(origin string, b []byte) (records.Snapshot, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var v value
	if err := dec.Decode(&v); err != nil {
		return records.Snapshot{}, fmt.Errorf("zone %s: %w", origin, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return records.Snapshot{}, fmt.Errorf("zone %s: data after the JSON value", origin)
	}
	switch {
	case v.Format != Format:
		return records.Snapshot{}, fmt.Errorf("zone %s: format %d, want %d", origin, v.Format, Format)
	case v.Zone.Origin != origin:
		return records.Snapshot{}, fmt.Errorf("zone %s: the value holds zone %q", origin, v.Zone.Origin)
	case v.Zone.Seq == 0:
		return records.Snapshot{}, fmt.Errorf("zone %s: seq 0 (a zone is written only when changed)", origin)
	case v.Zone.Serial == 0:
		return records.Snapshot{}, fmt.Errorf("zone %s: serial 0", origin)
	}
	for i, set := range v.Zone.RRsets {
		if set.Name == "" || set.Type == "" {
			return records.Snapshot{}, fmt.Errorf("zone %s: rrsets[%d]: no name or type", origin, i)
		}
	}
	return v.Zone, nil
}
