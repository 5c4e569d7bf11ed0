package edgetls

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSelfSignedChromium loads a page served with the self-signed leaf in
// headless Chromium, first without trusting ca.pem (the page must fail,
// so the test can fail) and then with ca.pem in Chromium's NSS store.
// It needs chromium and certutil (libnss3-tools); without them it skips,
// unless E2E_REQUIRED=1.
func TestSelfSignedChromium(t *testing.T) {
	t.Parallel()
	chromium, err1 := exec.LookPath("chromium")
	certutil, err2 := exec.LookPath("certutil")
	if err1 != nil || err2 != nil {
		if os.Getenv("E2E_REQUIRED") == "1" {
			t.Fatalf("chromium or certutil missing and E2E_REQUIRED=1: %v %v", err1, err2)
		}
		t.Skipf("chromium or certutil missing: %v %v", err1, err2)
	}
	log, _ := testLogger(t, slog.LevelWarn)
	c, err := Build(context.Background(), Spec{SelfSigned: true}, t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const marker = "dnsedge-self-signed-ok"
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "<html><body>%s</body></html>", marker)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug), // the rejected handshakes
	}
	ln := listenTLS(t, c.ServerConfig([]string{"h2", "http/1.1"}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	_, port, _ := strings.Cut(ln.Addr().String(), ":")

	load := func(t *testing.T, home, url string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// Loopback only: background services off, and everything but
		// loopback (bypassed implicitly) sent to a proxy that is not there.
		cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
			"--no-first-run", "--disable-background-networking", "--disable-component-update",
			"--disable-sync", "--no-pings", "--proxy-server=http://127.0.0.1:9",
			"--user-data-dir="+filepath.Join(home, "profile"), "--dump-dom", url)
		cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
		out, err := cmd.Output()
		if err != nil && ctx.Err() != nil {
			t.Fatalf("chromium: %v", err)
		}
		return string(out)
	}

	untrusted := t.TempDir()
	if out := load(t, untrusted, "https://localhost:"+port+"/"); strings.Contains(out, marker) {
		t.Fatal("chromium loaded the page without trusting ca.pem; the check below proves nothing")
	}

	trusted := t.TempDir()
	nssdb := "sql:" + filepath.Join(trusted, ".pki", "nssdb")
	if err := os.MkdirAll(filepath.Join(trusted, ".pki", "nssdb"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-N", "-d", nssdb, "--empty-password"},
		{"-A", "-d", nssdb, "-n", "dnsedge", "-t", "C,,", "-i", c.CAFile()},
	} {
		if out, err := exec.Command(certutil, args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %v: %v\n%s", args, err, out)
		}
	}
	for _, host := range []string{"localhost", "127.0.0.1"} {
		if out := load(t, trusted, "https://"+host+":"+port+"/"); !strings.Contains(out, marker) {
			t.Errorf("chromium trusting ca.pem rejected https://%s: %.300s", host, out)
		}
	}
}
