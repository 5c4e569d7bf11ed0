package consul

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/zone"
)

// BenchmarkAnswer compares a Consul-backed answer (3 instances, warm
// view) with the same records from a static zone: the goal is within 10 %.
func BenchmarkAnswer(b *testing.B) {
	f := &fakeConsul{services: map[string][]*api.ServiceEntry{"web": manyInstances(3)}}
	be, err := New(Config{Address: "127.0.0.1:8500"}, Options{Client: startFake(b, f), Clock: clockwork.NewRealClock()})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	q := query("web.service.consul.", dns.TypeA, 1232)
	ctx := context.Background()
	if r, err := be.answer(ctx, q, "web.service.consul.", 1232); err != nil || len(r.Answer) != 3 {
		b.Fatalf("%v %v", r.Msg, err)
	}
	var recs []string
	for i := range 3 {
		recs = append(recs, fmt.Sprintf("web 0 IN A 10.0.0.%d", i+1))
	}
	z, err := zone.FromRecords("service.consul.", append([]string{"@ 0 IN SOA ns hostmaster 1 3600 600 86400 0"}, recs...))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("consul", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			be.answer(ctx, q, "web.service.consul.", 1232)
		}
	})
	b.Run("zone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			z.Answer(q)
		}
	})
}
