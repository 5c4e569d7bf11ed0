package drill

import (
	"time"
)

// AuditEvent is a drill that started or ended, for the server's
// operations audit log (Deps.Audit).
type AuditEvent struct {
	Time   time.Time
	Action string // start | end
	// By is the grant behind the event: the one that started the drill,
	// or the one that ended it by DELETE; empty when it ended by itself
	// (expired, gone, shutdown).
	By    string
	Drill Drill
}

// audit logs e and hands it to the server's audit log.
func (m *Manager) audit(e AuditEvent) {
	d := e.Drill
	if e.Action == "start" {
		m.d.Log.Info("drill started", "drill", d.ID, "by", d.By, "upstream", d.Target.Upstream, "fault", d.Fault.Type,
			"paths", d.Paths, "ends", d.Ends)
	} else {
		m.d.Log.Info("drill ended", "drill", d.ID, "end", d.End, "by", e.By, "upstream", d.Target.Upstream, "fault", d.Fault.Type)
	}
	if m.d.Audit != nil {
		m.d.Audit(e)
	}
}
