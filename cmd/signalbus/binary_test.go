package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The binary is built once, the first time a test needs it, and removed
// after the run (TestMain).
var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func signalbusBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		binary.dir, binary.err = os.MkdirTemp("", "signalbus-bin-")
		if binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "signalbus")
		cmd := exec.Command("go", "build", "-o", binary.path, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binary.err = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

func removeBinary() {
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
}

// cleanEnv is the test process's environment without SIGNALBUS_ variables.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// Exit codes and stderr as a user sees them: one line, no stack trace.
func TestBinaryErrors(t *testing.T) {
	bin := signalbusBinary(t)
	dead := "nats://" + closedPort(t)
	cases := []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		want     string // regexp the whole stderr matches
	}{
		{"bad flag", []string{"pub", "--bogus"}, nil, 2, `^signalbus: pub: flag provided but not defined: -bogus \(see 'signalbus help pub'\)\n$`},
		{"bad env", []string{"sub", "a"}, []string{"SIGNALBUS_COUNT=x"}, 2, `^signalbus: sub: environment variable SIGNALBUS_COUNT="x": invalid value for --count: .*\n$`},
		{"malformed data", []string{"pub", "--type", "a", "--data", "{"}, nil, 2, `^signalbus: pub: --data is not valid JSON: .*\n$`},
		{"invalid pattern", []string{"sub", "a.b*"}, nil, 2, `^signalbus: sub: invalid pattern .*\n$`},
		{"unreachable", []string{"sub", "--nats", dead, "--connect-timeout", "1s", "a"}, nil, 1,
			`^signalbus: sub: connect to NATS at ` + regexp.QuoteMeta(dead) + `: .*\n$`},
		{"node port in use", []string{"node", "--name", "a", "--listen", busyPort(t), "--http", "127.0.0.1:0"}, nil, 1, `signalbus: node: start: .*\n$`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = cleanEnv(tc.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tc.wantCode {
				t.Fatalf("%v, want exit code %d\n%s", err, tc.wantCode, stderr.String())
			}
			if strings.Contains(stderr.String(), "goroutine ") || !regexp.MustCompile(tc.want).MatchString(stderr.String()) {
				t.Errorf("stderr %q does not match %s", stderr.String(), tc.want)
			}
		})
	}
}

// SIGTERM stops a node cleanly: exit 0, "stopped" logged.
func TestBinaryNodeSIGTERM(t *testing.T) {
	bin := signalbusBinary(t)
	cmd := exec.Command(bin, "node", "--name", "n1", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--log-format", "json")
	cmd.Env = cleanEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	waitLine := func(substr string) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stderr ended before %q", substr)
				}
				if strings.Contains(l, substr) {
					return
				}
			case <-timeout:
				_ = cmd.Process.Kill()
				t.Fatalf("no %q on stderr", substr)
			}
		}
	}
	waitLine(`"msg":"node started"`)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLine(`"msg":"stopped"`)
	for range lines {
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("node after SIGTERM: %v, want exit 0", err)
		}
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		t.Fatal("node did not exit after SIGTERM")
	}
	_ = io.Discard
}

// outputWatch collects what a process writes, never holding it up, and
// tells waiters whenever more has come.
type outputWatch struct {
	lockedBuffer
	more chan struct{}
}

func newOutputWatch() *outputWatch { return &outputWatch{more: make(chan struct{}, 1)} }

func (w *outputWatch) Write(p []byte) (int, error) {
	n, err := w.lockedBuffer.Write(p)
	select {
	case w.more <- struct{}{}:
	default:
	}
	return n, err
}

// waitFor waits until the output contains substr, or fails the test when
// exited is closed or 60 s pass first.
func (w *outputWatch) waitFor(t *testing.T, substr string, exited <-chan struct{}) {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for !strings.Contains(w.String(), substr) {
		select {
		case <-w.more:
		case <-exited:
			if !strings.Contains(w.String(), substr) {
				t.Fatalf("the process exited before writing %q:\n%s", substr, w.String())
			}
		case <-timeout:
			t.Fatalf("no %q after 60 s:\n%s", substr, w.String())
		}
	}
}

// A second signal while a node shuts down exits at once with code 130.
// The shutdown is held up for good: the OTLP endpoint takes the telemetry
// flush's export and never answers, and every timeout on the way
// (--shutdown-timeout, the exporter's, the span processor's) is longer
// than the test, so only the second signal can end the process.
func TestBinaryNodeSecondSignal(t *testing.T) {
	bin := signalbusBinary(t)
	exports := make(chan struct{}, 1)
	release := make(chan struct{})
	otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case exports <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); otlp.Close() })

	cmd := exec.Command(bin, "node", "--name", "n1", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--log-format", "json", "--log-level", "debug",
		"--otlp-endpoint", otlp.URL, "--otlp-insecure", "--canary-interval", "50ms", "--shutdown-timeout", "10m")
	cmd.Env = cleanEnv("OTEL_EXPORTER_OTLP_TIMEOUT=600000", "OTEL_BSP_EXPORT_TIMEOUT=600000")
	out := newOutputWatch()
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	// A canary delivered: its spans end before the shutdown flushes them.
	out.waitFor(t, `"type":"signalbus.canary"`, exited)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, `"msg":"stopped"`, exited)
	select {
	case <-exports: // the flush is under way, and stuck
	case <-exited:
		t.Fatalf("the node exited before it flushed its spans: %v\n%s", waitErr, out.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("no OTLP export after 60 s:\n%s", out.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the node still runs 60 s after a second SIGTERM:\n%s", out.String())
	}
	var exit *exec.ExitError
	if !errors.As(waitErr, &exit) || exit.ExitCode() != 130 {
		t.Fatalf("after a second SIGTERM: %v, want exit code 130\n%s", waitErr, out.String())
	}
	if !strings.Contains(out.String(), "signalbus: second signal (terminated): exiting without finishing the shutdown\n") {
		t.Errorf("no notice of the second signal on stderr:\n%s", out.String())
	}
}
