package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dnsedge/dnsedge/transport"
	"github.com/miekg/dns"
)

// diagnose probes every path of every upstream (from -config, the embedded
// default, or the URLs given) and prints a table. It exits 1 when any
// path is broken.
func diagnose(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("diagnose", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file whose upstreams to probe")
	probes := fs.Int("probes", 5, "probes per path and protocol")
	timeout := fs.Duration("timeout", 2*time.Second, "timeout per probe")
	name := fs.String("name", ".", "name asked by the reachability probes (type NS)")
	large := fs.String("large", "./DNSKEY", "NAME/TYPE asked with DO and a 4096-byte buffer to test whether an answer over 1232 bytes crosses the path; its answer must be that large (authoritative-only servers refuse ./DNSKEY)")
	bootstrap := fs.String("bootstrap", "", "resolver ip[:port] for upstream host names (default: the config's, or /etc/resolv.conf)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	largeName, largeType, ok := strings.Cut(*large, "/")
	lt, known := dns.StringToType[strings.ToUpper(largeType)]
	if !ok || !known {
		fmt.Fprintf(stderr, "dnsedge diagnose: -large %q must be NAME/TYPE, e.g. example.org/TXT\n", *large)
		return 2
	}
	targets, boot, err := diagnoseTargets(*path, fs.Args(), *bootstrap)
	if err != nil {
		fmt.Fprintf(stderr, "dnsedge diagnose: %v\n", err)
		return 2
	}
	resolver := transport.NewBootstrap(boot)
	defer resolver.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reports := transport.Diagnose(ctx, targets, resolver, transport.ProbeConfig{
		Probes: *probes, Timeout: *timeout, Name: *name, Type: dns.TypeNS, LargeName: largeName, LargeType: lt,
	})
	return printReports(stdout, reports)
}

func diagnoseTargets(path string, urls []string, bootstrap string) ([]transport.Target, []netip.AddrPort, error) {
	var targets []transport.Target
	var boot []netip.AddrPort
	if len(urls) > 0 && path != "" {
		return nil, nil, fmt.Errorf("give either -config or upstream URLs, not both")
	}
	if len(urls) == 0 {
		cfg, err := loadConfig(path)
		if err != nil {
			return nil, nil, err
		}
		for _, u := range cfg.Upstreams {
			ep, err := transport.ParseEndpoint(u.URL)
			if err != nil {
				return nil, nil, err
			}
			pin, _ := transport.ParsePin(u.Family)
			opts, err := u.TLSOptions()
			if err != nil {
				return nil, nil, fmt.Errorf("upstream %s: %w", u.Name, err)
			}
			targets = append(targets, transport.Target{Name: u.Name, Endpoint: ep, Pin: pin, TLS: opts, HTTP3: u.HTTP3})
		}
		for _, b := range cfg.Bootstrap {
			if ap, err := transport.ParseBootstrap(b); err == nil {
				boot = append(boot, ap)
			}
		}
	}
	for _, raw := range urls {
		if !strings.Contains(raw, "://") {
			raw = "udp://" + raw
		}
		ep, err := transport.ParseEndpoint(raw)
		if err != nil {
			return nil, nil, err
		}
		targets = append(targets, transport.Target{Name: raw, Endpoint: ep})
	}
	if bootstrap != "" {
		ap, err := transport.ParseBootstrap(bootstrap)
		if err != nil {
			return nil, nil, err
		}
		boot = []netip.AddrPort{ap}
	}
	return targets, boot, nil
}

func printReports(w io.Writer, reports []transport.PathReport) int {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UPSTREAM\tPROTO\tFAMILY\tADDRESS\tANSWERED\tRTT min/avg/max\tEDNS\tLARGE ANSWER\tSTATUS")
	broken, untested := 0, 0
	for _, r := range reports {
		status := "ok"
		if r.Warning != "" {
			status = "ok (" + r.Warning + ")"
		}
		if r.Broken() {
			broken++
			status = "BROKEN: " + r.Problem
			if r.Err != "" {
				status += " (" + r.Err + ")"
			}
		}
		addr, fam := "-", "-"
		if r.Addr.IsValid() {
			addr, fam = r.Addr.String(), r.Family.String()
		}
		largeAns := "lost"
		switch {
		case r.LargeSize > 0:
			largeAns = fmt.Sprintf("%d bytes", r.LargeSize)
		case r.LargeTC:
			largeAns = "truncated (TC)"
		case r.LargeUntested != "":
			largeAns = "not tested"
			untested++
		}
		rtt := "-"
		if r.Received > 0 {
			rtt = fmt.Sprintf("%s/%s/%s", ms(r.RTTMin), ms(r.RTTAvg), ms(r.RTTMax))
		}
		edns := "no"
		if r.EDNS {
			edns = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", r.Upstream, r.Proto, fam, addr, r.Received, r.Sent, rtt, edns, largeAns, status)
	}
	tw.Flush()
	code := 0
	if broken > 0 {
		fmt.Fprintf(w, "\n%d of %d paths broken\n", broken, len(reports))
		code = 1
	} else {
		fmt.Fprintf(w, "\nall %d paths ok\n", len(reports))
	}
	if untested > 0 {
		fmt.Fprintf(w, "large-answer test not run on %d of %d paths (the -large question got an error or an answer of 1232 bytes or less); use -large NAME/TYPE with an answer over 1232 bytes\n", untested, len(reports))
	}
	return code
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
