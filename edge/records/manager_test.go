package records_test

import (
	"errors"
	"testing"

	"github.com/dnsedge/dnsedge/edge/records"
	"github.com/dnsedge/dnsedge/edge/zone"
)

// fakeStore is a Store whose methods are function fields; an unset one
// fails the test.
type fakeStore struct {
	t      *testing.T
	load   func(origin string) (records.Snapshot, []records.Entry, error)
	commit func(origin string, e records.Entry, after func() records.Snapshot) error
}

func (f *fakeStore) Load(origin string) (records.Snapshot, []records.Entry, error) {
	if f.load == nil {
		f.t.Fatal("Load called")
	}
	return f.load(origin)
}

func (f *fakeStore) Commit(origin string, e records.Entry, after func() records.Snapshot) error {
	if f.commit == nil {
		f.t.Fatal("Commit called")
	}
	return f.commit(origin, e, after)
}

func (f *fakeStore) Close() error { return nil }

// TestCommitFailureChangesNothing: when the store cannot commit a change,
// Apply fails, the zone is as it was for GET and for the zone middleware,
// no watcher hears of it, and the next change gets the serial the failed
// one would have had.
func TestCommitFailureChangesNothing(t *testing.T) {
	fail := true
	var committed []records.Entry
	st := &fakeStore{t: t,
		load: func(string) (records.Snapshot, []records.Entry, error) { return records.Snapshot{}, nil, nil },
		commit: func(_ string, e records.Entry, _ func() records.Snapshot) error {
			if fail {
				return errors.New("disk full")
			}
			committed = append(committed, e)
			return nil
		},
	}
	m := records.New(records.Deps{Store: st})
	if err := m.Ensure([]string{"dyn.test."}); err != nil {
		t.Fatal(err)
	}
	var seen []*zone.Zone
	stop, err := m.Watch([]string{"dyn.test."}, func(z *zone.Zone) { seen = append(seen, z) })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	before, _ := m.Get("dyn.test.")
	p := patchOf(t, change("www.dyn.test.", "A", 60, "REPLACE", "10.0.0.1"))
	if _, err := m.Apply("ci", "dyn.test.", nil, p, 3600); err == nil {
		t.Fatal("Apply succeeded with a failing store")
	}
	after, _ := m.Get("dyn.test.")
	if after.Serial != before.Serial || len(after.RRsets) != len(before.RRsets) || len(seen) != 1 {
		t.Fatalf("a failed commit changed the zone: serial %d→%d, rrsets %d→%d, %d watcher calls", before.Serial, after.Serial, len(before.RRsets), len(after.RRsets), len(seen))
	}
	fail = false
	s, err := m.Apply("ci", "dyn.test.", nil, p, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if s.Serial != 2 || len(committed) != 1 || committed[0].Seq != 1 || committed[0].Serial != 2 || committed[0].By != "ci" || len(seen) != 2 || seen[1].Serial() != 2 {
		t.Fatalf("after the store came back: serial %d, committed %+v, %d watcher calls", s.Serial, committed, len(seen))
	}
}

// TestReplace: a newer snapshot replaces the zone and reaches the
// watchers; an older or equal one, or one with bad records, changes
// nothing; a zone not kept is ErrNoZone.
func TestReplace(t *testing.T) {
	st := &fakeStore{t: t, load: func(string) (records.Snapshot, []records.Entry, error) { return records.Snapshot{}, nil, nil }}
	m := records.New(records.Deps{Store: st})
	if err := m.Ensure([]string{"dyn.test."}); err != nil {
		t.Fatal(err)
	}
	var seen []*zone.Zone
	stop, err := m.Watch([]string{"dyn.test."}, func(z *zone.Zone) { seen = append(seen, z) })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	snap := func(seq uint64, content string) records.Snapshot {
		return records.Snapshot{Origin: "dyn.test.", Seq: seq, Serial: uint32(seq) + 1, RRsets: []records.RRset{
			{Name: "www.dyn.test.", Type: "A", TTL: 60, Records: []records.Record{{Content: content}}},
		}}
	}
	for _, tc := range []struct {
		name       string
		snap       records.Snapshot
		wantErr    bool
		wantSerial uint32
		wantSeen   int
	}{
		{"newer", snap(2, "10.0.0.2"), false, 3, 2},
		{"same seq", snap(2, "10.0.0.9"), false, 3, 2},
		{"older", snap(1, "10.0.0.1"), false, 3, 2},
		{"bad rdata", snap(3, "not-an-address"), true, 3, 2},
		{"newer again", snap(5, "10.0.0.5"), false, 6, 3},
		{"zone not kept", records.Snapshot{Origin: "other.test.", Seq: 9, Serial: 9}, true, 6, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := m.Replace(tc.snap)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Replace: %v, want error %v", err, tc.wantErr)
			}
			got, _ := m.Get("dyn.test.")
			if got.Serial != tc.wantSerial || len(seen) != tc.wantSeen {
				t.Fatalf("serial %d, %d zones seen; want %d, %d", got.Serial, len(seen), tc.wantSerial, tc.wantSeen)
			}
		})
	}
	if got, _ := m.Get("dyn.test."); got.RRsets[1].Records[0].Content != "10.0.0.5" {
		t.Fatalf("zone after replaces: %+v", got)
	}
	if err := m.Replace(records.Snapshot{Origin: "other.test.", Seq: 1, Serial: 2}); !errors.Is(err, records.ErrNoZone) {
		t.Fatalf("Replace of a zone not kept: %v, want ErrNoZone", err)
	}
}
