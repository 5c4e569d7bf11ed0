package drill

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/dnsedge/dnsedge/edge/admin"
	"github.com/dnsedge/dnsedge/internal/field"
)

// Handler serves the drills API of a Manager on the admin listener, with
// the limits of one configuration generation. It is immutable and safe
// for concurrent use.
type Handler struct {
	m    *Manager
	auth *admin.Auth
	cfg  Config
}

// NewHandler returns the API of m for the callers auth admits, with cfg's
// limits (defaults filled in).
func NewHandler(m *Manager, auth *admin.Auth, cfg Config) *Handler {
	return &Handler{m: m, auth: auth, cfg: cfg.WithDefaults()}
}

// Register adds the routes of the API to mux: POST and GET
// /admin/v1/drills, DELETE /admin/v1/drills/{id}.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /admin/v1/drills", h.start)
	mux.HandleFunc("GET /admin/v1/drills", h.list)
	mux.HandleFunc("DELETE /admin/v1/drills/{id}", h.end)
}

// errorBody is the body of every error response, as the records API's.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func writeError(w http.ResponseWriter, status int, fieldPath, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="dnsedge"`)
	}
	writeJSON(w, status, errorBody{Error: msg, Field: fieldPath})
}

// caller authenticates r; with operate set, its grant must be access:
// admin. It writes the error response and returns false when not.
func (h *Handler) caller(w http.ResponseWriter, r *http.Request, operate bool) (*admin.Principal, bool) {
	p, err := h.auth.Authenticate(r)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "Authorization", err.Error())
		return nil, false
	}
	if operate && !p.CanOperate() {
		writeError(w, http.StatusForbidden, "Authorization", "grant "+p.ID+" may not run drills: that needs access: admin")
		return nil, false
	}
	return p, true
}

func (h *Handler) start(w http.ResponseWriter, r *http.Request) {
	p, ok := h.caller(w, r, true)
	if !ok {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "Content-Type", "a drill request is application/json")
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			writeError(w, http.StatusRequestEntityTooLarge, "body", "a drill request is at most 64 KiB")
			return
		}
		writeError(w, http.StatusBadRequest, "body", err.Error())
		return
	}
	spec, err := ParseRequest(body, h.cfg)
	if err != nil {
		// The first problem names the field; the message holds them all.
		path := "body"
		var fe *field.Error
		if errs := field.Flatten(err); len(errs) > 0 && errors.As(errs[0], &fe) {
			path = fe.Path
		}
		msgs := make([]string, 0, 4)
		for _, e := range field.Flatten(err) {
			msgs = append(msgs, e.Error())
		}
		writeError(w, http.StatusBadRequest, path, strings.Join(msgs, "; "))
		return
	}
	d, err := h.m.Start(spec, p.ID)
	switch {
	case errors.Is(err, ErrNoUpstream):
		writeError(w, http.StatusNotFound, "target.upstream", err.Error())
	case errors.Is(err, ErrNoPath):
		writeError(w, http.StatusNotFound, "target", err.Error())
	case errors.Is(err, ErrBusy):
		writeError(w, http.StatusConflict, "target", err.Error())
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "", err.Error())
	default:
		w.Header().Set("Location", "/admin/v1/drills/"+d.ID)
		writeJSON(w, http.StatusCreated, d)
	}
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.caller(w, r, false); !ok {
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Drills []Drill `json:"drills"`
	}{h.m.List()})
}

func (h *Handler) end(w http.ResponseWriter, r *http.Request) {
	p, ok := h.caller(w, r, true)
	if !ok {
		return
	}
	d, err := h.m.End(r.PathValue("id"), p.ID)
	if err != nil {
		writeError(w, http.StatusNotFound, "id", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, d)
}
