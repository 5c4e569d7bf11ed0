package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dnsedge/dnsedge/internal/profile"
)

const profileUsage = `usage:
  dnsedge profile apple (--doh URL | --dot HOST) [flags]   write an Apple configuration profile (.mobileconfig)
  dnsedge profile android HOST [flags]                     check HOST the way Android's Private DNS validates it
`

// profileCmd runs "dnsedge profile apple|android".
func profileCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, profileUsage)
		return 2
	}
	switch args[0] {
	case "apple":
		return profileApple(args[1:], stdout, stderr)
	case "android":
		return profileAndroid(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, profileUsage)
		return 0
	}
	fmt.Fprintf(stderr, "dnsedge profile: unknown platform %q\n%s", args[0], profileUsage)
	return 2
}

// listFlag is a repeatable flag; a value may also hold several items
// separated by commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// profileApple writes a .mobileconfig with a com.apple.dnsSettings.managed
// payload. Bad input exits 2 with one line that says what is wrong.
func profileApple(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("profile apple", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a profile.Apple
	var addrs, domains, ifaces, ssids listFlag
	fs.StringVar(&a.DoH, "doh", "", "DNS-over-HTTPS URL, e.g. https://dns.example/dns-query")
	fs.StringVar(&a.DoT, "dot", "", "DNS-over-TLS server name, e.g. dns.example (port 853)")
	fs.Var(&addrs, "address", "server IP address (ServerAddresses); repeatable")
	fs.Var(&domains, "match-domain", "use the server only for names under this domain (SupplementalMatchDomains); repeatable")
	fs.Var(&ifaces, "on-demand", "apply the settings only on these interface types: wifi, cellular, ethernet (comma-separated)")
	fs.Var(&ssids, "except-ssid", "do not apply the settings on this Wi-Fi network; repeatable")
	ca := fs.String("ca", "", "PEM file of the CA that issued the server's certificate, installed as a root payload")
	fs.StringVar(&a.Identifier, "identifier", "", "PayloadIdentifier of the profile (default dnsedge.HOST)")
	fs.StringVar(&a.DisplayName, "name", "", "PayloadDisplayName (default \"DNS over HTTPS (HOST)\" or \"DNS over TLS (HOST)\")")
	fs.StringVar(&a.Organization, "organization", "", "PayloadOrganization")
	fs.StringVar(&a.UUIDSeed, "uuid-seed", "", "derive the PayloadUUIDs from this string instead of making random ones")
	signCert := fs.String("sign-cert", "", "PEM certificate to sign the profile with (CMS)")
	signKey := fs.String("sign-key", "", "PEM private key of -sign-cert")
	signChain := fs.String("sign-chain", "", "PEM intermediates of -sign-cert, issuer first")
	out := fs.String("o", "-", "output file; - is standard output")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "dnsedge profile apple: "+format+"\n", args...)
		return 2
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	var bad error
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "doh" && a.DoH == "" {
			bad = fmt.Errorf("%w: -doh is empty", profile.ErrDoHURL)
		}
		if f.Name == "dot" && a.DoT == "" {
			bad = fmt.Errorf("%w: -dot is empty; DoT needs the host name in the server's certificate", profile.ErrDoTName)
		}
	})
	if bad != nil {
		return fail("%v", bad)
	}
	a.ServerAddresses, a.MatchDomains = addrs, domains
	if len(ifaces) > 0 || len(ssids) > 0 {
		od := &profile.OnDemand{ExceptSSIDs: ssids}
		for _, i := range ifaces {
			switch strings.ToLower(i) {
			case "wifi", "wi-fi":
				od.Interfaces = append(od.Interfaces, profile.WiFi)
			case "cellular":
				od.Interfaces = append(od.Interfaces, profile.Cellular)
			case "ethernet":
				od.Interfaces = append(od.Interfaces, profile.Ethernet)
			default:
				return fail("-on-demand: unknown interface type %q (wifi, cellular, ethernet)", i)
			}
		}
		a.OnDemand = od
	}
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			return fail("-ca: %v", err)
		}
		a.RootCAs = pem
	}
	var signer *profile.Signer
	if *signCert != "" || *signKey != "" || *signChain != "" {
		if *signCert == "" || *signKey == "" {
			return fail("signing needs both -sign-cert and -sign-key")
		}
		var files [3][]byte
		for i, name := range []string{*signCert, *signKey, *signChain} {
			if name == "" {
				continue
			}
			b, err := os.ReadFile(name)
			if err != nil {
				return fail("%v", err)
			}
			files[i] = b
		}
		var err error
		if signer, err = profile.LoadSigner(files[0], files[1], files[2]); err != nil {
			return fail("%v", err)
		}
	}
	data, err := a.Build(rand.Reader)
	if err != nil {
		return fail("%v", err)
	}
	if signer != nil {
		if data, err = signer.Sign(data); err != nil {
			fmt.Fprintf(stderr, "dnsedge profile apple: %v\n", err)
			return 1
		}
	}
	if *out == "-" {
		_, err = stdout.Write(data)
	} else {
		err = os.WriteFile(*out, data, 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "dnsedge profile apple: write: %v\n", err)
		return 1
	}
	return 0
}

// profileAndroid checks a DoT server as Android's Private DNS does and
// prints each step; it exits 0 when every step passes for every address,
// 1 when one fails, 2 on bad usage.
func profileAndroid(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("profile android", flag.ContinueOnError)
	fs.SetOutput(stderr)
	resolver := fs.String("resolver", "", "ip[:port] of the DNS server to resolve HOST with (default the system resolver)")
	port := fs.Uint("port", 853, "DoT port (Android always uses 853)")
	ca := fs.String("ca", "", "PEM file of roots to verify the certificate with (default the system roots; SSL_CERT_FILE also works)")
	timeout := fs.Duration("timeout", 5*time.Second, "timeout of each step")
	// HOST may come before or after the flags.
	var host string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		host, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if host == "" && fs.NArg() > 0 {
		host = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return 2
		}
	}
	if host == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dnsedge profile android: give one HOST, the name typed into Private DNS\n")
		return 2
	}
	if *port == 0 || *port > 65535 {
		fmt.Fprintf(stderr, "dnsedge profile android: -port %d is not a port\n", *port)
		return 2
	}
	a := &profile.Android{Host: host, Port: uint16(*port), Resolver: *resolver, Timeout: *timeout}
	if err := a.Validate(); err != nil {
		fmt.Fprintf(stderr, "dnsedge profile android: %v\n", err)
		return 2
	}
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			fmt.Fprintf(stderr, "dnsedge profile android: -ca: %v\n", err)
			return 2
		}
		a.Roots = x509.NewCertPool()
		if !a.Roots.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "dnsedge profile android: -ca %s: no PEM certificate\n", *ca)
			return 2
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var failed *profile.Step
	ok := a.Run(ctx, func(s profile.Step) {
		status, where := "OK", ""
		if !s.OK {
			status = "FAIL"
			if failed == nil {
				failed = &s
			}
		}
		if s.Addr.IsValid() {
			where = s.Addr.String() + ": "
		}
		fmt.Fprintf(stdout, "%-7s %-4s %s%s\n", s.Name, status, where, s.Detail)
	})
	if ok {
		fmt.Fprintf(stdout, "PASS: Android's Private DNS would validate %s\n", host)
		return 0
	}
	if failed != nil {
		where := ""
		if failed.Addr.IsValid() {
			where = " on " + failed.Addr.String()
		}
		fmt.Fprintf(stdout, "FAIL at step %s%s: Android's Private DNS would not validate %s\n", failed.Name, where, host)
	}
	return 1
}
