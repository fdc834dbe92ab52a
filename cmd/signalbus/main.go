package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go onSignals(sigs, cancel, os.Stderr, os.Exit)
	err := NewMain().Run(ctx, os.Args[1:])
	signal.Stop(sigs)
	os.Exit(exitCode(err, os.Stderr))
}

// onSignals takes SIGINT and SIGTERM from sigs: the first cancels the
// commands' ctx, and they wind down gracefully; the second exits at once
// with code 130, for a process stuck in its shutdown. Both come on one
// channel, so a second signal right after the first is not lost.
func onSignals(sigs <-chan os.Signal, cancel context.CancelCauseFunc, stderr io.Writer, exit func(code int)) {
	s := <-sigs
	cancel(fmt.Errorf("%v signal received", s))
	s = <-sigs
	fmt.Fprintf(stderr, "signalbus: second signal (%v): exiting without finishing the shutdown\n", s)
	exit(130)
}

// exitCode reports err on stderr, unless it was reported already, and
// returns the process exit code for it: 0 for success and for help, 2 for a
// mistake in the command line (as the flag package does), 130 when the run
// was interrupted, 1 for any other failure.
func exitCode(err error, stderr io.Writer) int {
	var uerr *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &uerr):
		if !uerr.reported {
			fmt.Fprintf(stderr, "signalbus: %v\n", err)
		}
		return 2
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "signalbus: interrupted")
		return 130
	}
	fmt.Fprintf(stderr, "signalbus: %v\n", err)
	return 1
}

// UsageError is a mistake in the command line: an unknown command, a bad
// flag or flag value, a stray argument. main exits with code 2 for it.
type UsageError struct {
	Err error
	// reported: the flag package has printed the error and the usage.
	reported bool
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// usageErrorf returns a *UsageError with a formatted message.
func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// parseFlags parses args with fs, then the environment variables of the
// flags not given, read with lookup (see parseArgs), and accepts no
// positional arguments. The error is flag.ErrHelp for -h, otherwise a
// *UsageError.
func parseFlags(fs *flag.FlagSet, args []string, lookup LookupEnv) error {
	positional, err := parseArgs(fs, args, lookup)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return usageErrorf("%s: unexpected argument %q", fs.Name(), positional[0])
	}
	return nil
}

// Main is the program: it dispatches the first argument to a command.
type Main struct {
	Stdin  io.Reader // input of pub when it reads events
	Stdout io.Writer // command output
	Stderr io.Writer // usage, flag errors, logs
	// LookupEnv reads the flags' SIGNALBUS_* variables; nil is
	// os.LookupEnv.
	LookupEnv LookupEnv
}

// NewMain returns a Main on the process's stdin, stdout, stderr and
// environment.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, LookupEnv: os.LookupEnv}
}

// Run runs the command named by args[0] with the rest of args. An unknown
// command or a bad flag gives a *UsageError; -h gives flag.ErrHelp once the
// usage is printed.
func (m *Main) Run(ctx context.Context, args []string) error {
	var cmd string
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "demo":
		return (&DemoCommand{Stdout: m.Stdout, Stderr: m.Stderr, LookupEnv: m.LookupEnv}).Run(ctx, args)
	case "node":
		return (&NodeCommand{Stdout: m.Stdout, Stderr: m.Stderr, LookupEnv: m.LookupEnv}).Run(ctx, args)
	case "pub":
		return (&PubCommand{Stdin: m.Stdin, Stdout: m.Stdout, Stderr: m.Stderr, LookupEnv: m.LookupEnv}).Run(ctx, args)
	case "sub":
		return (&SubCommand{Stdout: m.Stdout, Stderr: m.Stderr, LookupEnv: m.LookupEnv}).Run(ctx, args)
	case "version":
		return (&VersionCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, args)
	case "help", "-h", "-help", "--help":
		if cmd == "help" && len(args) > 0 {
			// "signalbus help demo" is "signalbus demo -h".
			return m.Run(ctx, []string{args[0], "-h"})
		}
		m.Usage(m.Stdout)
		return nil
	case "":
		m.Usage(m.Stderr)
		return &UsageError{Err: errors.New("no command given"), reported: true}
	}
	if strings.HasPrefix(cmd, "-") {
		return usageErrorf("unknown flag %q before the command; run 'signalbus help'", cmd)
	}
	return usageErrorf("unknown command %q; run 'signalbus help' for the list", cmd)
}

// Usage prints the list of commands to w.
func (m *Main) Usage(w io.Writer) {
	fmt.Fprint(w, `signalbus is an event bus for Go services: CloudEvents signals,
path-pattern subscriptions, retries and dead letters, traced and measured
with OpenTelemetry.

Usage:

	signalbus <command> [arguments]

The commands are:

	node       run a cluster node: embedded NATS, the bus, /metrics and
	           health, until SIGINT or SIGTERM
	pub        publish signals into a cluster as a plain NATS client
	sub        print the signals matching a pattern, one JSON per line
	demo       run three nodes in this process through an isolation of
	           one of them, and give the verdict: lost, duplicated,
	           reordered (demo --local: the in-process bus alone)
	version    print the version of the binary and what it embeds

Every flag can also be set by an environment variable: SIGNALBUS_ and the
flag's name upper-cased, '-' as '_' (--cluster-listen is
SIGNALBUS_CLUSTER_LISTEN). A flag on the command line wins.

Use "signalbus help <command>" for more about a command.
`)
}
