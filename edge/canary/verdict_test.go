package canary

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestJudge(t *testing.T) {
	th := Thresholds{MinSamples: 100, Window: time.Minute}.WithDefaults()
	clean := Sample{AnswerShare: 0.01, Decisions: 500, Answers: 100, Controls: 100, AnswerP99: 30 * time.Millisecond, ControlP99: 20 * time.Millisecond}
	with := func(f func(*Sample)) Sample { s := clean; f(&s); return s }
	tests := []struct {
		name     string
		s        Sample
		elapsed  time.Duration
		want     string
		breached string
	}{
		{"too few samples", with(func(s *Sample) { s.Answers = 99; s.AnswerFailures = 99 }), time.Hour, Pending, ""},
		{"held, window not over", clean, 59 * time.Second, Pending, ""},
		{"held over the window", clean, time.Minute, Pass, ""},
		{"failures within the control's", with(func(s *Sample) { s.AnswerFailures = 5; s.ControlFailures = 4 }), time.Minute, Pass, ""},
		{"failures above", with(func(s *Sample) { s.AnswerFailures = 5; s.ControlFailures = 2 }), time.Second, Breach, "servfail"},
		{"every candidate answer fails", with(func(s *Sample) { s.AnswerFailures = 100 }), 0, Breach, "servfail"},
		{"p99 within the floor", with(func(s *Sample) { s.AnswerP99 = 65 * time.Millisecond }), time.Minute, Pass, ""},
		{"p99 above ratio and floor", with(func(s *Sample) { s.AnswerP99 = 80 * time.Millisecond }), time.Minute, Breach, "p99"},
		{"diffs within the noise", with(func(s *Sample) { s.AnswerDiffs = 98; s.ControlDiffs = 97 }), time.Minute, Pass, ""},
		{"diffs beyond the noise", with(func(s *Sample) { s.AnswerDiffs = 30; s.ControlDiffs = 10 }), time.Minute, Breach, "diff"},
		{"several", with(func(s *Sample) { s.AnswerDiffs = 30; s.AnswerFailures = 30 }), time.Minute, Breach, "servfail,diff"},
		{"decisions only", Sample{Decisions: 100, DecisionDiffs: 100}, time.Minute, Pass, ""},
		{"decisions only, too few", Sample{Decisions: 99}, time.Minute, Pending, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Judge(tt.s, th, tt.elapsed)
			if v.State != tt.want || strings.Join(v.Breached, ",") != tt.breached {
				t.Fatalf("Judge = %+v, want %s %q", v, tt.want, tt.breached)
			}
			if v.State != Pass && len(v.Reasons) == 0 {
				t.Fatalf("%s without a reason", v.State)
			}
		})
	}
}

func TestJudgeRollback(t *testing.T) {
	c := RollbackConfig{MinSamples: 50}.WithDefaults()
	base := Window{Answers: 1000, Servfails: 10, Fallbacks: 0, P99: 20 * time.Millisecond}
	tests := []struct {
		name     string
		now      Window
		base     Window
		want     string
		breached string
	}{
		{"same as before", Window{Answers: 100, Servfails: 1, P99: 25 * time.Millisecond}, base, Pending, ""},
		{"too few answers to judge rates", Window{Answers: 49, Servfails: 49}, base, Pending, ""},
		{"servfail", Window{Answers: 100, Servfails: 20, P99: 20 * time.Millisecond}, base, Breach, "servfail"},
		{"p99 within ratio or floor", Window{Answers: 100, P99: 110 * time.Millisecond}, base, Pending, ""},
		{"p99", Window{Answers: 100, P99: 150 * time.Millisecond}, base, Breach, "p99"},
		{"fallback", Window{Answers: 100, Fallbacks: 10}, base, Breach, "fallback"},
		{"a group went dark", Window{DarkGroups: []string{"v2"}}, base, Breach, "breakers"},
		{"a group dark before too", Window{DarkGroups: []string{"v2"}}, Window{Answers: 1000, DarkGroups: []string{"v2"}}, Pending, ""},
		{"untrusted baseline: rates against zero, no p99", Window{Answers: 100, Servfails: 4, P99: time.Second}, Window{Answers: 3, Servfails: 3, P99: time.Millisecond}, Pending, ""},
		{"untrusted baseline, servfail", Window{Answers: 100, Servfails: 6}, Window{Answers: 3}, Breach, "servfail"},
		{"dead group: breakers and servfail", Window{Answers: 60, Servfails: 60, DarkGroups: []string{"dead"}}, base, Breach, "breakers,servfail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := JudgeRollback(tt.now, tt.base, c)
			if v.State != tt.want || strings.Join(v.Breached, ",") != tt.breached {
				t.Fatalf("JudgeRollback = %+v, want %s %q", v, tt.want, tt.breached)
			}
		})
	}
	off := false
	c.Breakers = &off
	if v := JudgeRollback(Window{DarkGroups: []string{"v2"}}, base, c); v.State != Pending {
		t.Fatalf("breakers: false still judged them: %+v", v)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want string // a field path in the error, "" for none
	}{
		{"defaults", Config{}, ""},
		{"share above 1", Config{Share: 1.5}, "share"},
		{"answer share above share", Config{Share: 0.01, AnswerShare: 0.05}, "answer_share"},
		{"control above answer", Config{Share: 0.1, AnswerShare: 0.01, ControlShare: 0.05}, "control_share"},
		{"negative rate", Config{UpstreamQPS: -1}, "upstream_qps"},
		{"ratio below 1", Config{Thresholds: Thresholds{MaxP99Ratio: 0.5}}, "thresholds.max_p99_ratio"},
		{"NaN share", Config{Share: math.NaN()}, "share"},
		{"NaN ratio", Config{Thresholds: Thresholds{MaxP99Ratio: math.NaN()}}, "thresholds.max_p99_ratio"},
		{"infinite rate", Config{UpstreamQPS: math.Inf(1)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.WithDefaults().Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error at %s", err, tt.want)
			}
		})
	}
}

func TestRollbackConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		c    RollbackConfig
		want string // a field path in the error, "" for none
	}{
		{"defaults", RollbackConfig{}, ""},
		{"negative watch", RollbackConfig{Watch: -time.Second}, "watch"},
		{"watch above a day", RollbackConfig{Watch: 25 * time.Hour}, "watch"},
		{"interval above watch", RollbackConfig{Watch: time.Second, Interval: 2 * time.Second}, "interval"},
		{"negative samples", RollbackConfig{MinSamples: -1}, "min_samples"},
		{"servfail above 1", RollbackConfig{MaxServfailIncrease: 2}, "max_servfail_increase"},
		{"NaN fallback", RollbackConfig{MaxFallbackIncrease: math.NaN()}, "max_fallback_increase"},
		{"ratio below 1", RollbackConfig{MaxP99Ratio: 0.9}, "max_p99_ratio"},
		{"negative floor", RollbackConfig{P99Floor: -time.Millisecond}, "p99_floor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.WithDefaults().Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error at %s", err, tt.want)
			}
		})
	}
}
