package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/client"
)

const subUsage = `usage: signalbus sub [flags] PATTERN

Prints the signals whose type matches PATTERN, one structured CloudEvent
JSON object per line, each line written as soon as the signal arrives. It
is a plain NATS client, not a member of the cluster. PATTERN is a bus
pattern: order.created, order.* (one segment), order.** (any number,
order itself included), audit.**.failed. It is mapped to NATS subject
filters under --prefix; what NATS cannot express ("**" before the end) is
filtered here.

Without --since or --all it subscribes over core NATS and prints what is
published from then on, in either cluster mode (at most once: a
subscriber too slow for the rate loses signals, and a warning says so).
--group makes it one member of a NATS queue group: each signal goes to
one of the sub processes of the group. --since and --all replay from the
durable stream instead (a durable cluster only), with an ordered consumer
the server forgets when sub exits, then go on with new signals; a replay
whose stream goes away ends sub with an error.

The ordering stamps a node adds (sbnode, sbinst, sbseq, sbfloor) are left
out unless --stamps is given. sub exits with 0 after --count signals or on
SIGINT.`

// SubCommand prints the signals matching a pattern.
type SubCommand struct {
	Stdout    io.Writer
	Stderr    io.Writer
	LookupEnv LookupEnv
	// subscribed, when set, is called once the subscription is in place
	// (the server has registered it, or the replay consumer exists): the
	// signals published from then on reach it. Tests wait on it.
	subscribed func()
}

// subConfig is what sub's flags say.
type subConfig struct {
	client  clientFlags
	group   string
	since   string
	all     bool
	count   int
	stamps  bool
	pattern string
}

// Run parses the flags, subscribes and prints; see subUsage.
func (c *SubCommand) Run(ctx context.Context, args []string) error {
	var cfg subConfig
	fs := cfg.client.flagSet("sub", c.Stderr, subUsage)
	fs.StringVar(&cfg.group, "group", "", "NATS queue `group`: each signal goes to one sub of the group")
	fs.StringVar(&cfg.since, "since", "", "replay the stream from a `time` (RFC 3339, or a duration ago: 10m)")
	fs.BoolVar(&cfg.all, "all", false, "replay the whole stream first")
	fs.IntVar(&cfg.count, "count", 0, "exit after this many signals; 0: run until interrupted")
	fs.BoolVar(&cfg.stamps, "stamps", false, "keep the ordering stamps (sbnode, sbinst, sbseq, sbfloor) in the output")
	positional, err := parseArgs(fs, args, c.LookupEnv)
	if err != nil {
		return err
	}
	switch len(positional) {
	case 0:
		return usageErrorf("sub: no PATTERN given (e.g. 'signalbus sub order.*'; see 'signalbus help sub')")
	case 1:
		cfg.pattern = positional[0]
	default:
		return usageErrorf("sub: unexpected argument %q after the pattern %q", positional[1], positional[0])
	}
	start, err := cfg.validate(fs.Name(), time.Now())
	if err != nil {
		return err
	}
	filters, exact, err := client.SubjectFilters(cfg.client.prefix, cfg.pattern)
	if err != nil {
		return usageErrorf("sub: %w", err)
	}
	var match bus.Pattern
	if !exact {
		if match, err = bus.ParsePattern(cfg.pattern); err != nil {
			return usageErrorf("sub: %w", err)
		}
	}
	nc, logger, err := cfg.client.dial(ctx, fs.Name(), c.Stderr)
	if err != nil {
		return err
	}
	defer nc.Close()

	msgs := make(chan *nats.Msg, 4096)
	var (
		stop   func()
		failed <-chan error // nil for core NATS, whose subscriptions live as long as the connection
	)
	if cfg.all || cfg.since != "" {
		stop, failed, err = replay(ctx, nc, client.StreamName(cfg.client.prefix), filters, start, msgs)
	} else {
		stop, err = subscribe(ctx, nc, filters, cfg.group, msgs)
	}
	if err != nil {
		return fmt.Errorf("sub: %w", err)
	}
	defer stop()
	logger.Info("subscribed", "pattern", cfg.pattern, "subjects", strings.Join(filters, " "), "group", cfg.group,
		"replay", cfg.all || cfg.since != "")
	if c.subscribed != nil {
		c.subscribed()
	}

	p := &subPrinter{w: c.Stdout, match: match, exact: exact, stamps: cfg.stamps, count: cfg.count, logger: logger}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			if done, err := p.print(m); done || err != nil {
				return err
			}
		case ferr := <-failed:
			// What the replay handed over before it failed is printed first.
			for {
				select {
				case m := <-msgs:
					if done, err := p.print(m); done || err != nil {
						return err
					}
				default:
					return fmt.Errorf("sub: %w", ferr)
				}
			}
		}
	}
}

// subPrinter writes the signals of NATS messages that match, one JSON
// object per line, until count of them are written (count 0: no end).
type subPrinter struct {
	w       io.Writer
	match   bus.Pattern
	exact   bool // the subject filters select exactly the pattern: match is not needed
	stamps  bool
	count   int
	printed int
	logger  *slog.Logger
}

// print writes the signals of m; done is true once count are written.
func (p *subPrinter) print(m *nats.Msg) (done bool, err error) {
	signals, err := client.Decode(m)
	if err != nil {
		p.logger.Warn("not a signal; skipped", "subject", m.Subject, "error", err)
	}
	for _, s := range signals {
		if !p.exact && !p.match.Match(s.Type) {
			continue
		}
		if !p.stamps {
			s = client.WithoutStamps(s)
		}
		line, err := s.MarshalJSON()
		if err != nil {
			p.logger.Warn("cannot write the signal as JSON; skipped", "id", s.ID, "error", err)
			continue
		}
		if _, err := p.w.Write(append(line, '\n')); err != nil {
			return false, fmt.Errorf("sub: write: %w", err)
		}
		if p.printed++; p.count > 0 && p.printed == p.count {
			return true, nil
		}
	}
	return false, nil
}

// validate checks the flags and returns where a replay starts (the zero
// time for --all or no replay).
func (cfg *subConfig) validate(cmd string, now time.Time) (time.Time, error) {
	if err := cfg.client.validate(cmd); err != nil {
		return time.Time{}, err
	}
	if cfg.count < 0 {
		return time.Time{}, usageErrorf("%s: --count %d: must not be negative", cmd, cfg.count)
	}
	if cfg.all && cfg.since != "" {
		return time.Time{}, usageErrorf("%s: --all and --since exclude each other", cmd)
	}
	if cfg.group != "" && (cfg.all || cfg.since != "") {
		return time.Time{}, usageErrorf("%s: --group is for live signals over core NATS; it cannot replay (--all, --since)", cmd)
	}
	if cfg.group != "" && strings.ContainsAny(cfg.group, " \t\r\n*>.") {
		return time.Time{}, usageErrorf("%s: --group %q: a queue group name cannot hold spaces, '.', '*' or '>'", cmd, cfg.group)
	}
	if cfg.since == "" {
		return time.Time{}, nil
	}
	start, err := parseSince(cfg.since, now)
	if err != nil {
		return time.Time{}, usageErrorf("%s: --since %q: %w", cmd, cfg.since, err)
	}
	return start, nil
}

// parseSince reads an RFC 3339 time, or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, errors.New("neither an RFC 3339 time (2026-12-07T16:00:00Z) nor a duration ago (10m)")
	}
	if d < 0 {
		return time.Time{}, errors.New("a duration ago cannot be negative")
	}
	return now.Add(-d), nil
}

// subscribe subscribes to every filter over core NATS (in a queue group
// when group is set) into msgs, and returns once the server has
// registered the subscriptions.
func subscribe(ctx context.Context, nc *nats.Conn, filters []string, group string, msgs chan *nats.Msg) (stop func(), err error) {
	var subs []*nats.Subscription
	stop = func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
	for _, f := range filters {
		var s *nats.Subscription
		if group != "" {
			s, err = nc.ChanQueueSubscribe(f, group, msgs)
		} else {
			s, err = nc.ChanSubscribe(f, msgs)
		}
		if err != nil {
			stop()
			return nil, fmt.Errorf("subscribe to %s: %w", f, err)
		}
		subs = append(subs, s)
	}
	flushCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := nc.FlushWithContext(flushCtx); err != nil {
		stop()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return stop, nil
}

// replayResetAttempts bounds how often in a row the replay's ordered
// consumer is recreated after it broke (a node restarted, the stream's
// leader moved; backing off 1 s, 2 s, 4 s): a stream that is gone ends the
// replay with an error instead of a sub that waits for nothing.
const replayResetAttempts = 4

// replay reads the stream from start (the zero time: from its first
// signal) with an ordered consumer, into msgs. stop ends the reading and
// waits for it. failed receives the error that ends the reading when
// stop did not: the stream went away, the consumer could not be made
// again.
func replay(ctx context.Context, nc *nats.Conn, stream string, filters []string, start time.Time, msgs chan *nats.Msg) (stop func(), failed <-chan error, err error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxResetAttempts: replayResetAttempts}
	if !start.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	setupCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(setupCtx, stream, cfg)
	if err != nil {
		return nil, nil, describeReplayError(stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, nil, fmt.Errorf("replay from stream %s: %w", stream, err)
	}
	done, quit := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(done)
		for {
			m, err := it.Next()
			if err != nil {
				select {
				case <-quit: // stopped
				default:
					errc <- fmt.Errorf("replay from stream %s stopped: %w", stream, err)
				}
				return
			}
			select {
			case msgs <- &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}:
			case <-quit:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			it.Stop()
			<-done
		})
	}, errc, nil
}

// describeReplayError says what an error setting up a replay most likely
// means.
func describeReplayError(stream string, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("replay: stream %s not found: --all and --since need a durable cluster with this --prefix", stream)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("replay: %w: --all and --since need a durable cluster (JetStream)", err)
	}
	return fmt.Errorf("replay from stream %s: %w", stream, err)
}
