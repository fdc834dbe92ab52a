package natsserver

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// logBridge implements nats-server's server.Logger on top of slog. Notices
// and debug lines go out at debug level (an embedded server's notices, its
// start-up banner included, are chatty details for the application), warnings
// at warn, errors and fatal errors at error. A fatal error never exits the
// process; the first one is kept so Start can report why the server did not
// come up.
type logBridge struct {
	l *slog.Logger // nil: discard

	mu        sync.Mutex
	fatalLine string
}

func newLogBridge(l *slog.Logger, name string) *logBridge {
	if l != nil && name != "" {
		l = l.With(slog.String("nats_server", name))
	}
	return &logBridge{l: l}
}

func (b *logBridge) debugEnabled() bool {
	return b.l != nil && b.l.Enabled(context.Background(), slog.LevelDebug)
}

func (b *logBridge) emit(level slog.Level, format string, v []any) {
	if b.l == nil || !b.l.Enabled(context.Background(), level) {
		return
	}
	b.l.Log(context.Background(), level, strings.TrimRight(fmt.Sprintf(format, v...), "\r\n"))
}

func (b *logBridge) Noticef(format string, v ...any) { b.emit(slog.LevelDebug, format, v) }
func (b *logBridge) Debugf(format string, v ...any)  { b.emit(slog.LevelDebug, format, v) }
func (b *logBridge) Tracef(string, ...any)           {}
func (b *logBridge) Warnf(format string, v ...any)   { b.emit(slog.LevelWarn, format, v) }
func (b *logBridge) Errorf(format string, v ...any)  { b.emit(slog.LevelError, format, v) }

func (b *logBridge) Fatalf(format string, v ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, v...), "\r\n")
	b.mu.Lock()
	if b.fatalLine == "" {
		b.fatalLine = msg
	}
	b.mu.Unlock()
	if b.l != nil {
		b.l.Error(msg, slog.Bool("fatal", true))
	}
}

// fatal returns the first fatal line logged, or "".
func (b *logBridge) fatal() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fatalLine
}
