package consul

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/consul/api"
)

// ErrActiveMoved is returned by Activate when the active key changed
// between reading and moving it.
var ErrActiveMoved = errors.New("the active key changed meanwhile; nothing was moved, try again")

// ErrVersionExists is returned by Push for a version already in KV:
// versions are never edited in place.
var ErrVersionExists = errors.New("version already exists; versions are never edited in place, push a new one")

// readVersionDir reads DIR/route and DIR/weight, each with no extension
// or .yaml, .yml or .json; route is required, weight optional (nil).
func readVersionDir(dir string) (route, weight []byte, routeFile, weightFile string, err error) {
	find := func(base string) (string, []byte, error) {
		var found []string
		for _, ext := range []string{"", ".yaml", ".yml", ".json"} {
			p := filepath.Join(dir, base+ext)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				found = append(found, p)
			}
		}
		switch len(found) {
		case 0:
			return "", nil, nil
		case 1:
			b, err := os.ReadFile(found[0])
			return found[0], b, err
		}
		return "", nil, fmt.Errorf("%s: found %s; keep one", dir, strings.Join(found, ", "))
	}
	routeFile, route, err = find(RouteKey)
	if err != nil {
		return nil, nil, "", "", err
	}
	if routeFile == "" {
		return nil, nil, "", "", fmt.Errorf("%s: no %s file (%s, %s.yaml, %s.yml or %s.json)", dir, RouteKey, RouteKey, RouteKey, RouteKey, RouteKey)
	}
	weightFile, weight, err = find(WeightKey)
	if err != nil {
		return nil, nil, "", "", err
	}
	return route, weight, routeFile, weightFile, nil
}

// Push validates the version in dir (files route and weight, see
// LoadVersion) as a watcher would, writes its keys under prefix in one
// Consul transaction that fails when any of them exists already
// (ErrVersionExists), then makes it the active version with Activate.
// Problems of the files are reported with file, line and field, and
// nothing is written.
func Push(ctx context.Context, client *api.Client, prefix, dir, version string) error {
	if err := CheckVersion(version); err != nil {
		return err
	}
	route, weight, routeFile, weightFile, err := readVersionDir(dir)
	if err != nil {
		return err
	}
	if _, err := LoadVersion(version, routeFile, route, weightFile, weight); err != nil {
		return fmt.Errorf("version %s is invalid; nothing was written:\n%w", version, err)
	}
	base := prefix + version + "/"
	docs := []struct {
		key  string
		data []byte
	}{{base + RouteKey, route}}
	if weight != nil {
		docs = append(docs, struct {
			key  string
			data []byte
		}{base + WeightKey, weight})
	}
	var ops api.TxnOps
	for _, d := range docs {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCheckNotExists, Key: d.key}})
	}
	for _, d := range docs {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: d.key, Value: d.data}})
	}
	ok, resp, _, err := client.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("write version %s: %w", version, err)
	}
	if !ok {
		for _, e := range resp.Errors {
			if e.OpIndex < len(docs) {
				return fmt.Errorf("write version %s: key %s: %w", version, docs[e.OpIndex].key, ErrVersionExists)
			}
		}
		var msgs []string
		for _, e := range resp.Errors {
			msgs = append(msgs, fmt.Sprintf("op %d: %s", e.OpIndex, e.What))
		}
		return fmt.Errorf("write version %s: transaction refused: %s", version, strings.Join(msgs, "; "))
	}
	return Activate(ctx, client, prefix, version)
}

// Activate makes version the active one: it checks that the version has
// its route key, then moves the active key with check-and-set on the
// index it read, so that two operators moving it at once cannot both
// win (ErrActiveMoved for the loser). Rolling back is activating an
// older version.
func Activate(ctx context.Context, client *api.Client, prefix, version string) error {
	if err := CheckVersion(version); err != nil {
		return err
	}
	kv := client.KV()
	q := (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx)
	if p, _, err := kv.Get(prefix+version+"/"+RouteKey, q); err != nil {
		return fmt.Errorf("read version %s: %w", version, err)
	} else if p == nil {
		return fmt.Errorf("version %s has no key %s; push it first", version, prefix+version+"/"+RouteKey)
	}
	key := prefix + ActiveKey
	cur, _, err := kv.Get(key, q)
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	var index uint64
	if cur != nil {
		index = cur.ModifyIndex
	}
	ok, _, err := kv.CAS(&api.KVPair{Key: key, Value: []byte(version), ModifyIndex: index}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("move %s to %s: %w", key, version, err)
	}
	if !ok {
		return fmt.Errorf("move %s to %s: %w", key, version, ErrActiveMoved)
	}
	return nil
}
