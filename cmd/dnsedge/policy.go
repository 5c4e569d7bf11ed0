package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dnsedge/dnsedge/edge/consul"
)

const policyUsage = `usage:
  dnsedge policy push DIR --version V [flags]   write DIR/route and DIR/weight as version V in Consul KV
                                                in one transaction, then make V the active version
  dnsedge policy activate V [flags]             make V the active version (a rollback is activating an older one)

flags:
  -config FILE    take the consul section (address, token, tls, policy.prefix) from FILE
  -consul ADDR    the agent's HTTP address (default: the config's, else 127.0.0.1:8500)
  -prefix P       the policy prefix (default: the config's, else gray/strategy/)
  -timeout D      give up after D (default 30s)
`

// policyCmd runs the policy subcommands.
func policyCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("policy "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, policyUsage) }
	cfgPath := fs.String("config", "", "configuration file")
	addr := fs.String("consul", "", "consul agent HTTP address")
	prefix := fs.String("prefix", "", "policy prefix")
	version := fs.String("version", "", "version to push")
	timeout := fs.Duration("timeout", 30*time.Second, "timeout")
	// The positional argument may come before the flags.
	var pos string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pos, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if pos == "" && fs.NArg() > 0 {
		pos = fs.Arg(0)
	}
	cc, err := policyConsul(*cfgPath, *addr, *prefix)
	if err != nil {
		fmt.Fprintf(stderr, "dnsedge policy %s: %v\n", sub, err)
		return 1
	}
	client, err := consul.NewClient(cc)
	if err != nil {
		fmt.Fprintf(stderr, "dnsedge policy %s: %v\n", sub, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	switch sub {
	case "push":
		if pos == "" || *version == "" {
			fmt.Fprint(stderr, policyUsage)
			return 2
		}
		err = consul.Push(ctx, client, cc.Policy.Prefix, pos, *version)
		if err == nil {
			fmt.Fprintf(stdout, "pushed %s%s/ and made it active\n", cc.Policy.Prefix, *version)
		}
	case "activate":
		if pos == "" {
			fmt.Fprint(stderr, policyUsage)
			return 2
		}
		err = consul.Activate(ctx, client, cc.Policy.Prefix, pos)
		if err == nil {
			fmt.Fprintf(stdout, "%s%s is now %s\n", cc.Policy.Prefix, consul.ActiveKey, pos)
		}
	default:
		fmt.Fprintf(stderr, "dnsedge policy: unknown subcommand %q\n\n%s", sub, policyUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "dnsedge policy %s: %v\n", sub, err)
		if errors.Is(err, consul.ErrActiveMoved) || errors.Is(err, consul.ErrVersionExists) {
			return 3
		}
		return 1
	}
	return 0
}

// policyConsul returns the consul section to use: the configuration
// file's, with the flags over it.
func policyConsul(cfgPath, addr, prefix string) (consul.Config, error) {
	var cc consul.Config
	if cfgPath != "" {
		cfg, err := loadConfig(cfgPath)
		if err != nil {
			return cc, err
		}
		cc = cfg.Consul
	}
	if addr != "" {
		cc.Address = addr
	}
	if cc.Address == "" {
		cc.Address = "127.0.0.1:8500"
	}
	if prefix != "" {
		cc.Policy.Prefix = prefix
	}
	cc = cc.WithDefaults()
	if err := cc.Validate(); err != nil {
		return cc, fmt.Errorf("consul: %w", err)
	}
	return cc, nil
}
