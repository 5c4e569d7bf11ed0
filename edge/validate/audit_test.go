package validate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

func record(i int) Record {
	ede := uint16(7)
	return Record{
		Timestamp: fixedNow(), QName: fmt.Sprintf("n%d.example.", i), QType: "A", Rcode: "SERVFAIL",
		ValidationStatus: "bogus", SignerKeyID: 12345, RRSIGTTL: 3600, Signer: "example.",
		Reason: "signature expired", EDE: &ede, Client: "192.0.2.9:5353", TraceID: "t1", Upstream: "u/udp/192.0.2.1:53",
	}
}

// TestAuditFields: every line is one JSON object with every field.
func TestAuditFields(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	a := newAudit(&lockedWriter{w: &buf}, nil, 8)
	a.Log(record(1))
	r := record(2)
	r.EDE, r.Reason, r.ValidationStatus = nil, "", "secure"
	a.Log(r)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines %q", lines)
	}
	want := []string{"client", "ede", "qname", "qtype", "rcode", "reason", "rrsig_ttl", "signer",
		"signer_key_id", "timestamp", "trace_id", "upstream", "validation_status"}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if strings.Join(keys, ",") != strings.Join(want, ",") {
			t.Errorf("line %d keys %v, want %v", i, keys, want)
		}
	}
	var first Record
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.EDE == nil || *first.EDE != 7 ||
		first.SignerKeyID != 12345 || !first.Timestamp.Equal(fixedNow()) {
		t.Errorf("first line %+v, %v", first, err)
	}
	if !strings.Contains(lines[1], `"ede":null`) {
		t.Errorf("no EDE is not null: %s", lines[1])
	}
	// After Close, Log drops instead of panicking.
	a.Log(record(3))
	if a.Dropped() != 1 {
		t.Errorf("dropped %d after close, want 1", a.Dropped())
	}
}

// blockedWriter blocks every Write until release is closed.
type blockedWriter struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blockedWriter) Write(p []byte) (int, error) {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-b.release
	return len(p), nil
}

// TestAuditNeverBlocks: with the writer stuck, Log keeps returning at
// once, and what does not fit the buffer is dropped and counted.
func TestAuditNeverBlocks(t *testing.T) {
	t.Parallel()
	w := &blockedWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	const buffer, n = 4, 1000
	a := newAudit(w, nil, buffer)
	a.Log(record(0))
	<-w.entered // the writer holds record 0 and is stuck
	start := time.Now()
	for i := 1; i <= n; i++ {
		a.Log(record(i))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%d Log calls took %s with the writer stuck", n, d)
	}
	if got := a.Dropped(); got != n-buffer {
		t.Errorf("dropped %d, want %d", got, n-buffer)
	}
	close(w.release)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAuditRotation: the file is rotated when a line would take it past
// max_size, max_files old files are kept, newest as .1, and no line is
// split or lost between the kept files.
func TestAuditRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	a, err := OpenAudit(AuditConfig{Path: path, MaxSize: MinAuditMaxSize, MaxFiles: 2, Buffer: 100000})
	if err != nil {
		t.Fatal(err)
	}
	line, _ := json.Marshal(record(0))
	perFile := MinAuditMaxSize / (len(line) + 1)
	n := 5 * perFile // enough for more rotations than are kept
	for i := range n {
		a.Log(record(i))
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if a.Dropped() != 0 {
		t.Fatalf("dropped %d", a.Dropped())
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "audit.log audit.log.1 audit.log.2" {
		t.Fatalf("files %v, want the log and two old ones", names)
	}
	last := -1
	for _, name := range []string{"audit.log.2", "audit.log.1", "audit.log"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		if fi.Size() > MinAuditMaxSize {
			t.Errorf("%s is %d bytes, above max_size %d", name, fi.Size(), MinAuditMaxSize)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var i int
			fmt.Sscanf(r.QName, "n%d.example.", &i)
			if last >= 0 && i != last+1 {
				t.Errorf("%s: record %d follows %d", name, i, last)
			}
			last = i
		}
		f.Close()
	}
	if last != n-1 {
		t.Errorf("last record %d, want %d", last, n-1)
	}
}

// TestAuditReopenAppends: a new audit log on an existing file appends and
// counts the file's size towards rotation.
func TestAuditReopenAppends(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x"), MinAuditMaxSize-10), 0o640); err != nil {
		t.Fatal(err)
	}
	a, err := OpenAudit(AuditConfig{Path: path, MaxSize: MinAuditMaxSize, MaxFiles: 1, Buffer: 4})
	if err != nil {
		t.Fatal(err)
	}
	a.Log(record(1))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if len(old) != MinAuditMaxSize-10 || !bytes.HasPrefix(cur, []byte("{")) {
		t.Errorf("old %d bytes, current %q", len(old), cur)
	}
}
