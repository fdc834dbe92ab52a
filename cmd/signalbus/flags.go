package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"
)

// envPrefix starts the environment variable of every flag: --cluster-listen
// is also SIGNALBUS_CLUSTER_LISTEN.
const envPrefix = "SIGNALBUS_"

// envName returns the environment variable that stands for a flag: the
// flag's name upper-cased, '-' as '_', after envPrefix.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// LookupEnv is os.LookupEnv's shape: the commands read their flags'
// variables through one, so that tests give theirs without touching the
// process environment.
type LookupEnv func(key string) (string, bool)

// newFlagSet returns a ContinueOnError flag set writing to out whose usage
// is head, then every flag with its environment variable (printFlags).
func newFlagSet(name string, out io.Writer, head string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), strings.TrimRight(head, "\n")+"\n")
		printFlags(fs)
	}
	return fs
}

// printFlags writes fs's flags to its output, each as
//
//	--name type    SIGNALBUS_NAME
//	    usage (default value)
//
// The default is left out when it is the zero value.
func printFlags(fs *flag.FlagSet) {
	w := fs.Output()
	printed := false
	fs.VisitAll(func(f *flag.Flag) {
		if !printed {
			fmt.Fprintln(w, "\nFlags (each also read from its environment variable; a flag given wins):")
			printed = true
		}
		typ, usage := flag.UnquoteUsage(f)
		head := "--" + f.Name
		if typ != "" {
			head += " " + typ
		}
		fmt.Fprintf(w, "  %-32s %s\n", head, envName(f.Name))
		line := "      " + strings.ReplaceAll(usage, "\n", "\n      ")
		if !isZeroDefault(f) {
			line += fmt.Sprintf(" (default %s)", quoteDefault(f))
		}
		fmt.Fprintln(w, line)
	})
}

// isZeroDefault reports whether f's default is its type's zero value.
func isZeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "false", "0s":
		return true
	}
	return false
}

func quoteDefault(f *flag.Flag) string {
	if _, ok := f.Value.(interface{ IsBoolFlag() bool }); ok {
		return f.DefValue
	}
	if strings.ContainsAny(f.DefValue, " \t") || f.DefValue == "" {
		return fmt.Sprintf("%q", f.DefValue)
	}
	return f.DefValue
}

// parseArgs parses args with fs, flags and positional arguments in any
// order ("--" ends the flags), then sets every flag the command line did
// not give from its environment variable, when lookup finds one: a flag
// given on the command line wins over its variable. It returns the
// positional arguments. The error is flag.ErrHelp for -h and --help, once
// the usage is printed; any other is a *UsageError of one line, naming the
// flag or the variable and its value.
func parseArgs(fs *flag.FlagSet, args []string, lookup LookupEnv) ([]string, error) {
	out, usage := fs.Output(), fs.Usage
	// The flag package prints the whole usage after an error; we say what
	// is wrong in one line instead, and print the usage for -h alone.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defer func() { fs.SetOutput(out); fs.Usage = usage }()

	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(out)
				usage()
				return nil, err
			}
			return nil, usageErrorf("%s: %w (see 'signalbus help %s')", fs.Name(), err, fs.Name())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional, args = append(positional, rest[0]), rest[1:]
	}

	if lookup == nil {
		lookup = os.LookupEnv
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		name := envName(f.Name)
		v, ok := lookup(name)
		if !ok {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = usageErrorf("%s: environment variable %s=%q: invalid value for --%s: %w", fs.Name(), name, v, f.Name, serr)
		}
	})
	return positional, err
}

// isSet reports whether the flag was given, on the command line or by its
// environment variable.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// choice is a flag whose value is one of a fixed set of words.
type choice struct {
	value   string
	allowed []string
}

func newChoice(def string, allowed ...string) *choice { return &choice{value: def, allowed: allowed} }

func (c *choice) String() string {
	if c == nil {
		return ""
	}
	return c.value
}

func (c *choice) Set(s string) error {
	if !slices.Contains(c.allowed, s) {
		return fmt.Errorf("must be %s", orList(c.allowed))
	}
	c.value = s
	return nil
}

// orList writes words as "a, b or c".
func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// listValue is a comma-separated list flag; each use replaces the list.
type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }

func (l *listValue) Set(s string) error {
	*l = nil
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l = append(*l, item)
		}
	}
	return nil
}

// positiveDuration is a duration flag that must be above zero.
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }

func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (e.g. 500ms, 10s, 1m)")
	}
	if v <= 0 {
		return errors.New("must be above zero")
	}
	*d = positiveDuration(v)
	return nil
}

// logFlags are --log-format and --log-level, which every long-running
// command has.
type logFlags struct {
	format *choice
	level  *choice
}

func (l *logFlags) register(fs *flag.FlagSet) {
	l.format = newChoice("text", "text", "json")
	l.level = newChoice("info", "debug", "info", "warn", "error")
	fs.Var(l.format, "log-format", "log format: text or json")
	fs.Var(l.level, "log-level", "least level logged: debug, info, warn or error")
}

// logger returns the slog logger the flags describe, writing to w.
func (l *logFlags) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.level.value)) // the choice allows only valid names
	opts := &slog.HandlerOptions{Level: level}
	if l.format.value == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
