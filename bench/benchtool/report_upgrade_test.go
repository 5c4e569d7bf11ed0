package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteUpgrade(t *testing.T) {
	tests := []struct {
		name           string
		upgrade, state string // file contents; "" leaves the file out
		want           []string
		wantErr        string
	}{
		{name: "neither: no section"},
		{name: "both",
			upgrade: "upgrade_ms\t44\t38 41 44 52 63 \n",
			state:   "1000000\t132122241\t2400\t2100\t1300\t1800\n",
			want: []string{"## Binary upgrade", "median **44 ms** (each round: 38 41 44 52 63  ms)",
				"1000000 cache entries", "126.0 MiB (132 bytes per entry); written in 2400 ms (1300 ms of CPU), read in 2100 ms (1800 ms of CPU)"}},
		{name: "upgrade only", upgrade: "upgrade_ms\t50\t50 \n", want: []string{"median **50 ms**"}},
		{name: "bad size", state: "1000000\tbig\t1\t1\t1\t1\n", wantErr: `bad size "big"`},
		{name: "short row", state: "1000000\t1\n", wantErr: "want 6 tab-separated fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range map[string]string{"upgrade.tsv": tt.upgrade, "state.tsv": tt.state} {
				if body != "" {
					if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			var b strings.Builder
			err := writeUpgrade(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tt.want) == 0 && b.Len() > 0 {
				t.Fatalf("wrote a section without its files:\n%s", b.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("missing %q in\n%s", w, b.String())
				}
			}
		})
	}
}
