package listen

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/miekg/dns"
)

const (
	testTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	testParent  = "00-" + testTraceID + "-00f067aa0ba902b7-01"
)

func TestDoHTraceHead(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                    string
		parent, id, stage       string
		wantID, wantParent, wSt string
	}{
		{"none", "", "", "", "", "", ""},
		{"traceparent", testParent, "", "", testTraceID, testParent, ""},
		{"traceparent wins over X-DNS-TraceID", testParent, "other", "cache", testTraceID, testParent, "cache"},
		{"X-DNS-TraceID and stage", "", "req-42.a:b_c", "resolver", "req-42.a:b_c", "", "resolver"},
		{"later version read as 00", "cc-" + testTraceID + "-00f067aa0ba902b7-01-what-comes", "", "", testTraceID, testParent, ""},
		{"version 00 with more", testParent + "-x", "fallback", "", "fallback", "", ""},
		{"version ff", "ff" + testParent[2:], "", "", "", "", ""},
		{"upper-case hex", strings.ToUpper(testParent), "", "", "", "", ""},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", "", "", "", ""},
		{"zero parent id", "00-" + testTraceID + "-0000000000000000-01", "", "", "", "", ""},
		{"short", testParent[:54], "", "", "", "", ""},
		{"bad separators", strings.ReplaceAll(testParent, "-", "_"), "", "", "", "", ""},
		{"trace id with space", "", "a b", "", "", "", ""},
		{"trace id with newline", "", "a\nb", "x\ny", "", "", ""},
		{"trace id too long", "", strings.Repeat("a", 65), strings.Repeat("s", 33), "", "", ""},
		{"longest", "", strings.Repeat("a", 64), strings.Repeat("s", 32), strings.Repeat("a", 64), "", strings.Repeat("s", 32)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := dohHead{traceParent: tc.parent, traceID: tc.id, traceStage: tc.stage}
			id, parent, stage := h.trace()
			if id != tc.wantID || parent != tc.wantParent || stage != tc.wSt {
				t.Fatalf("got %q %q %q, want %q %q %q", id, parent, stage, tc.wantID, tc.wantParent, tc.wSt)
			}
		})
	}
}

// FuzzDoHTraceHead: whatever the trace fields hold, what is taken is
// either empty or a well-formed token or traceparent.
func FuzzDoHTraceHead(f *testing.F) {
	f.Add(testParent, "req-1", "cache")
	f.Add("cc-"+testTraceID+"-00f067aa0ba902b7-01-x", "", "")
	f.Add("", "a\r\nb", strings.Repeat("s", 40))
	f.Fuzz(func(t *testing.T, parent, id, stage string) {
		h := dohHead{traceParent: parent, traceID: id, traceStage: stage}
		gid, gparent, gstage := h.trace()
		if gparent != "" {
			if tid, ok := parseTraceParent(gparent); !ok || tid != gid || len(gparent) != 55 || gparent[:2] != "00" {
				t.Fatalf("taken traceparent %q (id %q) is not well formed", gparent, gid)
			}
		} else if gid != "" && !isTraceToken(gid, maxTraceIDLen) {
			t.Fatalf("taken trace id %q", gid)
		}
		if gstage != "" && !isTraceToken(gstage, maxTraceStageLen) {
			t.Fatalf("taken stage %q", gstage)
		}
	})
}

// TestDoHTraceStacks: every HTTP stack hands the trace fields of the
// request to the pipeline and echoes the query's trace id (and the
// client's traceparent) in the response.
func TestDoHTraceStacks(t *testing.T) {
	t.Parallel()
	pki := testTLS(t)
	h, seen := dohRecording(t, func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		if req.TraceID == "" {
			req.TraceID = "made-here" // as the trace stage does
		}
		return answerA(ctx, req)
	})
	cfg := dohTestConfig(t, fam4, h, pki)
	cfg.HTTP3 = true
	tlsL := startDoH(t, cfg)
	cfg = testConfig(t, fam4, h)
	cfg.H2C = true
	clearL := startDoH(t, cfg)
	get := "/dns-query?dns=" + dohB64(t, query("example.org.", dns.TypeA))
	const absent = "<absent>"
	cases := []struct {
		name                      string
		pathQuery                 string
		hdr                       map[string]string
		wantID, wantParent, wantS string // what the pipeline sees
		wantEchoParent            string
	}{
		{"traceparent", get, map[string]string{"traceparent": testParent}, testTraceID, testParent, "", testParent},
		{"X-DNS-TraceID and X-DNS-Stage", get, map[string]string{"X-DNS-TraceID": "req-7", "X-DNS-Stage": "canary"}, "req-7", "", "canary", absent},
		{"bad traceparent, none made by the client", get, map[string]string{"traceparent": "00-zz"}, "", "", "", absent},
		{"json", "/dns-query?name=example.org&type=A", map[string]string{"traceparent": testParent}, testTraceID, testParent, "", testParent},
	}
	for _, stack := range []struct {
		proto string
		l     *DoH
	}{{"h2", tlsL}, {"h1", tlsL}, {"h3", tlsL}, {"h2c", clearL}, {"h1c", clearL}} {
		t.Run(stack.proto, func(t *testing.T) {
			c := newDoHClient(t, stack.proto, stack.l, pki.roots)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					res := c.do(t, http.MethodGet, tc.pathQuery, tc.hdr, nil)
					if res.StatusCode != http.StatusOK {
						t.Fatalf("status %d (%q)", res.StatusCode, res.body)
					}
					req := <-seen
					wantID := tc.wantID
					if req.TraceID != wantID && !(wantID == "" && req.TraceID == "made-here") || req.TraceParent != tc.wantParent || req.TraceStage != tc.wantS {
						t.Errorf("pipeline saw trace %q %q %q, want %q %q %q", req.TraceID, req.TraceParent, req.TraceStage, wantID, tc.wantParent, tc.wantS)
					}
					if wantID == "" {
						wantID = "made-here"
					}
					if got := res.Header.Values("X-DNS-TraceID"); len(got) != 1 || got[0] != wantID {
						t.Errorf("X-DNS-TraceID %q, want %q", got, wantID)
					}
					got := res.Header.Values("Traceparent")
					if tc.wantEchoParent == absent && len(got) != 0 || tc.wantEchoParent != absent && (len(got) != 1 || got[0] != tc.wantEchoParent) {
						t.Errorf("traceparent %q, want %q", got, tc.wantEchoParent)
					}
					if got := res.Header.Get("Access-Control-Expose-Headers"); got != "X-DNS-TraceID, traceparent" {
						t.Errorf("Access-Control-Expose-Headers %q", got)
					}
				})
			}
		})
	}
}
