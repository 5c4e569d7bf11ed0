// Command mkimage writes dnsedge's container image (see package ociimage)
// as an OCI layout directory and a docker-loadable tarball. make image
// runs it after building the static binary.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/dnsedge/dnsedge/internal/ociimage"
)

func main() {
	var o ociimage.Options
	flag.StringVar(&o.Binary, "binary", "", "the static dnsedge binary to ship")
	flag.StringVar(&o.CABundle, "ca", ociimage.DefaultCABundle, "PEM bundle of trusted roots")
	flag.StringVar(&o.Version, "version", "", "image version (label and tag)")
	flag.StringVar(&o.Revision, "revision", "", "source revision label")
	flag.StringVar(&o.Source, "source", "", "source repository label")
	flag.StringVar(&o.Arch, "arch", "", "image architecture (default the running one)")
	oci := flag.String("oci", "", "OCI layout directory to write")
	tar := flag.String("tar", "", "docker-loadable tarball to write")
	repo := flag.String("repo", "dnsedge", "repository name in the tarball")
	flag.Parse()
	if err := run(o, *oci, *tar, *repo); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(o ociimage.Options, oci, tar, repo string) error {
	if oci == "" && tar == "" {
		return fmt.Errorf("give -oci DIR, -tar FILE or both")
	}
	tag, err := ociimage.Tag(o.Version)
	if err != nil {
		return err
	}
	img, err := ociimage.Build(o)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if oci != "" {
		if err := ociimage.WriteLayout(oci, img, tag); err != nil {
			return err
		}
		fmt.Printf("oci layout %s: %s %s\n", oci, tag, digest)
	}
	if tar != "" {
		if err := ociimage.WriteTarball(tar, img, repo, tag); err != nil {
			return err
		}
		fmt.Printf("tarball %s: %s:%s %s\n", tar, repo, tag, digest)
	}
	return nil
}
