package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signalbus/signalbus/cluster"
)

var (
	verdictOKRE   = regexp.MustCompile(`(?m)^verdict: OK \(lost 0, duplicated 0, reordered 0\)$`)
	metricsURLRE  = regexp.MustCompile(`(?m)^  (n\d)  nats \S+  metrics (http://127\.0\.0\.1:\d+)/metrics`)
	clusterLiveRE = regexp.MustCompile(`(?m)^t=\S+\s+rate=\d+/s p99=\S+\s+up=\d,\d,\d partitioned=(\S+) outbox=[\d?]+,[\d?]+,[\d?]+ dedup=\d+ held=\d+ acked=\d+ delivered=\d+$`)
	publishedRE   = regexp.MustCompile(`(?m)^  published\s+(\d+)  n1=(\d+) n2=(\d+) n3=(\d+)$`)
	ackedRE       = regexp.MustCompile(`(?m)^  acked\s+(\d+)  by the stream \d+ \(n1=\d+ n2=\d+ n3=\d+\), by the outbox \d+ \(n1=\d+ n2=\d+ n3=(\d+)\)`)
	deliveredRE   = regexp.MustCompile(`(?m)^  delivered\s+n1=(\d+) n2=(\d+) n3=(\d+) `)
)

func demoAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestClusterDemo runs a short cluster demo in-process: three nodes, n3
// isolated for a few seconds, then healed. The verdict must find nothing
// lost, duplicated or reordered; n3 must have seen itself partitioned and
// its outbox taken what it published meanwhile; each node's /metrics must
// answer while the demo runs.
func TestClusterDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node JetStream cluster through an isolation takes about 20 s")
	}
	var out lockedBuffer
	var stderr bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &stderr}
	done := make(chan error, 1)
	go func() {
		done <- m.Run(t.Context(), []string{"demo", "-duration", "7s", "-rate", "60", "-isolate-at", "1s", "-isolate-for", "4s",
			"-drain-timeout", "30s"})
	}()

	// While it runs: every node's /metrics and /readyz answer.
	scraped := map[string]bool{}
	deadline := time.Now().Add(90 * time.Second)
	var err error
	for running := true; running; {
		select {
		case err = <-done:
			running = false
		case <-time.After(100 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatalf("the demo has not ended after 90 s:\n%s", out.String())
			}
			for _, u := range metricsURLRE.FindAllStringSubmatch(out.String(), -1) {
				if !scraped[u[1]] {
					scraped[u[1]] = demoScrape(t, u[2]+"/metrics", "signalbus_outbox_depth") && demoScrape(t, u[2]+"/readyz", `"checks"`)
				}
			}
		}
	}
	stdout := out.String()
	if err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr.String())
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if !scraped[n] {
			t.Errorf("%s's /metrics (with signalbus_outbox_depth) and /readyz were not scraped while the demo ran", n)
		}
	}
	if !verdictOKRE.MatchString(stdout) {
		t.Errorf("no OK verdict with lost 0, duplicated 0, reordered 0:\n%s", stdout)
	}
	if !strings.Contains(stdout, "n3 reported partitioned at t=") {
		t.Errorf("the isolation was not seen as a partition:\n%s", stdout)
	}
	var sawPartitioned bool
	for _, l := range clusterLiveRE.FindAllStringSubmatch(stdout, -1) {
		sawPartitioned = sawPartitioned || l[1] == "n3"
	}
	if !sawPartitioned {
		t.Errorf("no live line shows partitioned=n3:\n%s", stdout)
	}

	pub := publishedRE.FindStringSubmatch(stdout)
	acked := ackedRE.FindStringSubmatch(stdout)
	delivered := deliveredRE.FindStringSubmatch(stdout)
	if pub == nil || acked == nil || delivered == nil {
		t.Fatalf("verdict lines missing (published %v, acked %v, delivered %v):\n%s", pub, acked, delivered, stdout)
	}
	total := demoAtoi(t, pub[1])
	// About 60/s for 7 s, give or take the pacing; every node its share.
	if total < 300 || total > 480 {
		t.Errorf("published %d, want about 420", total)
	}
	for i := 2; i <= 4; i++ {
		if n := demoAtoi(t, pub[i]); n < total/4 {
			t.Errorf("node n%d published %d of %d", i-1, n, total)
		}
	}
	if a := demoAtoi(t, acked[1]); a != total {
		t.Errorf("acked %d of %d published: a publish failed", a, total)
	}
	if demoAtoi(t, acked[2]) == 0 {
		t.Errorf("n3's outbox took nothing while it was isolated:\n%s", stdout)
	}
	for i := 1; i <= 3; i++ {
		if d := demoAtoi(t, delivered[i]); d != total {
			t.Errorf("n%d was delivered %d of %d", i, d, total)
		}
	}
}

// demoScrape reports whether url answers with a body containing want.
func demoScrape(t *testing.T, url, want string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(body), want)
}

func TestClusterDemoFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"rate", []string{"-rate", "0"}, "-rate 0 is outside"},
		{"duration", []string{"-duration", "0s"}, "-duration 0s is not positive"},
		{"isolate-at", []string{"-isolate-at", "-1s"}, "-isolate-at -1s is negative"},
		{"isolate-for", []string{"-isolate-for", "-1s"}, "-isolate-for -1s is negative"},
		{"heal after the end", []string{"-duration", "5s", "-isolate-at", "3s", "-isolate-for", "3s"}, "ends after --duration 5s"},
		{"drain timeout", []string{"-drain-timeout", "0s"}, "-drain-timeout 0s is not positive"},
		{"http base port", []string{"-http-base-port", "65534"}, "-http-base-port 65534 is outside 0…65532"},
		{"local flag of the other demo", []string{"-quiet"}, "flag provided but not defined: -quiet"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := run(t, t.Context(), append([]string{"demo"}, tc.args...)...)
			var report bytes.Buffer
			if code := exitCode(err, &report); code != 2 {
				t.Fatalf("exit code %d (err %v), want 2", code, err)
			}
			if msg := stderr + report.String(); !strings.Contains(msg, tc.want) {
				t.Errorf("stderr does not contain %q:\n%s", tc.want, msg)
			}
		})
	}
}

func TestIsLocalDemo(t *testing.T) {
	cases := []struct {
		args []string
		env  string // SIGNALBUS_LOCAL, unset when empty
		want bool
	}{
		{nil, "", false},
		{[]string{"-rate", "5"}, "", false},
		{[]string{"--local"}, "", true},
		{[]string{"-local"}, "", true},
		{[]string{"-rate", "5", "--local"}, "", true},
		{[]string{"--local=true"}, "", true},
		{[]string{"--local=false"}, "", false},
		{[]string{"-local=0"}, "", false},
		{[]string{"--", "--local"}, "", false},
		{[]string{"local"}, "", false},
		{[]string{"--localx"}, "", false},
		{nil, "true", true},
		{nil, "false", false},
		{nil, "maybe", false},
		{[]string{"--local=false"}, "true", false},
		{[]string{"--local"}, "false", true},
	}
	for _, tc := range cases {
		env := map[string]string{}
		if tc.env != "" {
			env["SIGNALBUS_LOCAL"] = tc.env
		}
		if got := isLocalDemo(tc.args, envOf(env)); got != tc.want {
			t.Errorf("isLocalDemo(%q) with SIGNALBUS_LOCAL=%q = %v, want %v", tc.args, tc.env, got, tc.want)
		}
	}
}

// Both demos read their flags from SIGNALBUS_* variables too, as every
// command does, and their help lists the variables.
func TestDemoFlagsEnv(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		want     string // in stderr
	}{
		{"help lists the variables", []string{"demo", "--help"}, nil, 0, "SIGNALBUS_ISOLATE_AT"},
		{"local help lists the variables", []string{"demo", "--local", "--help"}, nil, 0, "SIGNALBUS_QUIET"},
		{"a variable sets a flag", []string{"demo"}, map[string]string{"SIGNALBUS_RATE": "0"}, 2, "demo: --rate 0 is outside 1…100000\n"},
		{"a bad variable", []string{"demo"}, map[string]string{"SIGNALBUS_DURATION": "soon"}, 2,
			`SIGNALBUS_DURATION="soon": invalid value for --duration`},
		{"a variable picks the local demo", []string{"demo"}, map[string]string{"SIGNALBUS_LOCAL": "true", "SIGNALBUS_RATE": "0"}, 2,
			"demo: --rate 0 is outside 1…1000000\n"},
		{"the flag wins over SIGNALBUS_LOCAL", []string{"demo", "--local=false"}, map[string]string{"SIGNALBUS_LOCAL": "true", "SIGNALBUS_RATE": "0"}, 2,
			"demo: --rate 0 is outside 1…100000\n"},
		{"SIGNALBUS_LOCAL not a bool", []string{"demo"}, map[string]string{"SIGNALBUS_LOCAL": "maybe"}, 2, `SIGNALBUS_LOCAL="maybe"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			m := &Main{Stdout: &out, Stderr: &errOut, LookupEnv: envOf(tc.env)}
			err := m.Run(t.Context(), tc.args)
			var report bytes.Buffer
			if code := exitCode(err, &report); code != tc.wantCode {
				t.Fatalf("exit code %d (err %v), want %d\n%s", code, err, tc.wantCode, errOut.String())
			}
			if msg := errOut.String() + report.String(); !strings.Contains(msg, tc.want) {
				t.Errorf("stderr does not contain %q:\n%s", tc.want, msg)
			}
		})
	}
}

// An interrupt while the cluster forms ends the demo as an interrupt
// (exit 130), not as a cluster that failed to form, though the ctx of a
// signal carries a cause of its own.
func TestClusterDemoInterruptedWhileForming(t *testing.T) {
	n, err := cluster.Start(t.Context(), cluster.Config{Name: "n1", Listen: "127.0.0.1:0", Mode: cluster.Fast})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	// One node of three: never ready, so waitReady waits until ctx ends.
	d := &clusterDemo{nodes: []*demoNode{{name: "n1", node: n}}}
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(errors.New("interrupt signal received"))
	err = d.waitReady(ctx)
	var report bytes.Buffer
	if code := exitCode(fmt.Errorf("demo: %w", err), &report); code != 130 {
		t.Errorf("waitReady after an interrupt: %v, exit code %d, want 130", err, code)
	}
}
