package ociimage

import (
	"fmt"
	"os"
	"regexp"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// refNameAnnotation names an image in an OCI layout's index (OCI image
// spec, annotations.md): skopeo's oci:DIR:NAME and other tools find the
// image by it.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// tagRE is a valid image tag (OCI distribution spec).
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// Tag returns version as an image tag: characters a tag may not hold
// ("+" of a build suffix, "/" of a branch) become "-".
func Tag(version string) (string, error) {
	t := regexp.MustCompile(`[^A-Za-z0-9_.-]`).ReplaceAllString(version, "-")
	if !tagRE.MatchString(t) {
		return "", fmt.Errorf("version %q cannot be an image tag", version)
	}
	return t, nil
}

// WriteLayout writes img to dir as an OCI image layout (replacing what
// dir held), named tag in the index.
func WriteLayout(dir string, img v1.Image, tag string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("write oci layout: %w", err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write oci layout: %w", err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: tag})); err != nil {
		return fmt.Errorf("write oci layout: %w", err)
	}
	return nil
}

// WriteTarball writes img to file as a tarball docker load (and podman
// load) accepts, tagged repo:tag.
func WriteTarball(file string, img v1.Image, repo, tag string) error {
	ref, err := name.NewTag(repo+":"+tag, name.WeakValidation)
	if err != nil {
		return fmt.Errorf("write image tarball: %w", err)
	}
	if err := tarball.WriteToFile(file, ref, img); err != nil {
		return fmt.Errorf("write image tarball: %w", err)
	}
	return nil
}
