package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster"
	"github.com/signalbus/signalbus/cluster/client"
)

// lockedBuffer is a bytes.Buffer safe for a command writing while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *lockedBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func noEnv(string) (string, bool) { return "", false }

func envOf(kv map[string]string) LookupEnv {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

// startNode runs a node on free ports until the test ends and returns its
// NATS URL and HTTP address.
func startNode(t *testing.T, args ...string) (natsURL, httpAddr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr lockedBuffer
	type started struct {
		n    *cluster.Node
		addr string
	}
	ready := make(chan started, 1)
	cmd := &NodeCommand{Stdout: io.Discard, Stderr: &stderr, LookupEnv: noEnv,
		started: func(n *cluster.Node, addr string) { ready <- started{n, addr} }}
	done := make(chan error, 1)
	go func() {
		done <- cmd.Run(ctx, append([]string{"--name", "n1", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
			"--data-dir", t.TempDir(), "--log-level", "warn"}, args...))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node after cancel: %v, want nil\n%s", err, stderr.String())
		}
	})
	select {
	case s := <-ready:
		return s.n.ClientURL(), s.addr
	case err := <-done:
		done <- err
		t.Fatalf("node ended: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("node did not start:\n%s", stderr.String())
	}
	return "", ""
}

func waitReady(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz still %d: %s", resp.StatusCode, body)
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("/readyz: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNodePubSub(t *testing.T) {
	url, addr := startNode(t)
	waitReady(t, addr)

	// A live sub, in place before the publishes.
	subscribed := make(chan struct{})
	var subOut, subErr lockedBuffer
	subDone := make(chan error, 1)
	sub := &SubCommand{Stdout: &subOut, Stderr: &subErr, LookupEnv: noEnv, subscribed: func() { close(subscribed) }}
	go func() { subDone <- sub.Run(t.Context(), []string{"order.*", "--nats", url, "--count", "10"}) }()
	select {
	case <-subscribed:
	case err := <-subDone:
		t.Fatalf("sub ended: %v\n%s", err, subErr.String())
	}

	var pubOut, pubErr bytes.Buffer
	pub := &PubCommand{Stdout: &pubOut, Stderr: &pubErr, LookupEnv: noEnv}
	if err := pub.Run(t.Context(), []string{"--nats", url, "--type", "order.created", "--source", "/test", "--data", `{"n":1}`, "--count", "10"}); err != nil {
		t.Fatalf("pub: %v\n%s", err, pubErr.String())
	}
	if !strings.Contains(pubOut.String(), "sent=10 acked=10 duplicate=0 failed=0") {
		t.Errorf("pub summary %q", pubOut.String())
	}
	if err := <-subDone; err != nil {
		t.Fatalf("sub: %v\n%s", err, subErr.String())
	}
	checkLines := func(out string) []bus.Signal {
		t.Helper()
		var got []bus.Signal
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var s bus.Signal
			if err := s.UnmarshalJSON(sc.Bytes()); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			if s.Type != "order.created" || string(s.Data) != `{"n":1}` || s.Extensions[cluster.ExtensionSequence] != nil {
				t.Errorf("signal %+v", s)
			}
			got = append(got, s)
		}
		if len(got) != 10 {
			t.Fatalf("%d lines, want 10:\n%s", len(got), out)
		}
		return got
	}
	live := checkLines(subOut.String())

	// Replay from the stream.
	var replayOut, replayErr bytes.Buffer
	rs := &SubCommand{Stdout: &replayOut, Stderr: &replayErr, LookupEnv: noEnv}
	if err := rs.Run(t.Context(), []string{"--nats", url, "--all", "--count", "10", "order.**"}); err != nil {
		t.Fatalf("sub --all: %v\n%s", err, replayErr.String())
	}
	replayed := checkLines(replayOut.String())
	for i := range live {
		if live[i].ID != replayed[i].ID {
			t.Errorf("replayed signal %d is %s, live was %s", i, replayed[i].ID, live[i].ID)
		}
	}

	// The replayed lines published again from stdin: the stream knows their ids.
	var againOut, againErr bytes.Buffer
	again := &PubCommand{Stdin: strings.NewReader(replayOut.String()), Stdout: &againOut, Stderr: &againErr, LookupEnv: noEnv}
	if err := again.Run(t.Context(), []string{"--nats", url}); err != nil {
		t.Fatalf("pub from stdin: %v\n%s", err, againErr.String())
	}
	if !strings.Contains(againOut.String(), "sent=10 acked=10 duplicate=10") {
		t.Errorf("pub from stdin summary %q", againOut.String())
	}
}

// closedPort returns a 127.0.0.1 port nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// busyPort returns a 127.0.0.1 address held by a listener until the test ends.
func busyPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func TestCommandErrors(t *testing.T) {
	dead := "nats://" + closedPort(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		args       []string
		env        map[string]string
		stdin      string
		wantCode   int
		wantStderr string
	}{
		{name: "pub bad flag", args: []string{"pub", "--bogus"}, wantCode: 2, wantStderr: "flag provided but not defined: -bogus"},
		{name: "pub bad count", args: []string{"pub", "--type", "a", "--count", "0"}, wantCode: 2, wantStderr: "--count 0"},
		{name: "pub bad mode", args: []string{"pub", "--mode", "slow"}, wantCode: 2, wantStderr: `invalid value "slow" for flag -mode: must be durable or fast`},
		{name: "pub bad env", args: []string{"pub"}, env: map[string]string{"SIGNALBUS_COUNT": "many"}, wantCode: 2,
			wantStderr: `SIGNALBUS_COUNT="many": invalid value for --count`},
		{name: "pub invalid type", args: []string{"pub", "--type", "order..created"}, wantCode: 2, wantStderr: "type"},
		{name: "pub malformed data", args: []string{"pub", "--type", "order.created", "--data", `{"n":`}, wantCode: 2,
			wantStderr: "--data is not valid JSON"},
		{name: "pub data file missing", args: []string{"pub", "--type", "a", "--data", "@/nonexistent/x.json"}, wantCode: 2, wantStderr: "/nonexistent/x.json"},
		{name: "pub unreachable", args: []string{"pub", "--nats", dead, "--type", "a", "--connect-timeout", "1s"}, wantCode: 1,
			wantStderr: "connect to NATS at " + dead},
		{name: "pub bad stdin line", args: []string{"pub", "--nats", dead, "--connect-timeout", "1s"}, stdin: "{}\n", wantCode: 1,
			wantStderr: "connect to NATS"},
		{name: "pub bad prefix", args: []string{"pub", "--prefix", "app.*", "--type", "a"}, wantCode: 2,
			wantStderr: `pub: --prefix "app.*" must be dot-separated segments of [A-Za-z0-9_-]`},
		{name: "sub bad prefix", args: []string{"sub", "--prefix", "app..x", "a"}, wantCode: 2, wantStderr: `sub: --prefix "app..x" must be`},
		{name: "sub no pattern", args: []string{"sub"}, wantCode: 2, wantStderr: "no PATTERN"},
		{name: "sub invalid pattern", args: []string{"sub", "order.c*"}, wantCode: 2, wantStderr: "invalid pattern"},
		{name: "sub bad since", args: []string{"sub", "--since", "yesterday", "a"}, wantCode: 2, wantStderr: `--since "yesterday"`},
		{name: "sub group replay", args: []string{"sub", "--group", "g", "--all", "a"}, wantCode: 2, wantStderr: "--group"},
		{name: "sub unreachable", args: []string{"sub", "--nats", dead, "--connect-timeout", "1s", "a.*"}, wantCode: 1,
			wantStderr: "connect to NATS at " + dead},
		{name: "node no name", args: []string{"node"}, wantCode: 2, wantStderr: "--name is required"},
		{name: "node bad name", args: []string{"node", "--name", "a b"}, wantCode: 2, wantStderr: "--name"},
		{name: "node nats and listen", args: []string{"node", "--name", "a", "--nats", "nats://x:1", "--listen", "127.0.0.1:1"}, wantCode: 2,
			wantStderr: "--listen is for the embedded server"},
		{name: "node negative canary", args: []string{"node", "--name", "a", "--canary-interval", "-1s"}, wantCode: 2, wantStderr: "--canary-interval -1s"},
		// Refused before any server starts: the busy port would fail the start.
		{name: "node invalid subscribe pattern", args: []string{"node", "--name", "a", "--listen", busyPort(t), "--http", "127.0.0.1:0",
			"--data-dir", t.TempDir(), "--subscribe", "order.*,order.c*"}, wantCode: 2, wantStderr: `node: --subscribe: invalid pattern "order.c*"`},
		{name: "node bad log level", args: []string{"node", "--log-level", "loud"}, wantCode: 2, wantStderr: "must be debug, info, warn or error"},
		{name: "node data dir unwritable", args: []string{"node", "--name", "a", "--data-dir", filepath.Join(file, "sub")}, wantCode: 1,
			wantStderr: "--data-dir"},
		{name: "node http in use", args: []string{"node", "--name", "a", "--listen", "127.0.0.1:0", "--http", busyPort(t)}, wantCode: 1,
			wantStderr: "--http"},
		{name: "node listen in use", args: []string{"node", "--name", "a", "--listen", busyPort(t), "--http", "127.0.0.1:0"}, wantCode: 1,
			wantStderr: "node: start"},
		{name: "node help lists env", args: []string{"node", "--help"}, wantCode: 0, wantStderr: "SIGNALBUS_CLUSTER_LISTEN"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			m := &Main{Stdin: strings.NewReader(tc.stdin), Stdout: &out, Stderr: &errOut, LookupEnv: envOf(tc.env)}
			err := m.Run(t.Context(), tc.args)
			var report bytes.Buffer
			code := exitCode(err, &report)
			stderr := errOut.String() + report.String()
			if code != tc.wantCode {
				t.Fatalf("exit code %d (err %v), want %d\n%s", code, err, tc.wantCode, stderr)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.wantStderr, stderr)
			}
			if tc.wantCode != 0 && strings.Count(strings.TrimSpace(report.String()), "\n") > 0 {
				t.Errorf("error is more than one line:\n%s", report.String())
			}
		})
	}
}

// A flag given wins over its variable; a variable stands for a flag not given.
func TestEnvPrecedence(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, map[string]string{"SIGNALBUS_TYPE": "env.type"}, "env.type"},
		{[]string{"--type", "flag.type"}, map[string]string{"SIGNALBUS_TYPE": "env.type"}, "flag.type"},
		{nil, nil, ""},
	}
	for _, tc := range cases {
		fs := newFlagSet("pub", io.Discard, "")
		typ := fs.String("type", "", "")
		if _, err := parseArgs(fs, tc.args, envOf(tc.env)); err != nil {
			t.Fatal(err)
		}
		if *typ != tc.want {
			t.Errorf("args %q env %v: --type %q, want %q", tc.args, tc.env, *typ, tc.want)
		}
	}
	if got := envName("cluster-listen"); got != "SIGNALBUS_CLUSTER_LISTEN" {
		t.Errorf("envName = %q", got)
	}
	// Interspersed positionals and "--".
	fs := newFlagSet("sub", io.Discard, "")
	count := fs.Int("count", 0, "")
	pos, err := parseArgs(fs, []string{"a.*", "--count", "3", "--", "-x"}, noEnv)
	if err != nil || *count != 3 || fmt.Sprint(pos) != "[a.* -x]" {
		t.Errorf("parseArgs: %v %d %q", err, *count, pos)
	}
	_ = errors.New
}

// A replay whose stream goes away ends sub with an error, one line and
// exit code 1, instead of a sub waiting for signals that cannot come.
func TestSubReplayStreamGone(t *testing.T) {
	url, addr := startNode(t)
	waitReady(t, addr)
	var pubOut, pubErr bytes.Buffer
	pub := &PubCommand{Stdout: &pubOut, Stderr: &pubErr, LookupEnv: noEnv}
	if err := pub.Run(t.Context(), []string{"--nats", url, "--type", "order.created", "--source", "/test"}); err != nil {
		t.Fatalf("pub: %v\n%s", err, pubErr.String())
	}

	var subOut, subErr lockedBuffer
	sub := &SubCommand{Stdout: &subOut, Stderr: &subErr, LookupEnv: noEnv}
	done := make(chan error, 1)
	go func() { done <- sub.Run(t.Context(), []string{"--nats", url, "--all", "order.**"}) }()
	// The replay is reading once the stored signal is printed.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(subOut.String(), `"order.created"`); {
		select {
		case err := <-done:
			t.Fatalf("sub ended before the replay printed anything: %v\n%s", err, subErr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sub --all printed nothing:\n%s", subErr.String())
		}
	}

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(t.Context(), client.StreamName(client.DefaultPrefix)); err != nil {
		t.Fatal(err)
	}

	select {
	case err := <-done:
		var report bytes.Buffer
		if code := exitCode(err, &report); code != 1 {
			t.Fatalf("sub after its stream went away: %v, exit code %d, want 1\n%s", err, code, subErr.String())
		}
		if msg := strings.TrimSpace(report.String()); strings.Contains(msg, "\n") || !strings.Contains(msg, "replay from stream "+client.StreamName(client.DefaultPrefix)+" stopped") {
			t.Errorf("report %q: want one line saying the replay stopped", msg)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("sub still running 2 minutes after its stream went away:\n%s", subErr.String())
	}
}

// A node whose own subscriptions fail once it has started is closed
// before Run returns: its NATS server no longer listens.
func TestNodeClosedWhenCanarySubscribeFails(t *testing.T) {
	var (
		node      *cluster.Node
		clientURL string
		stderr    lockedBuffer
	)
	cmd := &NodeCommand{Stdout: io.Discard, Stderr: &stderr, LookupEnv: noEnv,
		afterStart: func(n *cluster.Node) {
			node, clientURL = n, n.ClientURL()
			// A closed bus refuses every Subscribe, the canary's too.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := n.Bus().Close(ctx); err != nil {
				t.Errorf("close the bus: %v", err)
			}
		}}
	err := cmd.Run(t.Context(), []string{"--name", "n1", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--log-level", "error", "--canary-interval", "1s"})
	if node == nil {
		t.Fatalf("the node did not start: %v\n%s", err, stderr.String())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = node.Close(ctx)
	})
	var report bytes.Buffer
	if code := exitCode(err, &report); code != 1 || !strings.Contains(report.String(), "node: canary: ") {
		t.Errorf("Run: %v, exit code %d; want 1 and a canary error", err, code)
	}
	u, perr := url.Parse(clientURL)
	if perr != nil || u.Host == "" {
		t.Fatalf("client URL %q: %v", clientURL, perr)
	}
	if conn, derr := net.DialTimeout("tcp", u.Host, 5*time.Second); derr == nil {
		conn.Close()
		t.Errorf("the node's NATS server still listens on %s after Run returned: the node was not closed", u.Host)
	}
}

// The node's telemetry resource names the binary's version: target_info
// on /metrics has service_version.
func TestNodeServiceVersion(t *testing.T) {
	_, addr := startNode(t)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := `service_version="` + version() + `"`
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "target_info{") {
			if !strings.Contains(line, want) {
				t.Errorf("target_info has no %s: %s", want, line)
			}
			return
		}
	}
	t.Errorf("no target_info on /metrics:\n%s", body)
}

// pub and sub take the prefixes a node's --prefix takes; empty is the
// default.
func TestValidatePrefix(t *testing.T) {
	for _, p := range []string{"signals", "my-app.v2", "a_b.c", ""} {
		if err := validatePrefix(p); err != nil {
			t.Errorf("validatePrefix(%q): %v", p, err)
		}
	}
	for _, p := range []string{"a*", "a.**", "a..b", "a b", ".a", "a.", ">"} {
		if err := validatePrefix(p); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("--prefix %q", p)) {
			t.Errorf("validatePrefix(%q) = %v, want an error naming --prefix", p, err)
		}
	}
}
