package depsprobe

import (
	_ "github.com/caddyserver/certmagic"
	_ "github.com/quic-go/quic-go"
	_ "github.com/quic-go/quic-go/http3"
	_ "golang.org/x/net/http2"
	_ "golang.org/x/net/http2/h2c"
)
