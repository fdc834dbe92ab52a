package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/signalbus/signalbus/cluster"
)

func TestHealthzAndPprofFlag(t *testing.T) {
	off := serve(t, ServerConfig{})
	if resp, body := get(t, "http://"+off.Addr()+"/healthz"); resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("/healthz: %s %q", resp.Status, body)
	}
	if resp, _ := get(t, "http://"+off.Addr()+"/debug/pprof/"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without Pprof: %s, want 404", resp.Status)
	}
	if resp, _ := get(t, "http://"+off.Addr()+"/metrics"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics without a Gatherer: %s, want 404", resp.Status)
	}
	on := serve(t, ServerConfig{Pprof: true})
	if resp, body := get(t, "http://"+on.Addr()+"/debug/pprof/"); resp.StatusCode != 200 || !strings.Contains(string(body), "goroutine") {
		t.Errorf("/debug/pprof/ with Pprof: %s", resp.Status)
	}
	if resp, _ := get(t, "http://"+on.Addr()+"/debug/pprof/goroutine?debug=1"); resp.StatusCode != 200 {
		t.Errorf("/debug/pprof/goroutine with Pprof: %s", resp.Status)
	}
}

func TestServeDefaultsToLoopbackAndReportsAPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := Serve(ServerConfig{Addr: ln.Addr().String(), Logger: quietLogger()}); err == nil ||
		!strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Serve on a port in use: %v, want an error naming the address", err)
	}
	if DefaultAddr != "127.0.0.1:9464" {
		t.Fatalf("DefaultAddr = %s", DefaultAddr)
	}
}

func readyz(t *testing.T, s *Server) (int, ReadyReport) {
	t.Helper()
	resp, body := get(t, "http://"+s.Addr()+"/readyz")
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("/readyz Content-Type %q", ct)
	}
	var rep ReadyReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return resp.StatusCode, rep
}

// TestReadyzFollowsNATS: /readyz is 200 while the node is connected and
// its stream answers, 503 naming the nats and stream checks once its
// NATS server is gone.
func TestReadyzFollowsNATS(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	p := newProviders(t, Config{InstanceID: "r"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := cluster.Start(ctx, withProviders(cluster.Config{Name: "r", NATSURL: ns.ClientURL()}, p))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// With NATS gone Close cannot flush; its error is not under test.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = n.Close(ctx)
	}()
	s := serve(t, ServerConfig{Ready: n.Readiness})
	waitReady(t, n)
	if code, rep := readyz(t, s); code != 200 || !rep.Ready || len(rep.Failing) != 0 ||
		rep.Checks["nats"] != "ok" || rep.Checks["stream"] != "ok" || rep.Checks["membership"] != "ok" {
		t.Fatalf("/readyz of a ready node: %d %+v", code, rep)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, rep := readyz(t, s)
		if code == http.StatusServiceUnavailable && !rep.Ready && strings.Join(rep.Failing, ",") == "nats,stream" {
			if !strings.Contains(rep.Checks["nats"], cluster.ErrNotConnected.Error()) {
				t.Errorf("nats check: %q", rep.Checks["nats"])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz with NATS gone: %d %+v", code, rep)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReadyzNilReadyIsReady(t *testing.T) {
	s := serve(t, ServerConfig{})
	if code, rep := readyz(t, s); code != 200 || !rep.Ready {
		t.Fatalf("/readyz without checks: %d %+v", code, rep)
	}
	failing := serve(t, ServerConfig{Ready: func(context.Context) map[string]error {
		return map[string]error{"b": errors.New("down"), "a": errors.New("gone"), "c": nil}
	}})
	code, rep := readyz(t, failing)
	if code != http.StatusServiceUnavailable || strings.Join(rep.Failing, ",") != "a,b" || rep.Checks["c"] != "ok" || rep.Checks["a"] != "gone" {
		t.Fatalf("/readyz with failing checks: %d %+v", code, rep)
	}
}
