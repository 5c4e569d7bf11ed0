package drill

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// AuditFile is the audit log of drills, under the directory the server
// sets (state_dir/drills).
const AuditFile = "audit.jsonl"

// auditLine is one line of the audit log: a drill started or ended.
type auditLine struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"` // start | end
	// By is the grant that ended the drill (DELETE); the drill names
	// the one that started it.
	By    string `json:"token_id,omitempty"`
	Drill Drill  `json:"drill"`
}

// auditLog appends lines to AuditFile under its directory, opened on the
// first line, and logs each as well.
type auditLog struct {
	log *slog.Logger
	mu  sync.Mutex
	dir string
	f   *os.File
}

func (a *auditLog) setDir(dir string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if dir == a.dir {
		return
	}
	if a.f != nil {
		a.f.Close()
		a.f = nil
	}
	a.dir = dir
}

func (a *auditLog) write(l auditLine) {
	d := l.Drill
	if l.Action == "start" {
		a.log.Info("drill started", "drill", d.ID, "by", d.By, "upstream", d.Target.Upstream, "fault", d.Fault.Type,
			"paths", d.Paths, "ends", d.Ends)
	} else {
		a.log.Info("drill ended", "drill", d.ID, "end", d.End, "by", l.By, "upstream", d.Target.Upstream, "fault", d.Fault.Type)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(l)
	if err == nil {
		err = a.append(b.Bytes())
	}
	if err != nil {
		a.log.Error("drill audit line not written", "drill", d.ID, "action", l.Action, "error", err.Error())
	}
}

func (a *auditLog) append(line []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dir == "" {
		return nil // no state directory: the log line above is the record
	}
	if a.f == nil {
		if err := os.MkdirAll(a.dir, 0o700); err != nil {
			return fmt.Errorf("drill audit log: %w", err)
		}
		f, err := os.OpenFile(filepath.Join(a.dir, AuditFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("drill audit log: %w", err)
		}
		a.f = f
	}
	_, err := a.f.Write(line)
	return err
}

func (a *auditLog) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}
