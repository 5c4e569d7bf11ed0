package zone

import (
	"context"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// fakeFeed is a Feed whose Watch is a function field; an unset one fails
// the test.
type fakeFeed struct {
	t     testing.TB
	watch func(origins []string, put func(*Zone)) (func(), error)
}

func (f *fakeFeed) Watch(origins []string, put func(*Zone)) (func(), error) {
	if f.watch == nil {
		f.t.Fatal("Watch called")
	}
	return f.watch(origins, put)
}

// TestFollow: an API zone is not answered before Follow (its names go to
// the next stage), answered from what the feed gives once it is, swapped
// at each change, and the feed is stopped by Close.
func TestFollow(t *testing.T) {
	t.Parallel()
	z, err := New(Config{Zones: []ZoneSpec{
		{Origin: "Dyn.Test", API: true},
		{Origin: "static.test.", Records: []string{"www 60 IN A 10.9.9.9"}},
	}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := z.APIOrigins(); !slices.Equal(got, []string{"dyn.test."}) {
		t.Fatalf("APIOrigins %v", got)
	}
	h := z.Middleware()(&fakeNext{t: t, serve: upstreamAnswer})
	ask := func(name string) *dns.Msg {
		t.Helper()
		m, err := h.ServeDNS(context.Background(), request(name, dns.TypeA, "192.0.2.1", ""))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := ask("www.dyn.test."); m.Authoritative || len(m.Answer) != 1 || m.Answer[0].Header().Rrtype != dns.TypeTXT {
		t.Fatalf("API zone answered before Follow: %v", m)
	}
	var put func(*Zone)
	stopped := 0
	feed := &fakeFeed{t: t, watch: func(origins []string, p func(*Zone)) (func(), error) {
		if !slices.Equal(origins, []string{"dyn.test."}) {
			t.Errorf("Watch of %v", origins)
		}
		put = p
		p(mustParse(t, "dyn.test.", "www 60 IN A 10.0.0.1\n"))
		return func() { stopped++ }, nil
	}}
	if err := z.Follow(feed); err != nil {
		t.Fatal(err)
	}
	if err := z.Follow(feed); err == nil {
		t.Fatal("a second Follow succeeded")
	}
	if m := ask("www.dyn.test."); !m.Authoritative || len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "10.0.0.1" {
		t.Fatalf("after Follow: %v", m)
	}
	put(mustParse(t, "dyn.test.", "www 60 IN A 10.0.0.2\n"))
	put(mustParse(t, "other.test.", "www 60 IN A 10.6.6.6\n")) // not an API zone of z: ignored
	if m := ask("www.dyn.test."); m.Answer[0].(*dns.A).A.String() != "10.0.0.2" {
		t.Fatalf("after a change: %v", m)
	}
	if m := ask("www.other.test."); m.Authoritative {
		t.Fatalf("a zone the feed gave but z does not keep is answered: %v", m)
	}
	if m := ask("www.static.test."); m.Answer[0].(*dns.A).A.String() != "10.9.9.9" {
		t.Fatalf("file zone beside the API zone: %v", m)
	}
	z.Close()
	z.Close()
	if stopped != 1 {
		t.Fatalf("feed stopped %d times by Close, want 1", stopped)
	}
}
