package ociimage_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/internal/ociimage"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

const zone = `$ORIGIN test.example.
@    60 IN SOA ns hostmaster 1 3600 600 86400 30
www  60 IN A 192.0.2.10
`

// caBundle returns Debian's CA bundle, skipping the test when the
// ca-certificates package is missing unless E2E_REQUIRED=1.
func caBundle(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(ociimage.DefaultCABundle); err != nil {
		if os.Getenv("E2E_REQUIRED") == "1" {
			t.Fatalf("%s is required (E2E_REQUIRED=1): %v", ociimage.DefaultCABundle, err)
		}
		t.Skipf("no CA bundle: %v", err)
	}
	return ociimage.DefaultCABundle
}

// TestImage builds the image as make image does (a static binary, then
// Build, WriteLayout and WriteTarball), reads it back, checks its
// configuration, takes the binary out of its layer and has it answer a
// query on loopback.
func TestImage(t *testing.T) {
	ca := caBundle(t)
	dir := t.TempDir()
	const version = "v16.8.0-test"
	bin := filepath.Join(dir, "dnsedge")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", bin, "../../cmd/dnsedge")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build dnsedge: %v\n%s", err, out)
	}
	tag, err := ociimage.Tag(version)
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Build(ociimage.Options{Binary: bin, CABundle: ca, Version: version, Revision: "0123abcd", Source: "https://github.com/dnsedge/dnsedge"})
	if err != nil {
		t.Fatal(err)
	}
	oci, tarFile := filepath.Join(dir, "image"), filepath.Join(dir, "image.tar")
	if err := ociimage.WriteLayout(oci, img, tag); err != nil {
		t.Fatal(err)
	}
	if err := ociimage.WriteTarball(tarFile, img, "dnsedge", tag); err != nil {
		t.Fatal(err)
	}

	// Read both back with the library, as skopeo and docker load would.
	got := fromLayout(t, oci, tag)
	fromTar, err := tarball.ImageFromPath(tarFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := got.ConfigName()
	if d, err := fromTar.ConfigName(); err != nil || d != want {
		t.Errorf("tarball config %v (%v), layout config %v", d, err, want)
	}

	cf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || !slices.Equal(cf.Config.Entrypoint, []string{"/dnsedge", "serve"}) ||
		cf.Config.Labels["org.opencontainers.image.version"] != version || cf.Config.Labels["org.opencontainers.image.revision"] != "0123abcd" || cf.OS != "linux" {
		t.Fatalf("image config: user %q entrypoint %q labels %v os %q", cf.Config.User, cf.Config.Entrypoint, cf.Config.Labels, cf.OS)
	}
	files := layerFiles(t, got)
	caWant, _ := os.ReadFile(ca)
	if f, ok := files["etc/ssl/certs/ca-certificates.crt"]; !ok || !bytes.Equal(f.data, caWant) {
		t.Errorf("the layer's CA bundle is missing or differs from %s", ca)
	}
	if !strings.Contains(string(files["etc/passwd"].data), "nonroot:x:65532:65532:") || !strings.Contains(string(files["etc/group"].data), "nonroot:x:65532:") {
		t.Errorf("passwd/group lack the nonroot user:\n%s%s", files["etc/passwd"].data, files["etc/group"].data)
	}
	f, ok := files["dnsedge"]
	if !ok || f.mode&0o111 == 0 {
		t.Fatalf("no executable /dnsedge in the layer (%v)", ok)
	}
	run := filepath.Join(t.TempDir(), "dnsedge")
	if err := os.WriteFile(run, f.data, 0o755); err != nil {
		t.Fatal(err)
	}
	checkStatic(t, run)
	if out, err := exec.Command(run, "version").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "dnsedge "+version {
		t.Errorf("dnsedge version: %q %v", out, err)
	}

	// The entrypoint with a configuration, as the sidecar runs it.
	up := transporttest.StartFault(t, zone)
	cfg := filepath.Join(t.TempDir(), "dnsedge.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "listeners:\n  - {proto: udp, address: \"127.0.0.1:0\"}\nupstreams:\n  - {name: up, url: \"udp://%s\"}\n", up.AddrV4()), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(slices.Clone(cf.Config.Entrypoint[1:]), "-config", cfg)
	addr := serve(t, run, args)
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	q := new(dns.Msg)
	q.SetQuestion("www.test.example.", dns.TypeA)
	r, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "192.0.2.10") {
		t.Fatalf("answer from the image's binary:\n%v", r)
	}
}

// fromLayout returns the image the OCI layout in dir names tag.
func fromLayout(t *testing.T, dir, tag string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == tag {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no image named %q in the layout: %+v", tag, m.Manifests)
	return nil
}

type file struct {
	mode int64
	data []byte
}

// layerFiles returns the regular files of img's only layer by name.
func layerFiles(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := make(map[string]file)
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = file{mode: h.Mode, data: data}
	}
	return files
}

// checkStatic fails unless bin is an ELF executable without an
// interpreter or shared libraries: it must run in an image with no C
// library.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has an ELF interpreter: not static", bin)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", bin, libs)
	}
}

var listenLine = regexp.MustCompile(`^listening on udp (\S+)$`)

// serve starts bin with args and returns the address of its UDP listener
// once its start-up summary names it; the process is stopped at cleanup.
func serve(t *testing.T, bin string, args []string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir(), "STATE_DIRECTORY=")
	logFile := filepath.Join(t.TempDir(), "stderr")
	logs, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listenLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cancel()
			<-done
		}
		cancel()
	})
	select {
	case a := <-found:
		return a
	case <-time.After(15 * time.Second):
		b, _ := os.ReadFile(logFile)
		t.Fatalf("dnsedge did not start:\n%s", b)
	}
	return ""
}

func TestTag(t *testing.T) {
	tests := []struct {
		name, version, want string
		fail                bool
	}{
		{name: "release", version: "v1.4.0", want: "v1.4.0"},
		{name: "describe", version: "v1.4.0-3-g01c24ab-dirty", want: "v1.4.0-3-g01c24ab-dirty"},
		{name: "build suffix", version: "1.4.0+linux/amd64", want: "1.4.0-linux-amd64"},
		{name: "empty", version: "", fail: true},
		{name: "leading dot", version: ".x", fail: true},
		{name: "too long", version: strings.Repeat("a", 129), fail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ociimage.Tag(tt.version)
			if (err != nil) != tt.fail || got != tt.want {
				t.Fatalf("Tag(%q) = %q, %v", tt.version, got, err)
			}
		})
	}
}
