package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Logging is dispatch-side middleware that logs every handler run with its
// subscription and attempt: at debug level when it succeeds, at info level
// when it fails and will be retried, at warn level when it fails for the
// last time (retries spent, or a Permanent error).
func Logging(logger *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, s Signal) error {
			start := time.Now()
			err := next.Handle(ctx, s)
			d, _ := DeliveryFromContext(ctx)
			if err != nil {
				level, msg := slog.LevelInfo, "handler failed; will retry"
				if d.Final() || IsPermanent(err) {
					level, msg = slog.LevelWarn, "handler failed"
				}
				logger.LogAttrs(ctx, level, msg,
					slog.String("subscription", d.Subscription), slog.Int("attempt", d.Attempt),
					slog.String("signal_id", s.ID), slog.String("type", s.Type),
					slog.Duration("duration", time.Since(start)), slog.Any("error", err))
				return err
			}
			if logger.Enabled(ctx, slog.LevelDebug) {
				logger.LogAttrs(ctx, slog.LevelDebug, "handled",
					slog.String("subscription", d.Subscription), slog.Int("attempt", d.Attempt),
					slog.String("signal_id", s.ID), slog.String("type", s.Type),
					slog.Duration("duration", time.Since(start)))
			}
			return nil
		})
	}
}

// Recover is dispatch-side middleware that turns a panic in the handler
// into an error wrapping ErrHandlerPanic. The bus recovers panics on its
// own; Recover is for a Handler used outside the bus, or for middleware
// further out that must see the panic as an error (Logging, say).
func Recover() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, s Signal) error {
			return callHandler(ctx, next, s)
		})
	}
}

// Timeout is dispatch-side middleware that gives each handler run a
// deadline of d. A handler that fails once the deadline has passed gets an
// error wrapping ErrHandlerTimeout (and its own error). The handler must
// watch its ctx: Go cannot stop a goroutine that does not.
func Timeout(d time.Duration) Middleware {
	if d <= 0 {
		panic(fmt.Sprintf("bus: Timeout(%v): duration must be positive", d))
	}
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, s Signal) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			err := next.Handle(ctx, s)
			if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, ErrHandlerTimeout) {
				return fmt.Errorf("%w after %v: %w", ErrHandlerTimeout, d, err)
			}
			return err
		})
	}
}

// PublishLogging is publish-side middleware that logs every published
// batch at debug level and every failed one at warn level.
func PublishLogging(logger *slog.Logger) PublishMiddleware {
	return func(next PublishFunc) PublishFunc {
		return func(ctx context.Context, signals []Signal) error {
			err := next(ctx, signals)
			if err != nil {
				logger.LogAttrs(ctx, slog.LevelWarn, "publish failed",
					slog.Int("count", len(signals)), slog.String("first_type", signals[0].Type), slog.Any("error", err))
				return err
			}
			if logger.Enabled(ctx, slog.LevelDebug) {
				for _, s := range signals {
					logger.LogAttrs(ctx, slog.LevelDebug, "published",
						slog.String("signal_id", s.ID), slog.String("type", s.Type), slog.String("source", s.Source))
				}
			}
			return nil
		}
	}
}

// Enrich is publish-side middleware that applies fn to every signal before
// it is routed: set an extension, a subject, a default source. Extensions
// maps may be shared with the caller, so fn must replace a map, not write
// into it; SetExtension does that.
func Enrich(fn func(ctx context.Context, s *Signal)) PublishMiddleware {
	return func(next PublishFunc) PublishFunc {
		return func(ctx context.Context, signals []Signal) error {
			for i := range signals {
				fn(ctx, &signals[i])
			}
			return next(ctx, signals)
		}
	}
}

// SetExtension sets an extension on s in a copy of its Extensions map, so
// a map shared with the caller or other signals is not modified.
func SetExtension(s *Signal, name string, value any) {
	ext := make(map[string]any, len(s.Extensions)+1)
	for k, v := range s.Extensions {
		ext[k] = v
	}
	ext[name] = value
	s.Extensions = ext
}

// Filter is publish-side middleware that keeps only the signals for which
// keep returns true; it drops the rest before routing. A batch left empty
// is not routed at all.
func Filter(keep func(ctx context.Context, s Signal) bool) PublishMiddleware {
	return func(next PublishFunc) PublishFunc {
		return func(ctx context.Context, signals []Signal) error {
			kept := signals[:0]
			for _, s := range signals {
				if keep(ctx, s) {
					kept = append(kept, s)
				}
			}
			if len(kept) == 0 {
				return nil
			}
			return next(ctx, kept)
		}
	}
}
