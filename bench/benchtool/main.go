// Command benchtool holds the small pieces of the load benchmark that are
// awkward in shell: picking free loopback ports, reading latency percentiles
// out of dnsperf's verbose output and h2load's request log, turning query
// files into DoH GET URIs for h2load, and writing BENCHMARKS.md from the raw
// results. bench/run.sh is its only caller.
//
// Usage:
//
//	benchtool ports N
//	benchtool latency FILE
//	benchtool h2latency FILE
//	benchtool dohuris BASEURL <NAMES >URIS
//	benchtool policy N >POLICY
//	benchtool report -dir DIR -out FILE
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/dnsedge/dnsedge/bench/benchpolicy"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: benchtool ports N | latency FILE | h2latency FILE | dohuris BASEURL | policy N | report -dir DIR -out FILE")
	}
	switch args[0] {
	case "ports":
		if len(args) != 2 {
			return errors.New("usage: benchtool ports N")
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 || n > 64 {
			return fmt.Errorf("ports: want a count from 1 to 64, got %q", args[1])
		}
		ports, err := freePorts(n)
		if err != nil {
			return err
		}
		for _, p := range ports {
			fmt.Println(p)
		}
		return nil
	case "latency":
		if len(args) != 2 {
			return errors.New("usage: benchtool latency FILE")
		}
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer f.Close()
		s, err := readLatencies(f)
		if err != nil {
			return fmt.Errorf("read %s: %w", args[1], err)
		}
		fmt.Println(s.String())
		return nil
	case "h2latency":
		if len(args) != 2 {
			return errors.New("usage: benchtool h2latency FILE")
		}
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer f.Close()
		s, err := readH2loadLog(f)
		if err != nil {
			return fmt.Errorf("read %s: %w", args[1], err)
		}
		fmt.Println(s.String())
		return nil
	case "policy":
		if len(args) != 2 {
			return errors.New("usage: benchtool policy N")
		}
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return fmt.Errorf("policy: want a count of rules, got %q", args[1])
		}
		return benchpolicy.Write(os.Stdout, n)
	case "dohuris":
		if len(args) != 2 {
			return errors.New("usage: benchtool dohuris BASEURL <NAMES >URIS")
		}
		return writeDoHURIs(os.Stdin, os.Stdout, args[1])
	case "report":
		fs := flag.NewFlagSet("report", flag.ContinueOnError)
		dir := fs.String("dir", "", "directory holding meta.tsv, servers.tsv and results.tsv")
		out := fs.String("out", "", "markdown file to write")
		analysis := fs.String("analysis", "", "markdown file appended as it is (profiling notes); optional")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *dir == "" || *out == "" {
			return errors.New("report: -dir and -out are required")
		}
		if err := writeReport(*dir, *out); err != nil {
			return err
		}
		if *analysis == "" {
			return nil
		}
		notes, err := os.ReadFile(*analysis)
		if err != nil {
			return fmt.Errorf("read analysis: %w", err)
		}
		f, err := os.OpenFile(*out, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.Write(append([]byte("\n"), notes...))
		return err
	default:
		return fmt.Errorf("unknown subcommand %q", args[0])
	}
}

// freePorts returns n distinct port numbers that were free on 127.0.0.1 for
// both UDP and TCP at the moment of asking. The sockets are closed before
// returning, so a port can in principle be taken by someone else before the
// server under test binds it; on a quiet benchmark machine that does not
// happen in practice.
func freePorts(n int) ([]int, error) {
	var (
		ports []int
		held  []func()
	)
	defer func() {
		for _, release := range held {
			release()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 50*n {
			return nil, fmt.Errorf("found only %d of %d free ports", len(ports), n)
		}
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("listen tcp on 127.0.0.1:0: %w", err)
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			tl.Close()
			continue
		}
		held = append(held, func() { tl.Close(); ul.Close() })
		ports = append(ports, port)
	}
	return ports, nil
}
