package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestReplace(t *testing.T) {
	reg := prometheus.NewRegistry()
	gen := func(v float64) []prometheus.Collector {
		return []prometheus.Collector{
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "a"}, func() float64 { return v }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "b"}, func() float64 { return v }),
		}
	}
	value := func() float64 {
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 2 {
			t.Fatalf("gather: %v, %d families", err, len(mfs))
		}
		return mfs[0].GetMetric()[0].GetGauge().GetValue()
	}
	if err := Replace(reg, gen(1)...); err != nil {
		t.Fatal(err)
	}
	if err := Replace(reg, gen(2)...); err != nil {
		t.Fatal(err)
	}
	if v := value(); v != 2 {
		t.Fatalf("after the second generation: %v, want 2", v)
	}
	// A collector that cannot register (a name taken with another help)
	// leaves
	// nothing of its batch behind.
	bad := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "c"}, func() float64 { return 3 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "a", Help: "another help"}, func() float64 { return 3 }),
	}
	if err := Replace(reg, bad...); err == nil {
		t.Fatal("two collectors of one name in a batch registered")
	}
	if mfs, _ := reg.Gather(); len(mfs) != 2 {
		t.Fatalf("%d families after a failed batch, want the 2 from before", len(mfs))
	}
}
