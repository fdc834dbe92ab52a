package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/nats-io/nats-server/v2/server"
)

// VersionCommand prints the version of the binary and of what it embeds.
type VersionCommand struct {
	Stdout io.Writer
	Stderr io.Writer
}

// Run prints
//
//	signalbus <version>
//	commit      <vcs revision>[ (modified)]
//	go          <go version> <os>/<arch>
//	nats-server <version of the embedded server>
//
// It takes no arguments.
func (c *VersionCommand) Run(_ context.Context, args []string) error {
	fs := newFlagSet("version", c.Stderr, "usage: signalbus version\n\nPrints the module version of the binary (devel for a build from a working\ntree), the commit it was built from, the Go version and the version of the\nembedded nats-server.")
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	b := readBuild()
	fmt.Fprintf(c.Stdout, "signalbus %s\ncommit      %s\ngo          %s %s/%s\nnats-server %s\n",
		b.version, b.commit, runtime.Version(), runtime.GOOS, runtime.GOARCH, server.VERSION)
	return nil
}

// buildInfo is what the binary knows of its build.
type buildInfo struct {
	version string // a tag or pseudo-version for "go install …@version", "devel" for a build from a working tree
	commit  string // the VCS revision, "+ (modified)" for a dirty tree; "unknown" when the build recorded none
}

func readBuild() buildInfo {
	b := buildInfo{version: "devel", commit: "unknown"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		b.version = v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = " (modified)"
			}
		}
	}
	if rev != "" {
		b.commit = rev + dirty
	}
	return b
}

// version returns the main module's version, as the telemetry resource
// and the logs name it: the module version, and for a devel build the
// first 12 characters of its revision ("+dirty" for a modified tree).
func version() string {
	b := readBuild()
	if b.version != "devel" || b.commit == "unknown" {
		return b.version
	}
	rev, dirty := b.commit, ""
	if n := len(rev) - len(" (modified)"); n > 0 && rev[n:] == " (modified)" {
		rev, dirty = rev[:n], "+dirty"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return "devel " + rev + dirty
}
