package middleware

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/miekg/dns"
)

func subnetOpt(p string) *dns.EDNS0_SUBNET {
	pfx := netip.MustParsePrefix(p)
	o := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: uint8(pfx.Bits()), Address: pfx.Addr().AsSlice()}
	if pfx.Addr().Is4() {
		o.Family = 1
	}
	return o
}

func TestECSSubnet(t *testing.T) {
	t.Parallel()
	e, err := NewECS(ECSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	v4 := netip.MustParseAddrPort("192.0.2.77:5353")
	v6 := netip.MustParseAddrPort("[2001:db8:1:2:3::9]:5353")
	cases := []struct {
		name   string
		kind   pipeline.Kind
		client netip.AddrPort
		action pipeline.ECSAction
		sent   string // the client's ECS option, "" for none
		want   string // "" for none
	}{
		{"default passes on udp", pipeline.KindUDP, v4, pipeline.ECSAction{}, "198.51.100.0/24", "198.51.100.0/24"},
		{"default passes nothing when nothing came", pipeline.KindUDP, v4, pipeline.ECSAction{}, "", ""},
		{"default strips on doh", pipeline.KindDoH, v4, pipeline.ECSAction{}, "198.51.100.0/24", ""},
		{"strip", pipeline.KindUDP, v4, pipeline.ECSAction{Mode: pipeline.ECSStrip}, "198.51.100.0/24", ""},
		{"pass on doh by rule", pipeline.KindDoH, v4, pipeline.ECSAction{Mode: pipeline.ECSPass}, "198.51.100.0/24", "198.51.100.0/24"},
		{"pass opt-out /0", pipeline.KindUDP, v4, pipeline.ECSAction{Mode: pipeline.ECSPass}, "0.0.0.0/0", "0.0.0.0/0"},
		{"add v4 default bits", pipeline.KindUDP, v4, pipeline.ECSAction{Mode: pipeline.ECSAdd}, "", "192.0.2.0/24"},
		{"add v6 default bits", pipeline.KindDoQ, v6, pipeline.ECSAction{Mode: pipeline.ECSAdd}, "", "2001:db8:1::/56"},
		{"add rule bits", pipeline.KindUDP, v4, pipeline.ECSAction{Mode: pipeline.ECSAdd, V4Bits: 16}, "", "192.0.0.0/16"},
		{"add keeps the client's", pipeline.KindUDP, v4, pipeline.ECSAction{Mode: pipeline.ECSAdd}, "198.51.100.0/24", "198.51.100.0/24"},
		{"replace the client's", pipeline.KindUDP, v4, pipeline.ECSAction{Mode: pipeline.ECSReplace}, "198.51.100.0/24", "192.0.2.0/24"},
		{"replace with a prefix", pipeline.KindUDP, v4, pipeline.ECSAction{Mode: pipeline.ECSReplace, Prefix: netip.MustParsePrefix("203.0.113.9/24")}, "", "203.0.113.0/24"},
		{"mapped client", pipeline.KindTCP, netip.MustParseAddrPort("[::ffff:192.0.2.77]:53"), pipeline.ECSAction{Mode: pipeline.ECSAdd}, "", "192.0.2.0/24"},
		{"internal queries get none added", pipeline.KindInternal, v4, pipeline.ECSAction{Mode: pipeline.ECSAdd}, "", ""},
		{"bits past the address", pipeline.KindUDP, v4, pipeline.ECSAction{Mode: pipeline.ECSAdd, V4Bits: 40}, "", "192.0.2.77/32"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var opts []dns.EDNS0
			if tc.sent != "" {
				opts = append(opts, subnetOpt(tc.sent))
			}
			req := request(dns.TypeA, true, false, false, opts...)
			req.Listener, req.Client, req.ECSAction = tc.kind, tc.client, tc.action
			// Through the wire, as a listener would read it.
			wire, err := req.Msg.Pack()
			if err != nil {
				t.Fatal(err)
			}
			req.Msg = new(dns.Msg)
			if err := req.Msg.Unpack(wire); err != nil {
				t.Fatal(err)
			}
			got := e.Subnet(req)
			if tc.want == "" {
				if got.IsValid() {
					t.Fatalf("got %s, want none", got)
				}
				return
			}
			if got != netip.MustParsePrefix(tc.want) {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseTags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"env=prod", []string{"env=prod"}, ""},
		{"env=prod,stage=canary", []string{"env=prod", "stage=canary"}, ""},
		{"a.b-c_d=x y:z", []string{"a.b-c_d=x y:z"}, ""},
		{"empty=", []string{"empty="}, ""},
		{"", nil, "empty"},
		{"env", nil, "not key=value"},
		{"=prod", nil, "not key=value"},
		{"env=prod,", nil, "not key=value"},
		{"e v=prod", nil, "key holds"},
		{"env=pr\x00d", nil, "value holds"},
		{"env=pr\xffd", nil, "value holds"},
		{strings.Repeat("a=b,", 16) + "a=b", nil, "more than 16"},
		{"k=" + strings.Repeat("v", MaxTagData), nil, "over 512"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTags([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || got != nil {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// FuzzParseTags: parsing never panics, and what it accepts encodes back
// to the same bytes.
func FuzzParseTags(f *testing.F) {
	for _, s := range []string{"env=prod", "env=prod,stage=canary", "", ",", "a=b,,c=d", "=", "k=\x7f"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tags, err := ParseTags(data)
		if err != nil {
			return
		}
		if got := appendTagData(nil, tags); string(got) != string(data) {
			t.Fatalf("%q parsed to %q, which encodes to %q", data, tags, got)
		}
		for _, tg := range tags {
			if CheckTag(tg) != nil {
				t.Fatalf("accepted tag %q fails CheckTag", tg)
			}
		}
	})
}

func TestTagsTrusted(t *testing.T) {
	t.Parallel()
	tg, err := NewTags(TagsConfig{Trusted: []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.1", "ci-runner"}})
	if err != nil {
		t.Fatal(err)
	}
	opt := func(s string) dns.EDNS0 { return &dns.EDNS0_LOCAL{Code: DefaultTagOptionCode, Data: []byte(s)} }
	cases := []struct {
		name   string
		client string
		id     string
		have   []string // policy's
		opts   []dns.EDNS0
		want   []string
	}{
		{"trusted prefix", "10.1.2.3:53", "", nil, []dns.EDNS0{opt("env=prod")}, []string{"env=prod"}},
		{"trusted v6 prefix", "[2001:db8::1]:53", "", nil, []dns.EDNS0{opt("env=prod")}, []string{"env=prod"}},
		{"trusted address", "192.0.2.1:53", "", nil, []dns.EDNS0{opt("a=1,b=2")}, []string{"a=1", "b=2"}},
		{"trusted client id", "198.51.100.1:53", "ci-runner", nil, []dns.EDNS0{opt("env=ci")}, []string{"env=ci"}},
		{"merged after policy's, once", "10.1.2.3:53", "", []string{"env=prod"}, []dns.EDNS0{opt("env=prod,team=dns")}, []string{"env=prod", "team=dns"}},
		{"untrusted", "198.51.100.1:53", "other", nil, []dns.EDNS0{opt("env=prod")}, nil},
		{"untrusted keeps policy's", "192.0.2.2:53", "", []string{"env=prod"}, []dns.EDNS0{opt("env=dev")}, []string{"env=prod"}},
		{"malformed adds nothing", "10.1.2.3:53", "", nil, []dns.EDNS0{opt("env")}, nil},
		{"other option code", "10.1.2.3:53", "", nil, []dns.EDNS0{&dns.EDNS0_LOCAL{Code: 65010, Data: []byte("env=prod")}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := request(dns.TypeA, true, false, false, tc.opts...)
			req.Client, req.ClientID, req.Tags = netip.MustParseAddrPort(tc.client), tc.id, tc.have
			var got []string
			h := tg.Middleware(pipeline.HandlerFunc(func(_ context.Context, r *pipeline.Request) (*dns.Msg, error) {
				got = r.Tags
				return new(dns.Msg), nil
			}))
			h.ServeDNS(context.Background(), req)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("tags %q, want %q", got, tc.want)
			}
		})
	}
}

// TestForwardCarries: the upstream query carries the ECS, tag and trace
// options of the request and its context the Meta for DoH; a client's
// own ECS and tag options never go upstream as sent.
func TestForwardCarries(t *testing.T) {
	t.Parallel()
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientTag := &dns.EDNS0_LOCAL{Code: DefaultTagOptionCode, Data: []byte("env=evil")}
	cases := []struct {
		name    string
		ecs     string
		tags    []string
		trace   string
		sent    []dns.EDNS0
		wantECS string
		wantTag string
	}{
		{"nothing", "", nil, "", nil, "", ""},
		{"client options dropped", "", nil, "", []dns.EDNS0{subnetOpt("198.51.100.0/24"), clientTag}, "", ""},
		{"ecs v4", "192.0.2.0/24", nil, "", nil, "192.0.2.0/24", ""},
		{"ecs v6 replaces the client's", "2001:db8::/56", nil, "", []dns.EDNS0{subnetOpt("198.51.100.0/24")}, "2001:db8::/56", ""},
		{"tags and trace", "", []string{"env=prod", "stage=canary"}, tid, []dns.EDNS0{clientTag}, "", "env=prod,stage=canary"},
		{"trace only", "", nil, tid, nil, "", ""},
		{"trace longer than a w3c id", "", nil, "client-" + tid + "-0123", nil, "", ""},
		{"ecs and trace", "192.0.2.0/24", nil, tid, nil, "192.0.2.0/24", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ex := &capture{reply: func(q *dns.Msg) (*dns.Msg, error) { return new(dns.Msg).SetReply(q), nil }}
			f := forwardTo(t, ex, nil)
			req := request(dns.TypeA, true, false, false, tc.sent...)
			req.Tags, req.TraceID = tc.tags, tc.trace
			if tc.ecs != "" {
				req.ECS = netip.MustParsePrefix(tc.ecs)
			}
			if _, err := f.ServeDNS(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			up := offTheWire(t, ex.got)
			var gotECS, gotTag, gotTrace string
			for _, o := range up.IsEdns0().Option {
				switch o := o.(type) {
				case *dns.EDNS0_SUBNET:
					gotECS = clientSubnet(up).String()
				case *dns.EDNS0_LOCAL:
					switch o.Code {
					case DefaultTagOptionCode:
						gotTag = string(o.Data)
					case DefaultTraceOptionCode:
						gotTrace = string(o.Data)
					}
				}
			}
			if tc.wantECS == "" && gotECS != "" || tc.wantECS != "" && gotECS != tc.wantECS {
				t.Errorf("ecs %q, want %q", gotECS, tc.wantECS)
			}
			if gotTag != tc.wantTag || gotTrace != tc.trace {
				t.Errorf("tag option %q trace option %q, want %q %q", gotTag, gotTrace, tc.wantTag, tc.trace)
			}
			// The options above carry tags and trace to a udp upstream:
			// no Meta is made for it.
			if ex.meta != nil {
				t.Errorf("meta %+v for a udp upstream", ex.meta)
			}
			// A DoH upstream takes them as headers, from the Meta.
			doh := &capture{reply: ex.reply}
			if _, err := forwardOver(t, "https", doh, nil).ServeDNS(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			m := doh.meta
			if tc.trace == "" && len(tc.tags) == 0 {
				if m != nil {
					t.Errorf("meta %+v on a query without tags or trace", m)
				}
				return
			}
			if m == nil || m.TraceID != tc.trace || !slices.Equal(m.Tags, tc.tags) {
				t.Errorf("meta %+v, want trace %s tags %q", m, tc.trace, tc.tags)
			}
		})
	}
}

// TestTraceID: behind the trace stage every query has a trace id, the
// client's or a new one, made only when read, once, and kept.
func TestTraceID(t *testing.T) {
	t.Parallel()
	var got string
	var before string
	h := Trace(pipeline.HandlerFunc(func(_ context.Context, r *pipeline.Request) (*dns.Msg, error) {
		before = r.TraceID
		got = r.Trace()
		if again := r.Trace(); again != got {
			t.Errorf("a second read gave %q, the first %q", again, got)
		}
		return new(dns.Msg), nil
	}))
	req := request(dns.TypeA, false, false, false)
	if id := req.Trace(); id != "" {
		t.Fatalf("a query that never went through the stage has trace id %q", id)
	}
	h.ServeDNS(context.Background(), req)
	first := got
	if before != "" {
		t.Errorf("trace id %q made before anything read it", before)
	}
	if len(first) != 32 || strings.Trim(first, "0123456789abcdef") != "" {
		t.Fatalf("made trace id %q, want 32 hex digits", first)
	}
	req = request(dns.TypeA, false, false, false)
	h.ServeDNS(context.Background(), req)
	if got == first {
		t.Fatalf("two queries got the same trace id %q", got)
	}
	req = request(dns.TypeA, false, false, false)
	req.TraceID = "client-7"
	h.ServeDNS(context.Background(), req)
	if got != "client-7" {
		t.Fatalf("client's trace id replaced by %q", got)
	}
}

func TestCarryConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want string // "" for valid
	}{
		{"ecs defaults", ECSConfig{}.Validate(), ""},
		{"ecs mode", ECSConfig{Default: "hide"}.Validate(), `default: unknown ecs mode "hide"`},
		{"ecs doh mode", ECSConfig{DoH: "Strip"}.Validate(), `doh: unknown ecs mode "Strip"`},
		{"ecs bits", ECSConfig{V4Bits: 33, V6Bits: 129}.Validate(), "v4_bits 33 must be from 1 to 32\nv6_bits: v6_bits 129"},
		{"tags ok", TagsConfig{OptionCode: 65100, Trusted: []string{"10.0.0.0/8", "::1", "runner-1"}}.Validate(), ""},
		{"tags code range", TagsConfig{OptionCode: 12}.Validate(), "option_code: option code 12 is outside"},
		{"tags loop code", TagsConfig{OptionCode: LoopOptionCode}.Validate(), "marks its own queries"},
		{"tags host bits", TagsConfig{Trusted: []string{"10.0.0.1/8"}}.Validate(), "trusted[0]: \"10.0.0.1/8\" has host bits set: write 10.0.0.0/8"},
		{"tags bad entry", TagsConfig{Trusted: []string{"a b"}}.Validate(), "trusted[0]: \"a b\" is neither"},
		{"tags repeat", TagsConfig{Trusted: []string{"x", "x"}}.Validate(), "trusted[1]: \"x\" repeats trusted[0]"},
		{"trace code", TraceConfig{OptionCode: 70000}.Validate(), "option_code: option code 70000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == "" {
				if tc.err != nil {
					t.Fatal(tc.err)
				}
				return
			}
			if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", tc.err, tc.want)
			}
		})
	}
}

// TestQueryLogTrace: the query line carries the trace id (made or the
// client's), the client's stage, the tags and the subnet forwarded.
func TestQueryLogTrace(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		id, stage  string
		tags       []string
		ecs        string
		want       map[string]any
		absent     []string
		wantMadeID bool
	}{
		{"made", "", "", nil, "", map[string]any{}, []string{"trace_stage", "tags", "ecs"}, true},
		{"the client's", "req-9", "canary", []string{"env=prod", "team=dns"}, "192.0.2.0/24",
			map[string]any{"trace_id": "req-9", "trace_stage": "canary", "tags": "env=prod,team=dns", "ecs": "192.0.2.0/24"}, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs strings.Builder
			ql := NewQueryLog(slog.New(slog.NewJSONHandler(&logs, nil)))
			h := pipeline.Chain(pipeline.HandlerFunc(func(_ context.Context, r *pipeline.Request) (*dns.Msg, error) {
				r.Tags = tc.tags
				if tc.ecs != "" {
					r.ECS = netip.MustParsePrefix(tc.ecs)
				}
				return new(dns.Msg).SetReply(r.Msg), nil
			}), ql.Middleware, Trace)
			req := request(dns.TypeA, false, false, false)
			req.TraceID, req.TraceStage = tc.id, tc.stage
			h.ServeDNS(context.Background(), req)
			var line map[string]any
			if err := json.Unmarshal([]byte(logs.String()), &line); err != nil {
				t.Fatalf("log line %q: %v", logs.String(), err)
			}
			for k, v := range tc.want {
				if line[k] != v {
					t.Errorf("%s = %v, want %v", k, line[k], v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := line[k]; ok {
					t.Errorf("%s = %v, want none", k, line[k])
				}
			}
			if id, _ := line["trace_id"].(string); tc.wantMadeID && (len(id) != 32 || id != req.TraceID) {
				t.Errorf("trace_id %q, want the made one %q", id, req.TraceID)
			}
		})
	}
}

// TestCarriedECSWire: the ECS option forward writes as raw data packs to
// the same bytes as miekg/dns's EDNS0_SUBNET for the same prefix, host
// bits past the prefix cleared.
func TestCarriedECSWire(t *testing.T) {
	for _, p := range []string{"0.0.0.0/0", "192.0.2.0/24", "192.0.2.77/21", "10.1.2.3/32", "::/0", "2001:db8::/56", "2001:db8:abcd::1/61", "2001:db8::1/128"} {
		pfx := netip.MustParsePrefix(p)
		pack := func(o dns.EDNS0) []byte {
			m := new(dns.Msg)
			m.SetQuestion("example.com.", dns.TypeA)
			m.Id = 1
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = []dns.EDNS0{o}
			b, err := m.Pack()
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			return b
		}
		want := subnetOpt(pfx.Masked().String())
		if pfx.Bits() == 0 {
			want.Address = pfx.Addr().AsSlice()
		}
		got := pack(new(carried).ecs(pfx))
		if w := pack(want); !bytes.Equal(got, w) {
			t.Errorf("%s: packed\n%x\nwant\n%x", p, got, w)
		}
		// And it reads back as the prefix.
		m := new(dns.Msg)
		if err := m.Unpack(got); err != nil {
			t.Fatal(err)
		}
		if back := clientSubnet(m); back != pfx.Masked() {
			t.Errorf("%s: reads back as %s", p, back)
		}
	}
}

// TestForwardTraceAndLoopMarks: a forwarded query carries the trace id
// beside this instance's loop mark and the marks of the instances the
// query came through, with or without other options.
func TestForwardTraceAndLoopMarks(t *testing.T) {
	t.Parallel()
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	other := &dns.EDNS0_LOCAL{Code: LoopOptionCode, Data: []byte("someone!")}
	loop := NewLoop(slog.New(slog.DiscardHandler))
	for _, tc := range []struct {
		name  string
		sent  []dns.EDNS0
		ecs   string
		marks int // loop marks upstream: ours and the others'
	}{
		{"our mark", nil, "", 1},
		{"another instance's mark", []dns.EDNS0{other}, "", 2},
		{"with ecs", []dns.EDNS0{other}, "192.0.2.0/24", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := &capture{reply: func(q *dns.Msg) (*dns.Msg, error) { return new(dns.Msg).SetReply(q), nil }}
			req := request(dns.TypeA, true, false, false, tc.sent...)
			req.TraceID = tid
			if tc.ecs != "" {
				req.ECS = netip.MustParsePrefix(tc.ecs)
			}
			if _, err := forwardTo(t, ex, loop).ServeDNS(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			up := offTheWire(t, ex.got)
			var trace string
			var marks []string
			for _, o := range up.IsEdns0().Option {
				if o, ok := o.(*dns.EDNS0_LOCAL); ok {
					switch o.Code {
					case DefaultTraceOptionCode:
						trace = string(o.Data)
					case LoopOptionCode:
						marks = append(marks, string(o.Data))
					}
				}
			}
			if trace != tid {
				t.Errorf("trace option %q, want %q", trace, tid)
			}
			if len(marks) != tc.marks || !slices.Contains(marks, string(loop.nonce)) {
				t.Errorf("loop marks %q, want %d with ours", marks, tc.marks)
			}
		})
	}
}

// offTheWire returns q as the upstream reads it off the wire: packed and
// unpacked.
func offTheWire(t *testing.T, q *dns.Msg) *dns.Msg {
	t.Helper()
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	up := new(dns.Msg)
	if err := up.Unpack(wire); err != nil {
		t.Fatal(err)
	}
	return up
}
