package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// VersionCommand prints the version of the binary.
type VersionCommand struct {
	Stdout io.Writer
	Stderr io.Writer
}

// Run prints "signalbus <version> (<go version> <os>/<arch>)". It takes no
// arguments.
func (c *VersionCommand) Run(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: signalbus version\n\nPrints the module version of the binary, or devel for a build\nfrom a working tree.")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "signalbus %s (%s %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// version returns the main module's version from the build information:
// a tag or pseudo-version for "go install …@version", "devel" for a build
// from a working tree, with the VCS revision when the build recorded one.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if v == "devel" && rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " " + rev + dirty
	}
	return v
}
