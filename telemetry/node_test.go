package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newProviders builds Providers for a test and shuts them down after it.
func newProviders(t *testing.T, cfg Config) *Providers {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return p
}

// withProviders points a node's bus and cluster at p instead of the globals.
func withProviders(cfg cluster.Config, p *Providers) cluster.Config {
	cfg.MeterProvider, cfg.TracerProvider = p.MeterProvider, p.TracerProvider
	cfg.BusOptions = append(cfg.BusOptions, bus.WithMeterProvider(p.MeterProvider),
		bus.WithTracerProvider(p.TracerProvider), bus.WithPropagator(p.Propagator), bus.WithLogger(quietLogger()))
	if cfg.Listen == "" && cfg.NATSURL == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	cfg.Logger, cfg.NoSync = quietLogger(), true
	return cfg
}

// startNode starts a node, closed when the test ends.
func startNode(t *testing.T, cfg cluster.Config) *cluster.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := cluster.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("Close(%s): %v", cfg.Name, err)
		}
	})
	return n
}

// freeAddr returns a loopback address nothing listens on at the moment.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startPair starts two durable nodes, a and b, each on its own embedded
// server, routed to each other, each with its own Providers.
func startPair(t *testing.T, pa, pb *Providers) (a, b *cluster.Node) {
	t.Helper()
	ra, rb := freeAddr(t), freeAddr(t)
	cfgA := withProviders(cluster.Config{Name: "a", ClusterListen: ra, Routes: []string{"nats://" + rb}, ExpectedSize: 2}, pa)
	cfgB := withProviders(cluster.Config{Name: "b", ClusterListen: rb, Routes: []string{"nats://" + ra}, ExpectedSize: 2}, pb)
	type started struct {
		n   *cluster.Node
		err error
	}
	ch := make(chan started, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := cluster.Start(ctx, cfgB)
		ch <- started{n, err}
	}()
	a = startNode(t, cfgA)
	s := <-ch
	if s.err != nil {
		t.Fatalf("Start(b): %v", s.err)
	}
	b = s.n
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close(b): %v", err)
		}
	})
	waitReady(t, a)
	waitReady(t, b)
	return a, b
}

// waitReady waits until every readiness check of n passes.
func waitReady(t *testing.T, n *cluster.Node) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var failing []string
		for name, err := range n.Readiness(context.Background()) {
			if err != nil {
				failing = append(failing, fmt.Sprintf("%s: %v", name, err))
			}
		}
		if len(failing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s never ready: %s", n.Name(), strings.Join(failing, "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func serve(t *testing.T, cfg ServerConfig) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	cfg.Logger = quietLogger()
	s, err := Serve(cfg)
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Server.Close: %v", err)
		}
	})
	return s
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp, body
}
