// Command quicload is the load generator bench/run.sh uses for the
// transports no Debian load tool speaks: DNS over QUIC (RFC 9250) and DNS
// over HTTP/3 (RFC 8484 over RFC 9114). It also speaks DNS over HTTP/2
// (mode doh: dnsperf's DoH mode loses queries of its own under load), and
// holds idle DNS-over-TLS connections open for the memory-per-connection
// measurement.
//
// Usage:
//
//	quicload -mode doq|doh3|doh -addr IP:PORT -ca CA.pem -names FILE
//	         [-c CONNS] [-q OUTSTANDING] [-d DURATION] [-n PASSES]
//	         [-rate QPS] [-t TIMEOUT] [-reconnect] [-v]
//	quicload -mode dot-idle -addr IP:PORT -ca CA.pem -names FILE
//	         -conns N [-per-source N] [-hold DURATION]
//
// Load modes print one summary line on standard output, for run.sh:
//
//	quicload mode=doq sent=N answered=N lost=N errors=N noerror=N seconds=S qps=Q p50_ms=P p99_ms=P
//
// lost counts queries that timed out or failed; they count as infinitely
// slow in the percentiles (as bench/benchtool does for dnsperf), so p99
// reads "timeout" when more than 1% were lost. Queries still in flight when
// the run ends are waited for, up to -t. With -reconnect a DoQ connection
// the server closes is opened again, and a query that failed with it is
// asked once more on the new one (within -t); the line then ends with
// reconnects=N retried=N (queries asked again).
//
// dot-idle opens -conns DoT connections, asks one query on each, prints
// "ready established=N failed=N" and holds them until -hold passes or the
// process is signalled. Servers cap connections per client address (dnsedge:
// 64), so -per-source spreads them over loopback addresses, as many clients
// would.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "quicload:", err)
		os.Exit(1)
	}
}

type options struct {
	mode, addr, ca, names string
	conns, outstanding    int
	duration, timeout     time.Duration
	passes, rate          int
	idleConns, perSource  int
	hold                  time.Duration
	verbose, reconnect    bool
}

func run(args []string) error {
	var o options
	fs := flag.NewFlagSet("quicload", flag.ContinueOnError)
	fs.StringVar(&o.mode, "mode", "", "doq, doh3, doh (HTTP/2) or dot-idle")
	fs.StringVar(&o.addr, "addr", "", "server ip:port")
	fs.StringVar(&o.ca, "ca", "", "PEM file of the CA that signed the server's certificate")
	fs.StringVar(&o.names, "names", "", "query file in dnsperf format: one 'NAME TYPE' a line")
	fs.IntVar(&o.conns, "c", 4, "connections")
	fs.IntVar(&o.outstanding, "q", 50, "queries in flight per connection")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "how long to send queries (at most 10m)")
	fs.IntVar(&o.passes, "n", 0, "stop after this many passes through the query file (0: run for -d)")
	fs.IntVar(&o.rate, "rate", 0, "queries per second over all connections (0: as fast as answers come)")
	fs.DurationVar(&o.timeout, "t", 2*time.Second, "per-query timeout")
	fs.IntVar(&o.idleConns, "conns", 1000, "dot-idle: connections to open")
	fs.IntVar(&o.perSource, "per-source", 0, "dot-idle: connections per source address, spread over 127.1.1.1, 127.1.2.1, ... (0: all from the default address)")
	fs.DurationVar(&o.hold, "hold", time.Minute, "dot-idle: how long to hold the connections (at most 10m)")
	fs.BoolVar(&o.reconnect, "reconnect", false, "doq: open a connection again when the server closes it, and ask its failed queries again")
	fs.BoolVar(&o.verbose, "v", false, "print the first few errors on standard error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case o.addr == "" || o.ca == "" || o.names == "":
		return errors.New("-addr, -ca and -names are required")
	case o.conns < 1 || o.conns > 1000 || o.outstanding < 1 || o.outstanding > 10000:
		return errors.New("-c must be 1..1000 and -q 1..10000")
	case o.duration <= 0 || o.duration > 10*time.Minute || o.hold <= 0 || o.hold > 10*time.Minute:
		return errors.New("-d and -hold must be more than 0 and at most 10m")
	case o.idleConns < 1 || o.idleConns > 20000:
		return errors.New("-conns must be 1..20000")
	case o.passes < 0 || o.rate < 0 || o.timeout <= 0 || o.perSource < 0:
		return errors.New("-n, -rate, -per-source and -t must not be negative")
	case o.perSource > 0 && o.idleConns/o.perSource > 250*250:
		return errors.New("-per-source too small for -conns")
	}
	queries, err := readQueries(o.names)
	if err != nil {
		return err
	}
	tlsConf, err := clientTLS(o.ca)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch o.mode {
	case "doq", "doh3", "doh":
		dial := map[string]func(context.Context, string, *tls.Config) (exchanger, error){
			"doq": dialDoQ, "doh3": dialDoH3, "doh": dialDoH2,
		}[o.mode]
		var redials, retried atomic.Int64
		s, err := load(ctx, o, queries, func(ctx context.Context) (exchanger, error) {
			c, err := dial(ctx, o.addr, tlsConf)
			if err != nil || !o.reconnect {
				return c, err
			}
			return &redialer{cur: c, redials: &redials, retried: &retried, dial: func(ctx context.Context) (exchanger, error) {
				return dial(ctx, o.addr, tlsConf)
			}}, nil
		})
		if err != nil {
			return err
		}
		if o.reconnect {
			fmt.Printf("quicload mode=%s %s reconnects=%d retried=%d\n", o.mode, s, redials.Load(), retried.Load())
		} else {
			fmt.Printf("quicload mode=%s %s\n", o.mode, s)
		}
		return nil
	case "dot-idle":
		return holdIdle(ctx, o, queries[0], tlsConf)
	default:
		return fmt.Errorf("unknown -mode %q (want doq, doh3, doh or dot-idle)", o.mode)
	}
}

// readQueries packs every line of a dnsperf query file as a query with ID
// 0 (RFC 9250 §4.2.1 requires it for DoQ; RFC 8484 §4.1 recommends it for
// DoH) and RD set.
func readQueries(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		qtype := dns.TypeA
		if len(fields) > 1 {
			t, ok := dns.StringToType[strings.ToUpper(fields[1])]
			if !ok {
				return nil, fmt.Errorf("%s:%d: unknown type %q", path, line, fields[1])
			}
			qtype = t
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(fields[0]), qtype)
		m.Id = 0
		b, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("%s:%d: pack %s: %w", path, line, fields[0], err)
		}
		out = append(out, b)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no queries", path)
	}
	return out, nil
}

func clientTLS(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}, nil
}
