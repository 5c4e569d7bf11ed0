package edge_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/edge"
	"go.yaml.in/yaml/v3"
)

// TestDeployKubernetesSidecar loads the sidecar manifests: the ConfigMap's
// configuration validates, and the Pod runs dnsedge on it, resolves
// through it, and probes the endpoints dnsedge serves.
func TestDeployKubernetesSidecar(t *testing.T) {
	data, err := os.ReadFile("../deploy/kubernetes/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type container struct {
		Name           string   `yaml:"name"`
		Image          string   `yaml:"image"`
		Args           []string `yaml:"args"`
		ReadinessProbe struct {
			HTTPGet struct{ Path string } `yaml:"httpGet"`
		} `yaml:"readinessProbe"`
		LivenessProbe struct {
			HTTPGet struct{ Path string } `yaml:"httpGet"`
		} `yaml:"livenessProbe"`
		VolumeMounts []struct {
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
		Env []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
	}
	var files map[string]string
	var sidecar *container
	var nameservers []string
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
			Spec struct {
				DNSConfig struct {
					Nameservers []string `yaml:"nameservers"`
				} `yaml:"dnsConfig"`
				Containers []container `yaml:"containers"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch doc.Kind {
		case "ConfigMap":
			files = doc.Data
		case "Pod":
			nameservers = doc.Spec.DNSConfig.Nameservers
			for i, c := range doc.Spec.Containers {
				if c.Name == "dnsedge" {
					sidecar = &doc.Spec.Containers[i]
				}
			}
		}
	}
	// The ConfigMap's keys as the volume mounts them: the zone files the
	// configuration names must load.
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := edge.LoadFile(filepath.Join(dir, "dnsedge.yaml"))
	if err == nil {
		err = cfg.CheckFiles()
	}
	if err != nil {
		t.Fatalf("the ConfigMap's configuration does not validate:\n%v", err)
	}
	if sidecar == nil {
		t.Fatal("no dnsedge container in the Pod")
	}
	// The image's entrypoint is "dnsedge serve" (internal/ociimage and
	// the Dockerfile): the container gives its flags only.
	if len(sidecar.Args) != 2 || sidecar.Args[0] != "-config" ||
		len(sidecar.VolumeMounts) == 0 || path.Dir(sidecar.Args[1]) != sidecar.VolumeMounts[0].MountPath {
		t.Fatalf("dnsedge container args %v do not serve the mounted config %v", sidecar.Args, sidecar.VolumeMounts)
	}
	// The image is named by version: a tag that is not "latest", or a
	// digest.
	if _, tag, ok := strings.Cut(path.Base(sidecar.Image), ":"); !ok || tag == "" || tag == "latest" {
		if !strings.Contains(sidecar.Image, "@sha256:") {
			t.Errorf("dnsedge image %q is not named by version", sidecar.Image)
		}
	}
	if sidecar.ReadinessProbe.HTTPGet.Path != "/readyz" || sidecar.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Fatalf("probes: %+v %+v", sidecar.ReadinessProbe, sidecar.LivenessProbe)
	}
	listens := false
	for _, l := range cfg.Listeners {
		for _, ns := range nameservers {
			if l.Address == ns+":53" {
				listens = true
			}
		}
	}
	if !listens || cfg.Metrics.Address == "" {
		t.Fatalf("the pod's nameservers %v are not dnsedge's listeners %+v, or metrics are off", nameservers, cfg.Listeners)
	}
	// One P as long as the sidecar serves plain DNS only (the manifest
	// says why).
	procs := ""
	for _, e := range sidecar.Env {
		if e.Name == "GOMAXPROCS" {
			procs = e.Value
		}
	}
	plain := true
	for _, l := range cfg.Listeners {
		plain = plain && (l.Proto == "udp" || l.Proto == "tcp")
	}
	if plain != (procs == "1") {
		t.Errorf("GOMAXPROCS %q for listeners %+v: want 1 exactly when all are UDP or TCP", procs, cfg.Listeners)
	}
}

// TestDeploySystemdUnit: the unit checks the configuration before it
// starts and reloads, serves the same file, and reloads with SIGHUP.
func TestDeploySystemdUnit(t *testing.T) {
	f, err := os.Open("../deploy/systemd/dnsedge.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := make(map[string][]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = append(keys[k], v)
		}
	}
	start := strings.Fields(first(keys["ExecStart"]))
	pre := strings.Fields(first(keys["ExecStartPre"]))
	if len(start) != 4 || start[1] != "serve" || start[2] != "-config" {
		t.Fatalf("ExecStart = %v", start)
	}
	if len(pre) != 3 || pre[1] != "check" || pre[2] != start[3] || pre[0] != start[0] {
		t.Fatalf("ExecStartPre %v does not check the served file %s", pre, start[3])
	}
	if r := keys["ExecReload"]; len(r) != 2 || !strings.Contains(r[1], "-HUP $MAINPID") {
		t.Fatalf("ExecReload = %v, want a check and then SIGHUP", r)
	}
	// An upgrade hands the main process over to the new one (MAINPID=,
	// sent by the old process) and readiness is notified.
	if first(keys["Type"]) != "notify" || first(keys["NotifyAccess"]) != "all" {
		t.Errorf("Type = %v, NotifyAccess = %v, want notify and all (upgrades move MAINPID)", keys["Type"], keys["NotifyAccess"])
	}
	// With DynamicUser and ProtectSystem=strict nothing is writable but
	// the state directory, where certificates are made.
	if first(keys["StateDirectory"]) != "dnsedge" {
		t.Errorf("StateDirectory = %v, want dnsedge (DefaultStateDir reads $STATE_DIRECTORY)", keys["StateDirectory"])
	}
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}
