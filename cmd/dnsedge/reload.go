package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// reloadUsage is reload's help.
const reloadUsage = `usage: dnsedge reload [flags]

Reloads a running dnsedge through its admin API: it re-reads its
configuration file, as SIGHUP does. With -canary it tries the file on a
share of live queries first, and commits it when the canary passes.

  dnsedge reload                      reload now
  dnsedge reload -canary 5%           start a canary on 5 % of the queries
  dnsedge reload -status              the canary's state and the rollback watch
  dnsedge reload -promote | -abort    commit or discard the candidate
  dnsedge reload -rollback            go back to the configuration before the last reload

The token needs access: admin. It is taken from -token, else the
environment variable DNSEDGE_ADMIN_TOKEN, else -token-file.

flags:
`

// reloadCmd runs dnsedge reload; it returns the exit code: 0 done, 1 the
// server refused or failed, 2 bad usage.
func reloadCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, reloadUsage); fs.PrintDefaults() }
	adminURL := fs.String("admin", "http://127.0.0.1:9154", "the admin listener's URL")
	token := fs.String("token", "", "bearer token (default $DNSEDGE_ADMIN_TOKEN, then -token-file)")
	tokenFile := fs.String("token-file", "", "file holding the bearer token")
	caFile := fs.String("ca", "", "CA certificate (PEM) the admin listener's certificate is checked against, for https")
	share := fs.String("canary", "", "start a canary on this share of queries: 5% or 0.05")
	answerShare := fs.String("answer-share", "", "share of queries whose answers are compared too (default: the canary section's)")
	controlShare := fs.String("control-share", "", "share of queries resolved again through the live configuration, as a control")
	window := fs.Duration("window", 0, "how long the thresholds must hold before the canary passes (default: the canary section's)")
	minSamples := fs.Int("min-samples", 0, "samples a verdict needs (default: the canary section's)")
	manual := fs.Bool("manual", false, "with -canary: wait for -promote after a pass instead of committing at once")
	configFile := fs.String("config", "", "with -canary: try this file instead of the one dnsedge runs with")
	status := fs.Bool("status", false, "print the canary's state and the rollback watch")
	promote := fs.Bool("promote", false, "commit the candidate of the canary under way")
	abort := fs.Bool("abort", false, "discard the candidate of the canary under way")
	rollback := fs.Bool("rollback", false, "swap the configuration before the last reload back in, while its watch lasts")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the server")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dnsedge reload: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	actions := 0
	for _, b := range []bool{*share != "", *status, *promote, *abort, *rollback} {
		if b {
			actions++
		}
	}
	if actions > 1 {
		fmt.Fprintln(stderr, "dnsedge reload: give one of -canary, -status, -promote, -abort, -rollback")
		return 2
	}
	tok, err := adminToken(*token, *tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "dnsedge reload: %v\n", err)
		return 2
	}
	c, err := adminClient(*caFile, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "dnsedge reload: %v\n", err)
		return 2
	}
	base := strings.TrimSuffix(*adminURL, "/")
	var method, path string
	var body any
	switch {
	case *status:
		method, path = http.MethodGet, "/admin/v1/canary"
	case *promote:
		method, path = http.MethodPost, "/admin/v1/canary/promote"
	case *abort:
		method, path = http.MethodPost, "/admin/v1/canary/abort"
	case *rollback:
		method, path = http.MethodPost, "/admin/v1/rollback"
	case *share != "":
		b := map[string]any{}
		for _, f := range []struct{ name, v string }{{"share", *share}, {"answer_share", *answerShare}, {"control_share", *controlShare}} {
			if f.v == "" {
				continue
			}
			x, err := parseShare(f.v)
			if err != nil {
				fmt.Fprintf(stderr, "dnsedge reload: -%s: %v\n", strings.ReplaceAll(f.name, "_", "-"), err)
				return 2
			}
			b[f.name] = x
		}
		if *window > 0 {
			b["window"] = window.String()
		}
		if *minSamples > 0 {
			b["min_samples"] = *minSamples
		}
		if *manual {
			b["auto_promote"] = false
		}
		if *configFile != "" {
			data, err := os.ReadFile(*configFile)
			if err != nil {
				fmt.Fprintf(stderr, "dnsedge reload: %v\n", err)
				return 2
			}
			b["config"] = string(data)
		}
		method, path, body = http.MethodPost, "/admin/v1/canary", b
	default:
		method, path = http.MethodPost, "/admin/v1/reload"
	}
	out, err := adminCall(c, method, base+path, tok, body)
	if err != nil {
		fmt.Fprintf(stderr, "dnsedge reload: %v\n", err)
		return 1
	}
	if *status {
		rb, err := adminCall(c, http.MethodGet, base+"/admin/v1/rollback", tok, nil)
		if err != nil {
			fmt.Fprintf(stderr, "dnsedge reload: %v\n", err)
			return 1
		}
		out = fmt.Appendf(nil, `{"canary":%s,"rollback":%s}`, bytes.TrimSpace(out), bytes.TrimSpace(rb))
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") != nil {
		pretty.Reset()
		pretty.Write(out)
	}
	fmt.Fprintln(stdout, strings.TrimSpace(pretty.String()))
	return 0
}

// parseShare reads "5%" or "0.05" as 0.05.
func parseShare(s string) (float64, error) {
	pct := strings.HasSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(s, "%")), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a share: write 5%% or 0.05", s)
	}
	if pct {
		v /= 100
	}
	if !(v > 0 && v <= 1) { // NaN too
		return 0, fmt.Errorf("%q is not a share between 0 and 100%%", s)
	}
	return v, nil
}

// adminToken returns the bearer token from the flag, the environment or
// the file, in that order.
func adminToken(flagToken, file string) (string, error) {
	if flagToken != "" {
		return flagToken, nil
	}
	if t := os.Getenv("DNSEDGE_ADMIN_TOKEN"); t != "" {
		return t, nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read token: %w", err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("token file %s is empty", file)
	}
	return "", errors.New("no token: give -token, DNSEDGE_ADMIN_TOKEN or -token-file")
}

func adminClient(caFile string, timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the admin listener is local; a proxy must not see the token
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// adminCall sends one request and returns the response body; a status
// other than 2xx is an error carrying the server's message.
func adminCall(c *http.Client, method, url, token string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
			Field string `json:"field"`
		}
		if json.Unmarshal(out, &e) == nil && e.Error != "" {
			if e.Field != "" {
				return nil, fmt.Errorf("%s: %s: %s", resp.Status, e.Field, e.Error)
			}
			return nil, fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return nil, fmt.Errorf("%s", resp.Status)
	}
	return out, nil
}
