package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is ServerConfig.Addr's default: loopback, so that a node
// exposes nothing beyond the machine unless told to.
const DefaultAddr = "127.0.0.1:9464"

// readyTimeout bounds one /readyz evaluation.
const readyTimeout = 2 * time.Second

// ServerConfig configures Serve.
type ServerConfig struct {
	// Addr is the listen address. Default 127.0.0.1:9464; port 0 picks a
	// free one (see Server.Addr).
	Addr string
	// Gatherer is served at /metrics, in OpenMetrics when the scraper
	// asks for it (exemplars are only in OpenMetrics). Nil: /metrics
	// answers 404.
	Gatherer prometheus.Gatherer
	// Ready is evaluated per /readyz request: 200 when every value is nil,
	// else 503. The JSON body names each check and its error. Nil: always
	// ready.
	Ready func(ctx context.Context) map[string]error
	// Pprof serves net/http/pprof under /debug/pprof/; off by default, as
	// profiles reveal the program's internals.
	Pprof bool
	// Logger receives serving errors. Default slog.Default().
	Logger *slog.Logger
}

// Server is the telemetry HTTP listener.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// ReadyReport is /readyz's JSON body.
type ReadyReport struct {
	Ready bool `json:"ready"`
	// Checks maps each check to "ok" or its error.
	Checks map[string]string `json:"checks"`
	// Failing names the checks that are not ready, sorted.
	Failing []string `json:"failing,omitempty"`
}

// Serve listens on cfg.Addr and serves in a goroutine until Close. A
// listen error (a port in use) is returned at once.
func Serve(cfg ServerConfig) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	mux := http.NewServeMux()
	if cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
			EnableOpenMetrics: true,
			ErrorLog:          promLogger{cfg.Logger},
			ErrorHandling:     promhttp.ContinueOnError,
		}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		var checks map[string]error
		if cfg.Ready != nil {
			checks = cfg.Ready(ctx)
		}
		rep := ReadyReport{Ready: true, Checks: make(map[string]string, len(checks))}
		for name, err := range checks {
			if err != nil {
				rep.Checks[name] = err.Error()
				rep.Failing = append(rep.Failing, name)
				rep.Ready = false
			} else {
				rep.Checks[name] = "ok"
			}
		}
		sort.Strings(rep.Failing)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !rep.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("telemetry: listen %s: %w", cfg.Addr, err)
	}
	s := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error("telemetry HTTP server stopped", "addr", ln.Addr().String(), "error", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on, with the port it bound.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops listening and waits for requests in flight until ctx ends,
// then closes their connections.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	if err != nil {
		return fmt.Errorf("telemetry: close server: %w", err)
	}
	return nil
}

type promLogger struct{ l *slog.Logger }

func (p promLogger) Println(v ...any) { p.l.Warn(fmt.Sprint(v...), "component", "metrics") }
