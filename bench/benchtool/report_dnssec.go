package main

import "fmt"

// dnssecRows are the validation rows: scenario, the server measured, the
// server it is compared with (on the reference scenario), and the target.
var dnssecRows = []struct {
	scenario, server, refScenario, refServer, what, target string
}{
	{"dnssec-miss-udp-max", "dnsedge-validate", "dnssec-miss-udp-max", "unbound-validate",
		"validated cache miss, UDP, maximum rate: dnsedge vs unbound", "CPU ratio ≤ 1.00"},
	{"dnssec-miss-udp-5k", "dnsedge-validate", "dnssec-miss-udp-5k", "unbound-validate",
		"validated cache miss, UDP, 5,000 qps: dnsedge vs unbound", "CPU ratio ≤ 1.00"},
	{"dnssec-hit-udp-max", "dnsedge-validate", "dnssec-hit-udp-max", "unbound-validate",
		"validated cache hit, UDP, maximum rate: dnsedge vs unbound", "-"},
	{"dnssec-hit-udp-5k", "dnsedge-validate", "dnssec-hit-udp-5k", "unbound-validate",
		"validated cache hit, UDP, 5,000 qps: dnsedge vs unbound", "-"},
}

// writeDNSSEC compares, in the same run, dnsedge validating signed.test.
// with unbound validating it, by CPU per query: misses (the target) and
// hits. Validated hits against unvalidated ones are a pair table
// (writePairs).
func writeDNSSEC(w func(string, ...any), byKey map[string][]result) {
	var lines []string
	for _, d := range dnssecRows {
		r, ref := lookup(byKey[d.scenario], d.server), lookup(byKey[d.refScenario], d.refServer)
		if r.status == "missing" && ref.status == "missing" {
			continue
		}
		rt := ratio(r.cpu, ref.cpu, ref.status)
		if r.status != "ok" {
			rt = r.status
		} else if ref.status != "ok" {
			rt = d.refServer + ": " + ref.status
		}
		lines = append(lines, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s |", d.what, num(r.qps, 0), num(r.cpu, 1), d.refServer, num(ref.cpu, 1), rt, d.target))
	}
	if len(lines) == 0 {
		return
	}
	w("\n## DNSSEC validation\n\n")
	w("`dnsedge-validate` and `unbound-validate` validate `signed.test.` (signed by dnssec-signzone: ECDSA P-256, a KSK and a ZSK, NSEC; " +
		"its DS is their only trust anchor) served by the same named. Misses are names never asked, each a wildcard answer with its NSEC proof; " +
		"hits are the 1,000 signed names, already validated and cached. Validated hits against dnsedge's unvalidated ones are in the next section.\n\n")
	w("| Comparison | QPS | CPU µs/query | compared with | its CPU µs/query | ratio | target |\n|---|---:|---:|---|---:|---:|---|\n")
	for _, l := range lines {
		w("%s\n", l)
	}
}
