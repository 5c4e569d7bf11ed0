package edge

import (
	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// buildANY is always on: a forwarded ANY query gets the minimal answer of
// RFC 8482 unless policy set Request.AllowANY.
func buildANY(*chainBuild) (pipeline.Middleware, error) { return middleware.ANY, nil }
