package edge

import (
	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// buildANY is always on: a forwarded ANY query gets the minimal answer of
// RFC 8482 unless policy set Request.AllowANY.
func buildANY(*chainBuild) (pipeline.Middleware, error) { return middleware.ANY, nil }

// buildVersion answers version.bind (CH TXT) with the binary's version,
// when the server was given one.
func buildVersion(b *chainBuild) (pipeline.Middleware, error) {
	if b.d.version == "" {
		return nil, nil
	}
	return middleware.Version(b.d.version), nil
}
