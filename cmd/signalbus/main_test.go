package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { removeBinary() }))
}

// run runs the program in-process with args and returns its output.
func run(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errOut}
	err = m.Run(ctx, args)
	return out.String(), errOut.String(), err
}

func TestMainRun(t *testing.T) {
	cases := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // substring
		wantStderr string // substring, of the usage or of what exitCode reports
	}{
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2,
			wantStderr: `unknown command "frobnicate"`},
		{name: "flag before command", args: []string{"-v"}, wantCode: 2, wantStderr: `unknown flag "-v"`},
		{name: "no command", args: nil, wantCode: 2, wantStderr: "The commands are:"},
		{name: "help", args: []string{"help"}, wantCode: 0, wantStdout: "The commands are:"},
		{name: "-h", args: []string{"-h"}, wantCode: 0, wantStdout: "demo"},
		{name: "help demo", args: []string{"help", "demo"}, wantCode: 0, wantStderr: "-rate"},
		{name: "demo -h", args: []string{"demo", "-h"}, wantCode: 0, wantStderr: "usage: signalbus demo"},
		{name: "demo bad flag", args: []string{"demo", "-bogus"}, wantCode: 2,
			wantStderr: "flag provided but not defined: -bogus"},
		{name: "demo bad rate", args: []string{"demo", "-rate", "0"}, wantCode: 2, wantStderr: "-rate 0"},
		{name: "demo bad duration", args: []string{"demo", "-duration", "-1s"}, wantCode: 2,
			wantStderr: "-duration -1s is not positive"},
		{name: "demo stray argument", args: []string{"demo", "now"}, wantCode: 2,
			wantStderr: `demo: unexpected argument "now"`},
		{name: "version stray argument", args: []string{"version", "-x"}, wantCode: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := run(t, t.Context(), tc.args...)
			var report bytes.Buffer
			if code := exitCode(err, &report); code != tc.wantCode {
				t.Fatalf("exit code %d (err %v), want %d", code, err, tc.wantCode)
			}
			stderr += report.String()
			if !strings.Contains(stdout, tc.wantStdout) {
				t.Errorf("stdout does not contain %q:\n%s", tc.wantStdout, stdout)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.wantStderr, stderr)
			}
			if tc.wantCode == 2 && strings.Count(stderr, "flag provided but not defined") > 1 {
				t.Errorf("flag error reported twice:\n%s", stderr)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	cases := []struct {
		err        error
		wantCode   int
		wantReport string
	}{
		{nil, 0, ""},
		{flag.ErrHelp, 0, ""},
		{usageErrorf("unknown command %q", "x"), 2, `signalbus: unknown command "x"` + "\n"},
		{&UsageError{Err: errors.New("already said"), reported: true}, 2, ""},
		{fmt.Errorf("publish: %w", context.Canceled), 130, "signalbus: interrupted\n"},
		{errors.New("boom"), 1, "signalbus: boom\n"},
	}
	for _, tc := range cases {
		var report bytes.Buffer
		if code := exitCode(tc.err, &report); code != tc.wantCode || report.String() != tc.wantReport {
			t.Errorf("exitCode(%v) = %d, %q; want %d, %q", tc.err, code, report.String(), tc.wantCode, tc.wantReport)
		}
	}
}

// The first signal cancels; the second, even one sent before the first
// was taken, exits with 130.
func TestOnSignals(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	sigs <- os.Interrupt
	sigs <- syscall.SIGTERM
	ctx, cancel := context.WithCancelCause(t.Context())
	var stderr bytes.Buffer
	exited := make(chan int, 1)
	onSignals(sigs, cancel, &stderr, func(code int) { exited <- code })
	if code := <-exited; code != 130 {
		t.Errorf("exit code %d, want 130", code)
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("ctx not canceled by the first signal: %v", ctx.Err())
	}
	if want := "signalbus: second signal (terminated): exiting without finishing the shutdown\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}
