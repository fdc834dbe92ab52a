package dispatch_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/bus/dispatch"
)

func TestLogger(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	cases := []struct {
		name        string
		loggerLevel slog.Level
		level       slog.Level
		opts        []bus.SignalOption
		data        any
		wantLine    bool
		wantLevel   string
		wantSize    int
	}{
		{"info with subject", slog.LevelInfo, slog.LevelInfo,
			[]bus.SignalOption{bus.WithSubject("42")}, map[string]int{"total": 42}, true, "INFO", len(`{"total":42}`)},
		{"warn without subject or data", slog.LevelInfo, slog.LevelWarn,
			nil, nil, true, "WARN", 0},
		{"binary data", slog.LevelDebug, slog.LevelDebug,
			nil, []byte{0, 1, 2, 3, 4}, true, "DEBUG", 5},
		{"below the logger's level", slog.LevelWarn, slog.LevelInfo,
			nil, "x", false, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tc.loggerLevel}))
			opts := append([]bus.SignalOption{bus.WithTime(at), bus.WithExtension("secret", "do-not-log")}, tc.opts...)
			s, err := bus.NewSignal("order.created", "/shop", tc.data, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := dispatch.Logger(l, tc.level).Handle(context.Background(), s); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if !tc.wantLine {
				if buf.Len() != 0 {
					t.Errorf("logged %s, want nothing", buf.Bytes())
				}
				return
			}
			lines := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
			if len(lines) != 1 {
				t.Fatalf("logged %d lines, want 1:\n%s", len(lines), buf.Bytes())
			}
			got := decodeLine(t, lines[0])
			if got.Level != tc.wantLevel || got.Msg != dispatch.LogMessage {
				t.Errorf("level, msg = %q, %q; want %q, %q", got.Level, got.Msg, tc.wantLevel, dispatch.LogMessage)
			}
			g := got.Signal
			if g.ID != s.ID || g.Type != s.Type || g.Source != s.Source || g.Subject != s.Subject ||
				!g.Time.Equal(at) || g.DataSize != tc.wantSize {
				t.Errorf("signal group = %+v, want id %s type %s source %s subject %q time %v data_size %d",
					g, s.ID, s.Type, s.Source, s.Subject, at, tc.wantSize)
			}
			group := got.raw["signal"].(map[string]any)
			if _, ok := group["subject"]; ok != (s.Subject != "") {
				t.Errorf("subject present = %v, want %v", ok, s.Subject != "")
			}
			// Neither the data nor the extensions are logged.
			for _, leak := range []string{"do-not-log", `"total"`, "data\""} {
				if bytes.Contains(lines[0], []byte(leak)) {
					t.Errorf("line contains %s: %s", leak, lines[0])
				}
			}
		})
	}
}

func TestLoggerNil(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Logger(nil, …) did not panic")
		}
	}()
	dispatch.Logger(nil, slog.LevelInfo)
}
