package edge

import (
	"fmt"
	"io"
	"log/slog"
)

func parseLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

// NewLogger returns the JSON logger the configuration asks for. The level
// can be changed later through the returned LevelVar (on reload).
func NewLogger(w io.Writer, spec LogSpec) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	if l, err := parseLevel(spec.Level); err == nil {
		lv.Set(l)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})), lv
}

// SetLevel applies a reloaded log level.
func SetLevel(lv *slog.LevelVar, spec LogSpec) {
	if l, err := parseLevel(spec.Level); err == nil {
		lv.Set(l)
	}
}
