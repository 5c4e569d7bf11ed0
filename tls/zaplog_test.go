package edgetls

import (
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestZapToSlog(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		log  func(z *zap.Logger)
		want string // "" means nothing logged at info level
	}{
		{name: "error keeps its level", log: func(z *zap.Logger) { z.Error("obtain failed", zap.Int("attempt", 2)) },
			want: `level=ERROR msg="obtain failed" logger=obtain attempt=2 identifier=dns.example`},
		{name: "warn keeps its level", log: func(z *zap.Logger) { z.Warn("stapling") },
			want: `level=WARN msg=stapling logger=obtain identifier=dns.example`},
		{name: "info goes to debug", log: func(z *zap.Logger) { z.Info("trying to solve challenge") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			log, buf := testLogger(t, slog.LevelInfo)
			tt.log(newZapLogger(log).Named("obtain").With(zap.String("identifier", "dns.example")))
			got := buf.buf.String()
			if (tt.want == "" && got != "") || !strings.Contains(got, tt.want) {
				t.Errorf("logged %q, want %q", got, tt.want)
			}
		})
	}
}
