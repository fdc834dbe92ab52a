package containers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/signalbus/signalbus/chaos"
	"github.com/signalbus/signalbus/chaos/chaostest"
	"github.com/signalbus/signalbus/e2e/containers"
)

// partitioned is the gauge a node sets to 1 while it sees itself cut off
// (telemetry/catalog).
const partitioned = "signalbus_cluster_partitioned"

// requireDocker skips the test when no Docker engine answers, unless
// SIGNALBUS_E2E is set: then a missing engine is a failure.
func requireDocker(t *testing.T) {
	t.Helper()
	out, err := exec.Command("docker", "info").CombinedOutput()
	if err == nil {
		return
	}
	if os.Getenv("SIGNALBUS_E2E") == "" {
		t.Skipf("no Docker engine (docker info: %v); set SIGNALBUS_E2E=1 to make this a failure", err)
	}
	t.Fatalf("SIGNALBUS_E2E is set, but docker info fails: %v\n%s", err, out)
}

// testLogger writes the backend's log to the test's.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestCluster(t *testing.T) {
	requireDocker(t)
	const record = `{"op":"invoke"}` + "\n"
	img := image(t)
	began := time.Now()
	c := containers.StartT(t, containers.Spec{
		Image:  img,
		Nodes:  3,
		Mode:   "durable",
		Files:  map[string][]byte{containers.DefaultRecordPath: []byte(record)},
		Logger: testLogger(t),
	}, 5*time.Minute)
	t.Logf("3 durable nodes ready in %v (the image built before)", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, c)
		}
	})

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow() // the cluster may be left faulted: the rest would mislead
		}
	}
	step("RoutesThroughProxies", func(t *testing.T) {
		if err := c.CheckRoutes(); err != nil {
			t.Error(err)
		}
		if err := chaostest.RoundTrip(t.Context(), c, "n1", "n3", 10*time.Second); err != nil {
			t.Error(err)
		}
	})
	step("Isolate", func(t *testing.T) {
		if err := c.Isolate(t.Context(), "n1"); err != nil {
			t.Fatal(err)
		}
		chaostest.WaitGauge(t, c, "n1", partitioned, 1, 15*time.Second)
		for _, other := range []string{"n2", "n3"} {
			if v, err := chaostest.Gauge(t.Context(), c, other, partitioned); err != nil || v != 0 {
				t.Errorf("%s, on the majority side: %s = %v, %v; want 0", other, partitioned, v, err)
			}
		}
		if err := c.CheckRoutes(); err != nil {
			t.Error(err)
		}
		if err := c.Heal(t.Context()); err != nil {
			t.Fatal(err)
		}
		chaostest.WaitGauge(t, c, "n1", partitioned, 0, 15*time.Second)
		waitReady(t, c)
	})
	step("BlackHole", func(t *testing.T) {
		if err := c.BlackHole(t.Context(), "n1", "n2"); err != nil {
			t.Fatal(err)
		}
		chaostest.WaitUnreachable(t, c, "n1", "n2")
		if err := chaostest.RoundTrip(t.Context(), c, "n1", "n3", 10*time.Second); err != nil {
			t.Errorf("beside the black hole: %v", err)
		}
		if err := c.Heal(t.Context()); err != nil {
			t.Fatal(err)
		}
		waitReady(t, c)
		if err := chaostest.RoundTrip(t.Context(), c, "n1", "n2", 20*time.Second); err != nil {
			t.Errorf("after Heal: %v", err)
		}
	})
	step("Slow", func(t *testing.T) {
		const latency = 300 * time.Millisecond
		if err := c.Slow(t.Context(), "n1", "n2", latency); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err := chaostest.RoundTrip(t.Context(), c, "n1", "n2", 20*time.Second)
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		// A lower bound only: added latency can only make it longer.
		if took < latency {
			t.Errorf("a round trip over a link slowed by %v took %v", latency, took)
		}
		if err := c.Heal(t.Context()); err != nil {
			t.Fatal(err)
		}
		waitReady(t, c)
	})
	step("KillRestart", func(t *testing.T) {
		oldHTTP := c.HTTPURL("n2")
		if err := c.Kill(t.Context(), "n2"); err != nil {
			t.Fatal(err)
		}
		if _, err := get(t.Context(), oldHTTP+"/readyz", 5*time.Second); err == nil {
			t.Error("a killed node answers /readyz")
		}
		if err := c.Kill(t.Context(), "n2"); err != nil {
			t.Errorf("Kill of a killed node: %v", err)
		}
		if err := c.Pause(t.Context(), "n2"); !errors.Is(err, chaos.ErrBadFault) {
			t.Errorf("Pause of a killed node: %v, want chaos.ErrBadFault", err)
		}
		rc, err := c.Record(t.Context(), "n2")
		if err != nil {
			t.Fatalf("Record of a killed node: %v", err)
		}
		checkRecord(t, rc, record)
		if err := c.Restart(t.Context(), "n2"); err != nil {
			t.Fatal(err)
		}
		waitReady(t, c)
		if code, err := get(t.Context(), c.HTTPURL("n2")+"/readyz", 5*time.Second); err != nil || code != http.StatusOK {
			t.Errorf("restarted n2 at %s: /readyz %d, %v", c.HTTPURL("n2"), code, err)
		}
		if err := chaostest.RoundTrip(t.Context(), c, "n2", "n1", 20*time.Second); err != nil {
			t.Errorf("after Restart: %v", err)
		}
		if err := c.CheckRoutes(); err != nil {
			t.Error(err)
		}
		// The handle stays good across restarts: kill it again.
		if err := c.Restart(t.Context(), "n2"); err != nil {
			t.Fatalf("Restart of a running node: %v", err)
		}
		waitReady(t, c)
	})
	step("Pause", func(t *testing.T) {
		if err := c.Pause(t.Context(), "n3"); err != nil {
			t.Fatal(err)
		}
		if err := c.Pause(t.Context(), "n3"); err != nil {
			t.Errorf("Pause of a paused node: %v", err)
		}
		// A frozen process keeps its sockets: a request times out
		// rather than being refused.
		if _, err := get(t.Context(), c.HTTPURL("n3")+"/healthz", 2*time.Second); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("GET /healthz of a paused node: %v, want a timeout", err)
		}
		rc, err := c.Record(t.Context(), "n3")
		if err != nil {
			t.Fatalf("Record of a paused node: %v", err)
		}
		checkRecord(t, rc, record)
		// Rules go into a frozen node's namespace too.
		if err := c.BlackHole(t.Context(), "n1", "n3"); err != nil {
			t.Errorf("BlackHole of a paused node's link: %v", err)
		}
		if err := c.Heal(t.Context()); err != nil {
			t.Errorf("Heal with a paused node: %v", err)
		}
		if err := c.Resume(t.Context(), "n3"); err != nil {
			t.Fatal(err)
		}
		if err := c.Resume(t.Context(), "n3"); err != nil {
			t.Errorf("Resume of a running node: %v", err)
		}
		waitReady(t, c)
	})
	step("KillPaused", func(t *testing.T) {
		if err := c.Pause(t.Context(), "n3"); err != nil {
			t.Fatal(err)
		}
		if err := c.Kill(t.Context(), "n3"); err != nil {
			t.Fatalf("Kill of a paused node: %v", err)
		}
		if _, err := get(t.Context(), c.HTTPURL("n3")+"/healthz", 5*time.Second); err == nil {
			t.Error("a killed node answers /healthz")
		}
		if err := c.Restart(t.Context(), "n3"); err != nil {
			t.Fatal(err)
		}
		waitReady(t, c)
	})
	step("RestartIntoPartition", func(t *testing.T) {
		// A node killed, then cut off while down, comes back cut off.
		if err := c.Kill(t.Context(), "n1"); err != nil {
			t.Fatal(err)
		}
		if err := c.Isolate(t.Context(), "n1"); err != nil {
			t.Fatal(err)
		}
		if err := c.Restart(t.Context(), "n1"); err != nil {
			t.Fatal(err)
		}
		chaostest.WaitGauge(t, c, "n1", partitioned, 1, 30*time.Second)
		if err := chaostest.RoundTrip(t.Context(), c, "n1", "n2", 3*time.Second); err == nil {
			t.Error("restarted into isolation, n1 reaches n2")
		}
		if err := c.Heal(t.Context()); err != nil {
			t.Fatal(err)
		}
		chaostest.WaitGauge(t, c, "n1", partitioned, 0, 15*time.Second)
		waitReady(t, c)
	})
	step("Record", func(t *testing.T) {
		rc, err := c.Record(t.Context(), "n1")
		if err != nil {
			t.Fatal(err)
		}
		checkRecord(t, rc, record)
		if _, err := c.Record(t.Context(), "n9"); !errors.Is(err, chaos.ErrUnknownNode) {
			t.Errorf("Record of n9: %v, want chaos.ErrUnknownNode", err)
		}
	})
}

func checkRecord(t *testing.T, rc io.ReadCloser, want string) {
	t.Helper()
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("record = %q, want %q", got, want)
	}
}

func dumpLogs(t *testing.T, c *containers.Cluster) {
	for _, n := range c.Nodes() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rc, err := c.Logs(ctx, n)
		if err == nil {
			data, _ := io.ReadAll(rc)
			rc.Close()
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			t.Logf("%s's log ends:\n%s", n, strings.Join(lines, "\n"))
		}
		cancel()
	}
}

func waitReady(t *testing.T, c *containers.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// get returns the status of a GET of url, bounded by timeout.
func get(ctx context.Context, url string, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}

// TestConformance: the container backend passes the suite every backend
// passes.
func TestConformance(t *testing.T) {
	requireDocker(t)
	c := containers.StartT(t, containers.Spec{Image: image(t), Logger: testLogger(t)}, 5*time.Minute)
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, c)
		}
	})
	chaostest.Run(t, chaostest.Backend{Cluster: c, WaitReady: c.WaitReady})
}

// TestFastModeArgsEnv: fast mode, and a node's extra arguments and
// environment reach it.
func TestFastModeArgsEnv(t *testing.T) {
	requireDocker(t)
	c := containers.StartT(t, containers.Spec{
		Image: image(t),
		Nodes: 2,
		Mode:  "fast",
		Args: func(name string) []string {
			if name == "n1" {
				return []string{"--log-level", "warn"}
			}
			return nil
		},
		Env:    map[string]string{"SIGNALBUS_LOG_FORMAT": "json"},
		Logger: testLogger(t),
	}, 3*time.Minute)
	if err := chaostest.RoundTrip(t.Context(), c, "n1", "n2", 10*time.Second); err != nil {
		t.Error(err)
	}
	logs := func(node string) string {
		rc, err := c.Logs(t.Context(), node)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		data, _ := io.ReadAll(rc)
		return string(data)
	}
	if l := logs("n2"); !strings.Contains(l, `"msg":"node started"`) || !strings.Contains(l, `"mode":"fast"`) {
		t.Errorf("n2's log has no JSON 'node started' in fast mode:\n%s", l)
	}
	if l := logs("n1"); strings.Contains(l, `"msg":"node started"`) {
		t.Errorf("n1, given --log-level warn, logs at info:\n%s", l)
	}
	if err := c.CheckRoutes(); err != nil {
		t.Error(err)
	}
}
