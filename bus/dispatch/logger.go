package dispatch

import (
	"context"
	"log/slog"

	"github.com/signalbus/signalbus/bus"
)

// LogMessage is the message of every line Logger writes.
const LogMessage = "signal"

// Logger returns a Handler that writes one line per signal to l at the
// given level, and never fails. The line carries a "signal" group with the
// signal's id, type, source, subject (when set), time and data_size (the
// data's length in bytes; the data itself is never logged: it may be large
// or sensitive). With a JSON handler a line reads:
//
//	{"time":"…","level":"INFO","msg":"signal","signal":{"id":"…","type":"order.created","source":"/shop","subject":"42","time":"…","data_size":17}}
//
// The attributes are grouped because "time" and "source" are also slog's own
// keys (the record time, and the caller with AddSource): flat, they would
// clash. Logger is also a handy dead-letter handler. A nil l panics.
func Logger(l *slog.Logger, level slog.Level) bus.Handler {
	if l == nil {
		panic("dispatch: Logger: nil logger")
	}
	return bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		if !l.Enabled(ctx, level) {
			return nil
		}
		attrs := make([]any, 0, 6)
		attrs = append(attrs,
			slog.String("id", s.ID),
			slog.String("type", s.Type),
			slog.String("source", s.Source))
		if s.Subject != "" {
			attrs = append(attrs, slog.String("subject", s.Subject))
		}
		attrs = append(attrs,
			slog.Time("time", s.Time),
			slog.Int("data_size", len(s.Data)))
		l.LogAttrs(ctx, level, LogMessage, slog.Group("signal", attrs...))
		return nil
	})
}
