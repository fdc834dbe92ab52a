package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster/client"
)

const pubUsage = `usage: signalbus pub [flags]

Publishes signals into a cluster as a plain NATS client (not a member: it
sends no heartbeats and does not count towards --expected-size), in the
wire format the nodes speak: CloudEvents binary mode on <prefix>.<type>.

With --type, it publishes --count signals of that type and source, each
with a new id and time, carrying --data. Without --type, it reads
structured CloudEvents, one JSON object per line, from stdin and publishes
each (a missing id or time is filled; the ordering stamps a node added,
sbnode, sbinst, sbseq and sbfloor, are dropped), so that

	signalbus sub order.created | jq -c '.type = "order.audited"' | signalbus pub --new-ids

works. In durable mode (the default) every publish waits for the stream's
acknowledgement, --window at a time; the stream drops an id it stored in
its duplicate window (counted as duplicate). In fast mode the signals go
over core NATS, unacknowledged. A summary goes to stdout:

	sent=10 acked=10 duplicate=0 failed=0 duration=3.2ms rate=3125/s

The exit code is 1 when a signal was not acknowledged.`

// PubCommand publishes signals as a NATS client.
type PubCommand struct {
	Stdin     io.Reader
	Stdout    io.Writer
	Stderr    io.Writer
	LookupEnv LookupEnv
}

// pubConfig is what pub's flags say.
type pubConfig struct {
	client      clientFlags
	typ         string
	source      string
	subject     string
	data        string
	contentType string
	count       int
	rate        float64
	mode        *choice
	window      int
	ackTimeout  positiveDuration
	newIDs      bool
}

// Run parses the flags, connects and publishes; see pubUsage.
func (c *PubCommand) Run(ctx context.Context, args []string) error {
	var cfg pubConfig
	fs := cfg.client.flagSet("pub", c.Stderr, pubUsage)
	cfg.mode = newChoice("durable", "durable", "fast")
	cfg.ackTimeout = positiveDuration(30 * time.Second)
	fs.StringVar(&cfg.typ, "type", "", "signal `type` (order.created); none: read CloudEvents JSON lines from stdin")
	fs.StringVar(&cfg.source, "source", "signalbus-pub", "signal `source` (a URI-reference)")
	fs.StringVar(&cfg.subject, "subject", "", "CloudEvents `subject` attribute of the signals (not the NATS subject: see --prefix)")
	fs.StringVar(&cfg.data, "data", "", "the signals' data: `JSON`, or @file to read it from a file")
	fs.StringVar(&cfg.contentType, "content-type", "", "datacontenttype of --data (default application/json; with another type the data is sent as it is)")
	fs.IntVar(&cfg.count, "count", 1, "how many signals to publish with --type")
	fs.Float64Var(&cfg.rate, "rate", 0, "signals per second at most; 0: as fast as the acknowledgements allow")
	fs.Var(cfg.mode, "mode", "durable (wait for the stream's ack) or fast (core NATS, no ack): the cluster's --mode")
	fs.IntVar(&cfg.window, "window", 256, "durable mode: publishes awaiting their ack at once")
	fs.Var(&cfg.ackTimeout, "ack-timeout", "durable mode: how long a publish waits for its ack")
	fs.BoolVar(&cfg.newIDs, "new-ids", false, "give every signal read from stdin a new id (the stream drops an id it already stored)")
	positional, err := parseArgs(fs, args, c.LookupEnv)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return usageErrorf("pub: unexpected argument %q (see 'signalbus help pub')", positional[0])
	}
	template, err := cfg.validate(fs.Name(), isSet(fs, "source"))
	if err != nil {
		return err
	}
	nc, logger, err := cfg.client.dial(ctx, fs.Name(), c.Stderr)
	if err != nil {
		return err
	}
	defer nc.Close()
	var s sender
	if cfg.mode.value == "durable" {
		if s, err = newDurableSender(nc, cfg.window, time.Duration(cfg.ackTimeout)); err != nil {
			return fmt.Errorf("pub: %w", err)
		}
	} else {
		s = &fastSender{nc: nc}
	}

	start := time.Now()
	var next func() (bus.Signal, bool, error)
	if cfg.typ != "" {
		next = cfg.generate(template)
	} else {
		next = cfg.readLines(c.Stdin)
	}
	pace := newPacer(cfg.rate, start)
	var sendErr error
	for {
		sig, ok, err := next()
		if err != nil || !ok {
			sendErr = err
			break
		}
		if err := pace.wait(ctx); err != nil {
			sendErr = err
			break
		}
		msg, err := client.Encode(sig, cfg.client.prefix)
		if err != nil {
			sendErr = fmt.Errorf("signal %s: %w", sig.ID, err)
			break
		}
		if err := s.send(ctx, msg); err != nil {
			sendErr = err
			break
		}
	}
	// Wait for what is on its way even when interrupted: the summary
	// should say what was stored.
	waitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(cfg.ackTimeout))
	waitErr := s.wait(waitCtx)
	cancel()
	st := s.stats()
	elapsed := time.Since(start)
	fmt.Fprintln(c.Stdout, st.summary(cfg.mode.value, elapsed))
	logger.Debug("published", "sent", st.sent, "acked", st.acked, "failed", st.failed, "duration", elapsed)

	switch {
	case sendErr != nil:
		return fmt.Errorf("pub: %w", sendErr)
	case waitErr != nil:
		return fmt.Errorf("pub: %w", waitErr)
	case st.failed > 0:
		return fmt.Errorf("pub: %d of %d signals not acknowledged; first error: %w", st.failed, st.sent, st.firstErr)
	}
	return nil
}

// validate checks the flags and returns the signal --type describes (its
// id and time are renewed for each one sent).
func (cfg *pubConfig) validate(cmd string, sourceSet bool) (bus.Signal, error) {
	if err := cfg.client.validate(cmd); err != nil {
		return bus.Signal{}, err
	}
	switch {
	case cfg.count < 1:
		return bus.Signal{}, usageErrorf("%s: --count %d: must be at least 1", cmd, cfg.count)
	case cfg.rate < 0:
		return bus.Signal{}, usageErrorf("%s: --rate %v: must not be negative", cmd, cfg.rate)
	case cfg.window < 1:
		return bus.Signal{}, usageErrorf("%s: --window %d: must be at least 1", cmd, cfg.window)
	}
	if cfg.typ == "" {
		for name, set := range map[string]bool{"data": cfg.data != "", "count": cfg.count != 1, "subject": cfg.subject != "",
			"content-type": cfg.contentType != "", "source": sourceSet} {
			if set {
				return bus.Signal{}, usageErrorf("%s: --%s needs --type (without --type, pub reads whole events from stdin)", cmd, name)
			}
		}
		return bus.Signal{}, nil
	}
	if cfg.newIDs {
		return bus.Signal{}, usageErrorf("%s: --new-ids is for events read from stdin; with --type every signal has a new id", cmd)
	}
	data, err := cfg.readData(cmd)
	if err != nil {
		return bus.Signal{}, err
	}
	var opts []bus.SignalOption
	if cfg.subject != "" {
		opts = append(opts, bus.WithSubject(cfg.subject))
	}
	if cfg.contentType != "" {
		opts = append(opts, bus.WithDataContentType(cfg.contentType))
	}
	sig, err := bus.NewSignal(cfg.typ, cfg.source, data, opts...)
	if err != nil {
		return bus.Signal{}, usageErrorf("%s: %w", cmd, err)
	}
	return sig, nil
}

// readData returns --data: JSON bytes checked to be JSON (as
// json.RawMessage, so the signal says application/json), or, with a
// --content-type that is not JSON, the bytes as they are.
func (cfg *pubConfig) readData(cmd string) (any, error) {
	if cfg.data == "" {
		return nil, nil
	}
	raw, what := []byte(cfg.data), "--data"
	if name, ok := strings.CutPrefix(cfg.data, "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, usageErrorf("%s: --data %s: %w", cmd, cfg.data, err)
		}
		raw, what = b, "--data "+cfg.data
	}
	if cfg.contentType != "" && !isJSONType(cfg.contentType) {
		return raw, nil
	}
	if err := checkJSON(raw); err != nil {
		return nil, usageErrorf("%s: %s is not valid JSON: %w (use --content-type for other data)", cmd, what, err)
	}
	return json.RawMessage(bytes.TrimSpace(raw)), nil
}

// isJSONType reports whether a media type is JSON (application/json,
// text/json, …+json).
func isJSONType(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// checkJSON reports where b stops being one JSON value.
func checkJSON(b []byte) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&v); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return fmt.Errorf("at offset %d: %w", syn.Offset, err)
		}
		if errors.Is(err, io.EOF) {
			return errors.New("it is empty")
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("at offset %d: more after the first value", dec.InputOffset())
	}
	return nil
}

// generate returns the --count signals of template, each with a new id
// and time.
func (cfg *pubConfig) generate(template bus.Signal) func() (bus.Signal, bool, error) {
	left := cfg.count
	return func() (bus.Signal, bool, error) {
		if left == 0 {
			return bus.Signal{}, false, nil
		}
		left--
		s := template
		s.ID, s.Time = bus.NewID(), time.Now()
		return s, true, nil
	}
}

// maxLine bounds one line of stdin: a signal's data is at most
// bus.DefaultMaxDataSize, which base64 makes 4/3 as long.
const maxLine = 2*bus.DefaultMaxDataSize + 64<<10

// readLines returns the events of r, one structured CloudEvent JSON per
// line; blank lines are skipped. A line that is not a valid event is an
// error naming its number.
func (cfg *pubConfig) readLines(r io.Reader) func() (bus.Signal, bool, error) {
	if r == nil {
		r = strings.NewReader("")
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	return func() (bus.Signal, bool, error) {
		for sc.Scan() {
			line++
			b := bytes.TrimSpace(sc.Bytes())
			if len(b) == 0 {
				continue
			}
			var s bus.Signal
			if err := s.UnmarshalJSON(b); err != nil {
				return bus.Signal{}, false, fmt.Errorf("stdin line %d: %w", line, err)
			}
			s = client.WithoutStamps(s)
			if s.ID == "" || cfg.newIDs {
				s.ID = bus.NewID()
			}
			if s.Time.IsZero() {
				s.Time = time.Now()
			}
			if err := s.Validate(); err != nil {
				return bus.Signal{}, false, fmt.Errorf("stdin line %d: %w", line, err)
			}
			return s, true, nil
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				return bus.Signal{}, false, fmt.Errorf("stdin line %d: longer than %d bytes", line+1, maxLine)
			}
			return bus.Signal{}, false, fmt.Errorf("stdin after line %d: %w", line, err)
		}
		return bus.Signal{}, false, nil
	}
}

// pacer spaces sends to a rate: send i is due at start + i/rate, so a late
// one is caught up on rather than shifting every later one.
type pacer struct {
	interval time.Duration
	start    time.Time
	n        int64
}

func newPacer(rate float64, start time.Time) *pacer {
	if rate <= 0 {
		return &pacer{}
	}
	return &pacer{interval: time.Duration(float64(time.Second) / rate), start: start}
}

func (p *pacer) wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.interval == 0 {
		return nil
	}
	due := p.start.Add(time.Duration(p.n) * p.interval)
	p.n++
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sender sends encoded signals: send may block while a window is full;
// wait returns once every send is settled (acknowledged or failed).
type sender interface {
	send(ctx context.Context, msg *nats.Msg) error
	wait(ctx context.Context) error
	stats() pubStats
}

// pubStats counts what pub sent and what came of it.
type pubStats struct {
	sent, acked, duplicate, failed int
	firstErr                       error
}

func (s pubStats) summary(mode string, elapsed time.Duration) string {
	rate := 0.0
	if elapsed > 0 {
		rate = float64(s.sent) / elapsed.Seconds()
	}
	d := elapsed.Round(time.Microsecond * 100)
	if mode == "fast" {
		return fmt.Sprintf("sent=%d failed=%d duration=%s rate=%.0f/s (fast mode: not acknowledged)", s.sent, s.failed, d, rate)
	}
	return fmt.Sprintf("sent=%d acked=%d duplicate=%d failed=%d duration=%s rate=%.0f/s", s.sent, s.acked, s.duplicate, s.failed, d, rate)
}

// durableSender publishes to the stream asynchronously, at most window
// publishes awaiting their ack.
type durableSender struct {
	js    jetstream.JetStream
	slots chan struct{} // one per publish awaiting its ack
	mu    sync.Mutex
	st    pubStats
}

func newDurableSender(nc *nats.Conn, window int, ackTimeout time.Duration) (*durableSender, error) {
	d := &durableSender{slots: make(chan struct{}, window)}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(window),
		jetstream.WithPublishAsyncTimeout(ackTimeout),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, _ *nats.Msg, ack *jetstream.PubAck) {
			d.settle(ack, nil)
		}),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			d.settle(nil, err)
		}))
	if err != nil {
		return nil, err
	}
	d.js = js
	return d, nil
}

func (d *durableSender) settle(ack *jetstream.PubAck, err error) {
	d.mu.Lock()
	switch {
	case err != nil:
		d.st.failed++
		if d.st.firstErr == nil {
			d.st.firstErr = describePublishError(err)
		}
	default:
		d.st.acked++
		if ack.Duplicate {
			d.st.duplicate++
		}
	}
	d.mu.Unlock()
	<-d.slots
}

// describePublishError adds what a missing stream most likely means.
func describePublishError(err error) error {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w (no stream stores this subject: is the cluster in durable mode, with this --prefix? for a fast cluster use --mode fast)", err)
	}
	return err
}

func (d *durableSender) send(ctx context.Context, msg *nats.Msg) error {
	select {
	case d.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.mu.Lock()
	d.st.sent++
	d.mu.Unlock()
	if _, err := d.js.PublishMsgAsync(msg); err != nil {
		d.settle(nil, err)
	}
	return nil
}

// wait fills every slot: once it holds them all, every publish is settled.
func (d *durableSender) wait(ctx context.Context) error {
	for range cap(d.slots) {
		select {
		case d.slots <- struct{}{}:
		case <-ctx.Done():
			d.mu.Lock()
			pending := d.st.sent - d.st.acked - d.st.failed
			d.mu.Unlock()
			return fmt.Errorf("%d publishes still without an ack: %w", pending, ctx.Err())
		}
	}
	return nil
}

func (d *durableSender) stats() pubStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st
}

// fastSender publishes over core NATS; wait flushes.
type fastSender struct {
	nc *nats.Conn
	st pubStats
}

func (f *fastSender) send(_ context.Context, msg *nats.Msg) error {
	f.st.sent++
	if err := f.nc.PublishMsg(msg); err != nil {
		f.st.failed++
		if f.st.firstErr == nil {
			f.st.firstErr = err
		}
	}
	return nil
}

func (f *fastSender) wait(ctx context.Context) error {
	if err := f.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("flush to NATS: %w", err)
	}
	return nil
}

func (f *fastSender) stats() pubStats { return f.st }
