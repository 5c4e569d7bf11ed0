package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dnsedge/dnsedge/edge/admin"
	"github.com/dnsedge/dnsedge/edge/drill"
	"github.com/dnsedge/dnsedge/internal/field"
)

// The operating endpoints of the admin API, under /admin/v1/. Every one
// needs a grant with access: admin (Principal.CanOperate): no credentials
// or unknown ones get 401, a read or write grant 403, and neither changes
// anything. Every action that changes something writes one audit line,
// JSON, to OperationsAuditFile under the state directory, and logs it.
//
//	POST   /admin/v1/reload          re-read the configuration file and reload
//	POST   /admin/v1/canary          start a canary (body: canaryBody)
//	GET    /admin/v1/canary          its state (CanaryStatus)
//	POST   /admin/v1/canary/promote  commit the candidate
//	POST   /admin/v1/canary/abort    discard it (DELETE /admin/v1/canary too)
//	GET    /admin/v1/rollback        the rollback watch (RollbackStatus)
//	POST   /admin/v1/rollback        swap the previous configuration back in now

// OperationsAuditFile is where operating actions are audited, under the
// state directory.
const OperationsAuditFile = "operations-audit.jsonl"

// maxCanaryBody bounds a posted canary request, configuration included.
const maxCanaryBody = 4 << 20

// canaryBody is the JSON body of POST /admin/v1/canary. Every field is
// optional: without config the configuration file is read again, as
// SIGHUP does; unset settings take the canary section in force.
type canaryBody struct {
	// Config is a whole configuration file, YAML.
	Config       *string  `json:"config"`
	Share        *float64 `json:"share"`
	AnswerShare  *float64 `json:"answer_share"`
	ControlShare *float64 `json:"control_share"`
	MinSamples   *int     `json:"min_samples"`
	Window       *string  `json:"window"` // a Go duration: "60s"
	AutoPromote  *bool    `json:"auto_promote"`
}

// registerOps adds the operating endpoints to an admin mux that
// authenticates with auth.
func (s *Server) registerOps(mux *http.ServeMux, auth *admin.Auth) {
	op := func(action string, h func(w http.ResponseWriter, r *http.Request, p *admin.Principal)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			p, err := auth.Authenticate(r)
			if err != nil {
				opError(w, http.StatusUnauthorized, "Authorization", err.Error())
				return
			}
			if !p.CanOperate() {
				opError(w, http.StatusForbidden, "", "grant "+p.ID+" may not "+action+": operating the server needs access: admin")
				return
			}
			h(w, r, p)
		}
	}
	mux.HandleFunc("POST /admin/v1/reload", op("reload", s.opReload))
	mux.HandleFunc("POST /admin/v1/canary", op("start a canary", s.opCanaryStart))
	mux.HandleFunc("GET /admin/v1/canary", op("read the canary", func(w http.ResponseWriter, _ *http.Request, _ *admin.Principal) {
		writeOpJSON(w, http.StatusOK, s.CanaryStatus())
	}))
	mux.HandleFunc("POST /admin/v1/canary/promote", op("promote a canary", s.opCanaryPromote))
	mux.HandleFunc("POST /admin/v1/canary/abort", op("abort a canary", s.opCanaryAbort))
	mux.HandleFunc("DELETE /admin/v1/canary", op("abort a canary", s.opCanaryAbort))
	mux.HandleFunc("GET /admin/v1/rollback", op("read the rollback watch", func(w http.ResponseWriter, _ *http.Request, _ *admin.Principal) {
		writeOpJSON(w, http.StatusOK, s.RollbackStatus())
	}))
	mux.HandleFunc("POST /admin/v1/rollback", op("roll back", s.opRollback))
}

func (s *Server) opReload(w http.ResponseWriter, _ *http.Request, p *admin.Principal) {
	if s.load == nil {
		s.audit(p, "reload", nil, ErrNoConfigFile)
		opError(w, http.StatusConflict, "", ErrNoConfigFile.Error())
		return
	}
	cfg, err := s.load()
	if err == nil {
		err = s.Reload(cfg)
	}
	s.audit(p, "reload", nil, err)
	if err != nil {
		opError(w, http.StatusUnprocessableEntity, "", "the running configuration is unchanged: "+err.Error())
		return
	}
	writeOpJSON(w, http.StatusOK, map[string]string{"result": "reloaded"})
}

func (s *Server) opCanaryStart(w http.ResponseWriter, r *http.Request, p *admin.Principal) {
	req, status, fieldPath, err := s.canaryRequest(w, r)
	if err != nil {
		s.audit(p, "canary.start", nil, err)
		opError(w, status, fieldPath, err.Error())
		return
	}
	req.By = p.ID
	st, err := s.StartCanary(req)
	var details map[string]any
	if err == nil {
		details = map[string]any{"source": st.Source, "share": st.Share, "answer_share": st.AnswerShare, "control_share": st.ControlShare}
	}
	s.audit(p, "canary.start", details, err)
	var fe *field.Error
	switch {
	case err == nil:
		writeOpJSON(w, http.StatusCreated, st)
	case errors.Is(err, ErrCanaryActive):
		opError(w, http.StatusConflict, "", err.Error())
	case errors.As(err, &fe):
		opError(w, http.StatusBadRequest, fe.Path, fe.Err.Error())
	default:
		opError(w, http.StatusUnprocessableEntity, "", "no canary started: "+err.Error())
	}
}

// canaryRequest decodes the body of a canary start.
func (s *Server) canaryRequest(w http.ResponseWriter, r *http.Request) (CanaryRequest, int, string, error) {
	var req CanaryRequest
	var b canaryBody
	if r.ContentLength != 0 {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return req, http.StatusUnsupportedMediaType, "Content-Type", errors.New("the body must be application/json")
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCanaryBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil && !errors.Is(err, io.EOF) {
			return req, http.StatusBadRequest, "body", fmt.Errorf("body: %w", err)
		}
	}
	req.Share, req.AnswerShare, req.ControlShare, req.MinSamples, req.AutoPromote = b.Share, b.AnswerShare, b.ControlShare, b.MinSamples, b.AutoPromote
	if b.Window != nil {
		d, err := time.ParseDuration(*b.Window)
		if err != nil {
			return req, http.StatusBadRequest, "window", fmt.Errorf("window %q is not a duration such as 60s", *b.Window)
		}
		req.Window = &d
	}
	if b.Config != nil {
		cfg, err := Parse("(posted configuration)", []byte(*b.Config))
		if err != nil {
			return req, http.StatusBadRequest, "config", err
		}
		req.Config = cfg
	}
	return req, 0, "", nil
}

func (s *Server) opCanaryPromote(w http.ResponseWriter, _ *http.Request, p *admin.Principal) {
	err := s.PromoteCanary(p.ID)
	s.audit(p, "canary.promote", nil, err)
	switch {
	case err == nil:
		writeOpJSON(w, http.StatusOK, s.CanaryStatus())
	case errors.Is(err, ErrNoCanary):
		opError(w, http.StatusConflict, "", err.Error())
	default:
		opError(w, http.StatusUnprocessableEntity, "", err.Error())
	}
}

func (s *Server) opCanaryAbort(w http.ResponseWriter, _ *http.Request, p *admin.Principal) {
	err := s.AbortCanary("aborted by " + p.ID)
	s.audit(p, "canary.abort", nil, err)
	switch {
	case err == nil:
		writeOpJSON(w, http.StatusOK, s.CanaryStatus())
	case errors.Is(err, ErrNoCanary):
		opError(w, http.StatusConflict, "", err.Error())
	default:
		// Aborted; closing the candidate's parts reported a problem.
		writeOpJSON(w, http.StatusOK, s.CanaryStatus())
	}
}

func (s *Server) opRollback(w http.ResponseWriter, _ *http.Request, p *admin.Principal) {
	ok := s.RollBack("rolled back by " + p.ID)
	var err error
	if !ok {
		err = errors.New("nothing to roll back to: no reload or promotion is being watched")
	}
	s.audit(p, "rollback", nil, err)
	if err != nil {
		opError(w, http.StatusConflict, "", err.Error())
		return
	}
	writeOpJSON(w, http.StatusOK, s.RollbackStatus())
}

// auditLine is one operating action.
type auditLine struct {
	Time    time.Time      `json:"time"`
	By      string         `json:"token_id"`
	Action  string         `json:"action"`
	Result  string         `json:"result"`
	Error   string         `json:"error,omitempty"`
	Details map[string]any `json:"details,omitempty"`
}

// audit writes one line for an operating action and logs it.
func (s *Server) audit(p *admin.Principal, action string, details map[string]any, err error) {
	l := auditLine{Time: s.clock.Now().UTC(), By: p.ID, Action: action, Result: "ok", Details: details}
	if err != nil {
		l.Result, l.Error = "failed", err.Error()
	}
	s.log.Info("admin operation", "by", p.ID, "action", action, "result", l.Result, "error", l.Error)
	s.writeAudit(l)
}

// auditDrill writes the line of a drill's start or end ("drill.start",
// "drill.end"); the drill manager has logged it.
func (s *Server) auditDrill(e drill.AuditEvent) {
	s.writeAudit(auditLine{Time: e.Time.UTC(), By: e.By, Action: "drill." + e.Action, Result: "ok",
		Details: map[string]any{"drill": e.Drill}})
}

// writeAudit appends l to OperationsAuditFile under the state directory
// of the configuration in force; a line it cannot write is logged.
func (s *Server) writeAudit(l auditLine) {
	b, err := json.Marshal(l)
	if err != nil {
		s.log.Error("audit line not written", "action", l.Action, "by", l.By, "error", err.Error())
		return
	}
	gen := s.gen.Load()
	if gen == nil {
		return
	}
	dir := gen.cfg.stateDir()
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	err = os.MkdirAll(dir, 0o700)
	if err == nil {
		var f *os.File
		if f, err = os.OpenFile(filepath.Join(dir, OperationsAuditFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
			_, err = f.Write(append(b, '\n'))
			err = errors.Join(err, f.Close())
		}
	}
	if err != nil {
		s.log.Error("audit line not written", "action", l.Action, "by", l.By, "error", err.Error())
	}
}

type opErrorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func opError(w http.ResponseWriter, status int, fieldPath, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="dnsedge"`)
	}
	writeOpJSON(w, status, opErrorBody{Error: strings.TrimSpace(msg), Field: fieldPath})
}

func writeOpJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
