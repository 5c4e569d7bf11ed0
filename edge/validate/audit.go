package validate

import (
	"encoding/json"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Record is one line of the audit log: one validation.
type Record struct {
	Timestamp time.Time `json:"timestamp"`
	QName     string    `json:"qname"`
	QType     string    `json:"qtype"`
	// Rcode is the RCODE of the answer given: SERVFAIL for bogus.
	Rcode            string `json:"rcode"`
	ValidationStatus string `json:"validation_status"`
	// SignerKeyID is the key tag of the key that signed the answer,
	// Signer its zone, RRSIGTTL the signature's original TTL; zero when
	// nothing verified.
	SignerKeyID uint16 `json:"signer_key_id"`
	RRSIGTTL    uint32 `json:"rrsig_ttl"`
	Signer      string `json:"signer"`
	// Reason says why the answer is not secure; empty for secure.
	Reason string `json:"reason"`
	// EDE is the Extended DNS Error code given with the verdict, null
	// when none.
	EDE      *uint16 `json:"ede"`
	Client   string  `json:"client"`
	TraceID  string  `json:"trace_id"`
	Upstream string  `json:"upstream"`
}

// Audit writes Records as JSON lines without ever blocking its callers:
// Log queues a record in a bounded buffer that one goroutine drains; a
// record that does not fit is dropped and counted. It is safe for
// concurrent use; Close flushes what is queued and stops the goroutine.
type Audit struct {
	mu     sync.RWMutex // orders Log against Close
	closed bool
	ch     chan Record
	done   chan struct{}
	w      io.Writer
	closer func() error

	dropped atomic.Uint64
	errors  atomic.Uint64
}

// OpenAudit opens the audit log cfg names (defaults applied): stdout, or
// a file rotated by size. It returns nil for a config without a path.
func OpenAudit(cfg AuditConfig) (*Audit, error) {
	switch cfg.Path {
	case "":
		return nil, nil
	case Stdout:
		return newAudit(os.Stdout, nil, cfg.Buffer), nil
	}
	r, err := openRotator(cfg.Path, int64(cfg.MaxSize), cfg.MaxFiles)
	if err != nil {
		return nil, err
	}
	return newAudit(r, r.Close, cfg.Buffer), nil
}

// newAudit starts an audit log writing to w, queueing up to buffer
// records; closer, when not nil, is called by Close once everything is
// written.
func newAudit(w io.Writer, closer func() error, buffer int) *Audit {
	a := &Audit{ch: make(chan Record, max(buffer, 1)), done: make(chan struct{}), w: w, closer: closer}
	go a.run()
	return a
}

func (a *Audit) run() {
	defer close(a.done)
	var line []byte
	for r := range a.ch {
		b, err := json.Marshal(r)
		if err == nil {
			line = append(append(line[:0], b...), '\n')
			_, err = a.w.Write(line)
		}
		if err != nil {
			a.errors.Add(1)
		}
	}
}

// Log queues r, or drops and counts it when the buffer is full or the
// log closed. It never blocks.
func (a *Audit) Log(r Record) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		a.dropped.Add(1)
		return
	}
	select {
	case a.ch <- r:
	default:
		a.dropped.Add(1)
	}
}

// Dropped returns how many records were dropped; Errors how many could
// not be written.
func (a *Audit) Dropped() uint64 { return a.dropped.Load() }
func (a *Audit) Errors() uint64  { return a.errors.Load() }

// Close writes what is queued, stops the writer and closes the file. It
// may be called more than once.
func (a *Audit) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		<-a.done
		return nil
	}
	a.closed = true
	close(a.ch)
	a.mu.Unlock()
	<-a.done
	if a.closer != nil {
		return a.closer()
	}
	return nil
}
