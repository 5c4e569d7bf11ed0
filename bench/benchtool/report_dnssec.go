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
	{"dnssec-hit-udp-max", "dnsedge-validate", "hit-udp-max", "dnsedge",
		"validated cache hit vs unvalidated hit, UDP, maximum rate (dnsedge)", "CPU ratio ≤ 1.05"},
	{"dnssec-hit-udp-5k", "dnsedge-validate", "hit-udp-5k", "dnsedge",
		"validated cache hit vs unvalidated hit, UDP, 5,000 qps (dnsedge)", "CPU ratio ≤ 1.05"},
}

// writeDNSSEC compares, in the same run, dnsedge validating signed.test.
// with unbound validating it (cache misses) and with dnsedge's own
// unvalidated hits (cache hits), by CPU per query.
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
		"hits are the 1,000 signed names, already validated and cached. Hits compare with dnsedge's unvalidated hit rows of the same run.\n\n")
	w("| Comparison | QPS | CPU µs/query | compared with | its CPU µs/query | ratio | target |\n|---|---:|---:|---|---:|---:|---|\n")
	for _, l := range lines {
		w("%s\n", l)
	}
}
