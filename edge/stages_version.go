package edge

import (
	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// buildVersion answers version.bind (CH TXT) with the binary's version,
// when the server was given one.
func buildVersion(b *chainBuild) (pipeline.Middleware, error) {
	if b.d.version == "" {
		return nil, nil
	}
	return middleware.Version(b.d.version), nil
}
