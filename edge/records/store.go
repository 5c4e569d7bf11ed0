package records

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// A Store keeps API zones durably. Load and Commit for one origin are
// called by one goroutine at a time; different origins may be used
// concurrently. FileStore is the store of `store: file`; a store shared by
// several instances fits the same interface.
type Store interface {
	// Load returns the last snapshot of the zone of origin and the
	// entries committed after it, in order: the zero Snapshot and no
	// entries for a zone never changed.
	Load(origin string) (Snapshot, []Entry, error)
	// Commit makes e durable: when it returns nil, e survives a crash
	// of the process or the host. after returns the zone's state with e
	// applied, for a store that compacts. When Commit fails, e is not
	// committed.
	Commit(origin string, e Entry, after func() Snapshot) error
	Close() error
}

// Entry is one committed change of a zone: the journal's line.
type Entry struct {
	Seq     uint64    `json:"seq"`
	Serial  uint32    `json:"serial"`
	Time    time.Time `json:"time"`
	By      string    `json:"by"`
	Changes []Diff    `json:"changes"`
}

// FileStore keeps each zone in a directory of its own under dir: a
// snapshot (snapshot.json) and a journal of the changes after it
// (journal.jsonl, one JSON entry a line). Commit appends a line and
// fsyncs the journal before it returns. After CompactAfter entries the
// zone is written as a new snapshot (to a temporary file, fsynced, renamed
// over the old one, the directory fsynced) and the journal truncated; a
// crash between the two leaves entries the snapshot already holds, which
// Load skips by their sequence number. A last line cut short by a crash
// was never acknowledged and is dropped at Load.
//
// Safe for concurrent use.
type FileStore struct {
	dir          string
	compactAfter atomic.Int64
	log          *slog.Logger

	mu       sync.Mutex
	journals map[string]*journal
}

type journal struct {
	dir     string
	f       *os.File
	size    int64
	entries int  // entries since the snapshot
	broken  bool // a write could not be undone: refuse more
}

// NewFileStore returns a store under dir, created if missing.
func NewFileStore(dir string, compactAfter int, log *slog.Logger) (*FileStore, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("records store: %w", err)
	}
	s := &FileStore{dir: dir, log: log, journals: make(map[string]*journal)}
	s.SetCompactAfter(compactAfter)
	return s, nil
}

// SetCompactAfter sets how many entries a zone's journal gathers before
// it is compacted (at least 1); it applies from the next commit.
func (s *FileStore) SetCompactAfter(n int) { s.compactAfter.Store(int64(max(n, 1))) }

// zoneDir returns the directory of a zone: its origin when that is a
// plain host name, else its hex.
func (s *FileStore) zoneDir(origin string) string {
	name := origin
	for _, c := range origin {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			name = "x-" + hex.EncodeToString([]byte(origin))
			break
		}
	}
	if name == "." {
		name = "_root"
	}
	return filepath.Join(s.dir, name)
}

const (
	snapshotFile = "snapshot.json"
	journalFile  = "journal.jsonl"
)

// Load reads the zone's snapshot and journal, dropping a torn last line.
func (s *FileStore) Load(origin string) (Snapshot, []Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.journals[origin]; j != nil {
		j.f.Close()
		delete(s.journals, origin)
	}
	dir := s.zoneDir(origin)
	var snap Snapshot
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return snap, nil, fmt.Errorf("records store: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return snap, nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, snapshotFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return snap, nil, fmt.Errorf("records store: %w", err)
	default:
		if err := json.Unmarshal(data, &snap); err != nil {
			return snap, nil, fmt.Errorf("records store: %s: %w", filepath.Join(dir, snapshotFile), err)
		}
		if snap.Origin != origin {
			return snap, nil, fmt.Errorf("records store: %s holds zone %q, not %q", filepath.Join(dir, snapshotFile), snap.Origin, origin)
		}
	}
	name := filepath.Join(dir, journalFile)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return snap, nil, fmt.Errorf("records store: %w", err)
	}
	entries, good, err := readJournal(f, name, snap.Seq)
	if err != nil {
		f.Close()
		return snap, nil, err
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > good {
		s.log.Warn("records journal: dropping a last line cut short (never acknowledged)", "file", name, "bytes", fi.Size()-good)
		if err := f.Truncate(good); err != nil {
			f.Close()
			return snap, nil, fmt.Errorf("records store: truncate %s: %w", name, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return snap, nil, fmt.Errorf("records store: sync %s: %w", name, err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return snap, nil, fmt.Errorf("records store: %w", err)
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return snap, nil, err
	}
	s.journals[origin] = &journal{dir: dir, f: f, size: good, entries: len(entries)}
	return snap, entries, nil
}

// readJournal reads the entries after seq from f and returns them with
// the length of the well-formed part of f: every complete line.
func readJournal(f *os.File, name string, seq uint64) ([]Entry, int64, error) {
	r := bufio.NewReader(f)
	var out []Entry
	var good int64
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return out, good, nil // a partial last line is not part of good
		}
		if err != nil {
			return nil, 0, fmt.Errorf("records store: read %s: %w", name, err)
		}
		var e Entry
		if err := json.Unmarshal(bytes.TrimSpace(b), &e); err != nil {
			return nil, 0, fmt.Errorf("records store: %s:%d: %w", name, line, err)
		}
		good += int64(len(b))
		if e.Seq <= seq {
			continue // already in the snapshot
		}
		if want := seq + uint64(len(out)) + 1; e.Seq != want {
			return nil, 0, fmt.Errorf("records store: %s:%d: entry %d where %d was due", name, line, e.Seq, want)
		}
		out = append(out, e)
	}
}

// Commit appends e to the zone's journal and fsyncs it; see FileStore.
func (s *FileStore) Commit(origin string, e Entry, after func() Snapshot) error {
	s.mu.Lock()
	j := s.journals[origin]
	s.mu.Unlock()
	if j == nil {
		return fmt.Errorf("records store: zone %s not loaded", origin)
	}
	if j.broken {
		return fmt.Errorf("records store: the journal of %s failed a write and takes no more", origin)
	}
	line, err := compactJSON(e)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(line); err != nil {
		j.undo()
		return fmt.Errorf("records store: append to %s: %w", j.f.Name(), err)
	}
	if err := j.f.Sync(); err != nil {
		// After a failed fsync the page cache cannot be trusted; undo
		// the line and take no more.
		j.undo()
		j.broken = true
		return fmt.Errorf("records store: sync %s: %w", j.f.Name(), err)
	}
	j.size += int64(len(line))
	j.entries++
	if int64(j.entries) >= s.compactAfter.Load() {
		if err := s.compact(j, after()); err != nil {
			// The entry is durable in the journal; compaction is tried
			// again at the next commit.
			s.log.Error("records journal not compacted", "zone", origin, "error", err.Error())
		}
	}
	return nil
}

// undo cuts the journal back to its last good size after a failed write.
func (j *journal) undo() {
	if err := j.f.Truncate(j.size); err != nil {
		j.broken = true
		return
	}
	if _, err := j.f.Seek(j.size, io.SeekStart); err != nil {
		j.broken = true
	}
}

// compact writes snap as the zone's snapshot and empties the journal.
func (s *FileStore) compact(j *journal, snap Snapshot) error {
	data, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(j.dir, snapshotFile), data); err != nil {
		return err
	}
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("truncate journal: %w", err)
	}
	if _, err := j.f.Seek(0, io.SeekStart); err != nil {
		j.broken = true
		return err
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	j.size, j.entries = 0, 0
	return nil
}

// Compact folds the zone's journal into a snapshot now, as Commit does
// after CompactAfter entries.
func (s *FileStore) Compact(origin string, snap Snapshot) error {
	s.mu.Lock()
	j := s.journals[origin]
	s.mu.Unlock()
	if j == nil {
		return fmt.Errorf("records store: zone %s not loaded", origin)
	}
	return s.compact(j, snap)
}

// Close closes every journal.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for o, j := range s.journals {
		errs = append(errs, j.f.Close())
		delete(s.journals, o)
	}
	return errors.Join(errs...)
}

// writeFileSync writes name through a temporary file, fsynced and renamed
// over it, then fsyncs the directory.
func writeFileSync(name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	return syncDir(filepath.Dir(name))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("records store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("records store: sync %s: %w", dir, err)
	}
	return nil
}
