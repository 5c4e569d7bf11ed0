package ociimage_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/internal/ociimage"
)

// TestDockerfile: the Dockerfile users build makes the image make image
// makes: a static binary with the version linked in, the same user and
// entrypoint, the version label.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms int
	var user, label, build string
	var entry []string
	for line := range strings.Lines(strings.ReplaceAll(string(b), "\\\n", " ")) {
		cmd, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch cmd {
		case "FROM":
			froms++
		case "USER":
			user = rest
		case "LABEL":
			label += rest
		case "RUN":
			build += rest
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &entry); err != nil {
				t.Fatalf("ENTRYPOINT %s: %v (use the exec form)", rest, err)
			}
		}
	}
	if froms < 2 {
		t.Errorf("%d stages, want a builder and a minimal base", froms)
	}
	if user != ociimage.User || !slices.Equal(entry, ociimage.Entrypoint) {
		t.Errorf("USER %q ENTRYPOINT %q, want %q %q", user, entry, ociimage.User, ociimage.Entrypoint)
	}
	if !strings.Contains(label, ociimage.LabelVersion+"=${VERSION}") {
		t.Errorf("LABEL %q lacks %s", label, ociimage.LabelVersion)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "-o /out/dnsedge"} {
		if !strings.Contains(build, want) {
			t.Errorf("the build step lacks %q", want)
		}
	}
}
