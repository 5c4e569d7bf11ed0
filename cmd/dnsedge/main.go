// Command dnsedge is the DNS edge resolver: dnsedge serve runs it, dnsedge
// check validates a configuration, dnsedge diagnose probes upstream paths.
package main

import (
	"fmt"
	"os"
)

const usage = `usage: dnsedge <command> [flags]

commands:
  serve [-config FILE]                  run the resolver (embedded default config without -config)
  check FILE                            validate a configuration file; print every problem
  diagnose [-config FILE | UPSTREAM...] probe every path of every upstream over UDP and TCP
  query [flags] [@URL] NAME [TYPE] [CLASS]  ask one server over udp, tcp, tls, https, h3 or quic; dig-style or -json
  reload [-canary SHARE | -status | -promote | -abort | -rollback]  reload a running dnsedge through its admin API
  policy push DIR --version V           write a policy version to Consul KV and make it active
  policy activate V                     make a policy version in Consul KV the active one
  profile apple|android ...             write an Apple DNS profile; check a DoT server as Android does
  upgrade [-config FILE | -control SOCK] upgrade the running server to the binary on disk, losing no query
  version                               print the version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var code int
	switch cmd {
	case "serve":
		code = serve(args)
	case "check":
		code = check(args, os.Stdout, os.Stderr)
	case "diagnose":
		code = diagnose(args, os.Stdout, os.Stderr)
	case "query":
		code = query(args, os.Stdout, os.Stderr)
	case "reload":
		code = reloadCmd(args, os.Stdout, os.Stderr)
	case "upgrade":
		code = upgradeCmd(args, os.Stdout, os.Stderr)
	case "policy":
		code = policyCmd(args, os.Stdout, os.Stderr)
	case "profile":
		code = profileCmd(args, os.Stdout, os.Stderr)
	case "version":
		fmt.Println("dnsedge", versionString())
	case "help", "-h", "-help", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "dnsedge: unknown command %q\n\n%s", cmd, usage)
		code = 2
	}
	os.Exit(code)
}
