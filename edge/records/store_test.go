package records_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/edge/records"
)

func patchOf(t *testing.T, body string) *records.Patch {
	t.Helper()
	p, err := records.DecodePatch(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func openManager(t *testing.T, dir string, compact int) *records.Manager {
	t.Helper()
	m, err := records.Open(dir, compact, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ensure([]string{"dyn.test."}); err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m
}

func snapshotJSON(t *testing.T, m *records.Manager) string {
	t.Helper()
	s, err := m.Get("dyn.test.")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(s)
	return string(b)
}

func lines(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// TestJournalReplayAndCompaction: changes survive a reopen, through the
// journal alone and through snapshot plus journal; every compact_after
// entries the journal is folded into the snapshot and emptied; the audit
// log has one line per change with the token id and the diff.
func TestJournalReplayAndCompaction(t *testing.T) {
	dir := t.TempDir()
	zdir := filepath.Join(dir, "dyn.test.")
	m := openManager(t, dir, 3)
	for i := range 2 {
		if _, err := m.Apply("ci", "dyn.test.", nil, patchOf(t, change(fmt.Sprintf("h%d.dyn.test.", i), "A", 60, "REPLACE", fmt.Sprintf("10.0.0.%d", i))), 3600); err != nil {
			t.Fatal(err)
		}
	}
	want := snapshotJSON(t, m)
	m.Close()
	if n := lines(t, filepath.Join(zdir, "journal.jsonl")); n != 2 {
		t.Fatalf("journal has %d lines, want 2", n)
	}
	if _, err := os.Stat(filepath.Join(zdir, "snapshot.json")); !os.IsNotExist(err) {
		t.Fatalf("snapshot before compact_after entries: %v", err)
	}
	m = openManager(t, dir, 3)
	if got := snapshotJSON(t, m); got != want {
		t.Fatalf("replayed from the journal:\n%s\nwant\n%s", got, want)
	}
	for i := 2; i < 7; i++ {
		if _, err := m.Apply("ci", "dyn.test.", nil, patchOf(t, change(fmt.Sprintf("h%d.dyn.test.", i), "TXT", 60, "REPLACE", fmt.Sprintf(`"v %d"`, i))), 3600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Apply("ci", "dyn.test.", nil, patchOf(t, `{"rrsets":[{"name":"h0.dyn.test.","type":"A","changetype":"DELETE"}]}`), 3600); err != nil {
		t.Fatal(err)
	}
	want = snapshotJSON(t, m)
	m.Close()
	// 8 entries with compact_after 3: snapshots at 3 and 6, 2 lines after.
	if n := lines(t, filepath.Join(zdir, "journal.jsonl")); n != 2 {
		t.Fatalf("journal has %d lines after compaction, want 2", n)
	}
	var snap records.Snapshot
	b, err := os.ReadFile(filepath.Join(zdir, "snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &snap); err != nil || snap.Seq != 6 || snap.Serial != 7 {
		t.Fatalf("snapshot: seq %d serial %d (%v), want 6 and 7", snap.Seq, snap.Serial, err)
	}
	m = openManager(t, dir, 3)
	if got := snapshotJSON(t, m); got != want {
		t.Fatalf("replayed from snapshot and journal:\n%s\nwant\n%s", got, want)
	}
	m.Close()
	audit, err := os.ReadFile(filepath.Join(dir, records.AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	als := strings.Split(strings.TrimSpace(string(audit)), "\n")
	if len(als) != 8 {
		t.Fatalf("%d audit lines, want 8", len(als))
	}
	var last struct {
		TokenID string         `json:"token_id"`
		Zone    string         `json:"zone"`
		Serial  uint32         `json:"serial"`
		Changes []records.Diff `json:"changes"`
	}
	if err := json.Unmarshal([]byte(als[7]), &last); err != nil {
		t.Fatal(err)
	}
	if last.TokenID != "ci" || last.Zone != "dyn.test." || last.Serial != 9 || len(last.Changes) != 1 ||
		last.Changes[0].Changetype != "DELETE" || last.Changes[0].Before == nil || last.Changes[0].After != nil {
		t.Fatalf("last audit line: %s", als[7])
	}
}

// TestJournalCrashStates: the states a crash can leave are read back
// right: a last line cut short (never acknowledged) is dropped and cut
// off, entries the snapshot already holds (a crash between the snapshot's
// rename and the journal's truncation) are skipped, and a damaged line in
// the middle is an error naming file and line.
func TestJournalCrashStates(t *testing.T) {
	dir := t.TempDir()
	jname := filepath.Join(dir, "dyn.test.", "journal.jsonl")
	m := openManager(t, dir, 1000)
	for i := range 3 {
		if _, err := m.Apply("ci", "dyn.test.", nil, patchOf(t, change(fmt.Sprintf("h%d.dyn.test.", i), "A", 60, "REPLACE", "10.0.0.1")), 3600); err != nil {
			t.Fatal(err)
		}
	}
	want := snapshotJSON(t, m)
	m.Close()
	good, _ := os.ReadFile(jname)

	t.Run("torn last line", func(t *testing.T) {
		os.WriteFile(jname, append(append([]byte{}, good...), `{"seq":4,"serial":5,"changes":[{"name":"h9.dyn`...), 0o600)
		m := openManager(t, dir, 1000)
		defer m.Close()
		if got := snapshotJSON(t, m); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
		if b, _ := os.ReadFile(jname); !bytes.Equal(b, good) {
			t.Fatalf("the torn line was not cut off")
		}
	})
	t.Run("entries already in the snapshot", func(t *testing.T) {
		m := openManager(t, dir, 1000)
		s, _ := m.Get("dyn.test.")
		m.Close()
		b, _ := json.Marshal(s)
		os.WriteFile(filepath.Join(dir, "dyn.test.", "snapshot.json"), b, 0o600)
		os.WriteFile(jname, good, 0o600)
		m = openManager(t, dir, 1000)
		defer m.Close()
		if got := snapshotJSON(t, m); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
		os.Remove(filepath.Join(dir, "dyn.test.", "snapshot.json"))
	})
	t.Run("damaged middle line", func(t *testing.T) {
		ls := bytes.SplitAfter(good, []byte("\n"))
		bad := append(append(append([]byte{}, ls[0]...), []byte("{not json\n")...), ls[1]...)
		os.WriteFile(jname, bad, 0o600)
		m, err := records.Open(dir, 1000, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		err = m.Ensure([]string{"dyn.test."})
		if err == nil || !strings.Contains(err.Error(), "journal.jsonl:2") {
			t.Fatalf("got %v, want an error at journal.jsonl:2", err)
		}
		os.WriteFile(jname, good, 0o600)
	})
}
