package drill

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/edge/admin"
)

func testAuth() *admin.Auth {
	sum := func(tok string) string {
		s := sha256.Sum256([]byte(tok))
		return hex.EncodeToString(s[:])
	}
	return admin.NewAuth(admin.Config{Tokens: []admin.Token{
		{Grant: admin.Grant{ID: "ops", Zones: []string{"*"}, Access: admin.AccessAdmin}, SHA256: sum("t-ops")},
		{Grant: admin.Grant{ID: "ci", Zones: []string{"*"}, Access: admin.AccessWrite}, SHA256: sum("t-ci")},
		{Grant: admin.Grant{ID: "viewer", Zones: []string{"*"}, Access: admin.AccessRead}, SHA256: sum("t-view")},
	}})
}

// TestHandler: who may do what, and what each bad request gets; a
// request refused changes nothing.
func TestHandler(t *testing.T) {
	good := `{"target": {"upstream": "up", "family": "v6"}, "fault": {"type": "drop"}}`
	tests := []struct {
		name, method, path, token, ctype, body string
		status                                 int
		field                                  string // of the error; "" for success
	}{
		{"admin starts", "POST", "/admin/v1/drills", "t-ops", "application/json", good, http.StatusCreated, ""},
		{"content type with parameters", "POST", "/admin/v1/drills", "t-ops", "application/json; charset=utf-8", good, http.StatusCreated, ""},
		{"no token", "POST", "/admin/v1/drills", "", "application/json", good, http.StatusUnauthorized, "Authorization"},
		{"write grant", "POST", "/admin/v1/drills", "t-ci", "application/json", good, http.StatusForbidden, "Authorization"},
		{"read grant", "POST", "/admin/v1/drills", "t-view", "application/json", good, http.StatusForbidden, "Authorization"},
		{"form body", "POST", "/admin/v1/drills", "t-ops", "application/x-www-form-urlencoded", good, http.StatusUnsupportedMediaType, "Content-Type"},
		{"too big", "POST", "/admin/v1/drills", "t-ops", "application/json", `{"target": {"upstream": "` + strings.Repeat("u", maxBody) + `"}}`, http.StatusRequestEntityTooLarge, "body"},
		{"bad JSON", "POST", "/admin/v1/drills", "t-ops", "application/json", `{"target":`, http.StatusBadRequest, "body"},
		{"first field named", "POST", "/admin/v1/drills", "t-ops", "application/json", `{"target": {"upstream": "up", "family": "v5"}, "fault": {"type": "loss"}}`, http.StatusBadRequest, "target.family"},
		{"read grant lists", "GET", "/admin/v1/drills", "t-view", "", "", http.StatusOK, ""},
		{"read grant deletes", "DELETE", "/admin/v1/drills/d-1", "t-view", "", "", http.StatusForbidden, "Authorization"},
		{"unknown drill", "DELETE", "/admin/v1/drills/d-1", "t-ops", "", "", http.StatusNotFound, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBed(t)
			mux := http.NewServeMux()
			NewHandler(b.m, testAuth(), Config{}).Register(mux)
			r := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			if tt.token != "" {
				r.Header.Set("Authorization", "Bearer "+tt.token)
			}
			if tt.ctype != "" {
				r.Header.Set("Content-Type", tt.ctype)
			}
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, r)
			var eb errorBody
			json.Unmarshal(w.Body.Bytes(), &eb)
			if w.Code != tt.status || eb.Field != tt.field {
				t.Fatalf("%d %s, want %d naming %q", w.Code, w.Body, tt.status, tt.field)
			}
			if tt.status == http.StatusUnauthorized && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Fatal("401 without WWW-Authenticate: Bearer")
			}
			faulted := b.faulted()
			if tt.status == http.StatusCreated {
				var d Drill
				if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil || d.By != "ops" || len(d.Paths) != 2 ||
					w.Header().Get("Location") != "/admin/v1/drills/"+d.ID || len(faulted) != 2 {
					t.Fatalf("drill %s (%v), Location %q, faulted %v", w.Body, err, w.Header().Get("Location"), faulted)
				}
				return
			}
			if len(faulted) != 0 || len(b.m.List()) != 0 {
				t.Fatalf("a refused request changed something: %v", faulted)
			}
		})
	}
}
