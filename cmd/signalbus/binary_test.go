package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
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
