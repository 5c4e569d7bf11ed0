// Package ociimage builds dnsedge's container image without a container
// engine: one layer holding the static binary, a CA bundle and the
// passwd/group entries of the unprivileged user it runs as, and an image
// configuration that names that user, the entrypoint and the version.
// make image calls it through the mkimage command; nothing in it is part
// of the dnsedge binary.
package ociimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What every image carries. The user is the "nonroot" user of distroless
// images (65532), so the Dockerfile's image and this one agree, and so does
// the runAsUser of the Kubernetes manifests.
const (
	BinaryPath   = "/dnsedge"
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
	User         = "65532:65532"
	// DefaultCABundle is where Debian's ca-certificates package keeps the
	// bundle.
	DefaultCABundle = "/etc/ssl/certs/ca-certificates.crt"

	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
)

// Entrypoint is the image's entrypoint: dnsedge serve, to which a
// container's arguments are appended (-config FILE).
var Entrypoint = []string{BinaryPath, "serve"}

// Options describe one image.
type Options struct {
	// Binary is the dnsedge binary to ship: built with CGO_ENABLED=0, so
	// it needs no C library in the image. Required.
	Binary string
	// CABundle is the PEM file of trusted roots copied to CABundlePath,
	// where Go's crypto/x509 looks on Linux. Default DefaultCABundle.
	CABundle string
	// Version is the org.opencontainers.image.version label. Required.
	Version string
	// Revision and Source, when set, are the revision and source labels.
	Revision, Source string
	// Arch is the image's architecture; default the running one (the
	// binary must be built for it).
	Arch string
	// Created is the image's creation time; the zero value leaves the
	// configuration without one, so the same inputs give the same digest.
	Created time.Time
}

// Build returns the image Options describe, as an OCI image (OCI manifest,
// configuration and gzip layer media types).
func Build(o Options) (v1.Image, error) {
	if o.Binary == "" || o.Version == "" {
		return nil, errors.New("build image: a binary and a version are required")
	}
	if o.CABundle == "" {
		o.CABundle = DefaultCABundle
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("build image: read binary: %w", err)
	}
	ca, err := os.ReadFile(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("build image: read ca bundle: %w", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("build image: ca bundle %s holds no PEM certificate", o.CABundle)
	}
	fs, err := rootFS(bin, ca)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(fs)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("build image: layer: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, fmt.Errorf("build image: append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.Arch
	if !o.Created.IsZero() {
		cf.Created = v1.Time{Time: o.Created.UTC()}
	}
	labels := map[string]string{LabelVersion: o.Version}
	if o.Revision != "" {
		labels[LabelRevision] = o.Revision
	}
	if o.Source != "" {
		labels[LabelSource] = o.Source
	}
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: Entrypoint,
		WorkingDir: "/",
		Env:        []string{"PATH=/", "SSL_CERT_FILE=" + CABundlePath},
		Labels:     labels,
		// The ports of the default listeners; documentation only.
		ExposedPorts: map[string]struct{}{"53/udp": {}, "53/tcp": {}},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("build image: config: %w", err)
	}
	return img, nil
}

// rootFS returns the layer's tar stream: directories, the binary, the CA
// bundle, passwd and group with the nonroot user, and a world-writable
// /tmp. Every entry belongs to root and has the Unix epoch as its time,
// so the layer depends on its contents only.
func rootFS(bin, ca []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	uid, gid, _ := strings.Cut(User, ":")
	passwd := "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:" + uid + ":" + gid + ":nonroot:/:/sbin/nologin\n"
	group := "root:x:0:\nnonroot:x:" + gid + ":\n"
	steps := []error{
		dir("etc", 0o755),
		file("etc/passwd", 0o644, []byte(passwd)),
		file("etc/group", 0o644, []byte(group)),
		dir("etc/ssl", 0o755),
		dir("etc/ssl/certs", 0o755),
		file(strings.TrimPrefix(CABundlePath, "/"), 0o644, ca),
		dir("tmp", 0o1777),
		file(strings.TrimPrefix(BinaryPath, "/"), 0o755, bin),
		tw.Close(),
	}
	if err := errors.Join(steps...); err != nil {
		return nil, fmt.Errorf("write layer: %w", err)
	}
	return buf.Bytes(), nil
}
