package scenario

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster"
	"github.com/signalbus/signalbus/loadtest"
)

// Defaults of an AgentConfig.
const (
	DefaultType    = "e2e.order"
	DefaultPattern = "e2e.**"
	DefaultRate    = 40 // signals per second per node
)

// ControlSubject is the core NATS subject an agent on node takes its
// orders on, over its own node's NATS server.
func ControlSubject(node string) string { return "signalbus.e2e.control." + node }

// Order is what the harness sends an agent: publish until Until, or,
// with Stop, stop publishing now.
type Order struct {
	Until time.Time `json:"until"`
	Stop  bool      `json:"stop,omitempty"`
}

// AgentConfig configures the agent that runs inside a node for a
// scenario: the service that embeds the bus, as a user's would. It
// subscribes a recording handler to Pattern at once, and publishes
// Type at Rate from the harness's order until the order's time.
type AgentConfig struct {
	Node        string        // the node's name
	Record      string        // the JSONL record file; appended to, so a restart adds to it
	Type        string        // default DefaultType
	Pattern     string        // default DefaultPattern
	Rate        float64       // per second; default DefaultRate
	Timeout     time.Duration // per publish; default loadtest.DefaultPublishTimeout
	SlowHandler time.Duration // how long the handler takes per signal
	Logger      *slog.Logger
}

// Agent is a running agent. Close stops it.
type Agent struct {
	cfg    AgentConfig
	node   *cluster.Node
	file   *os.File
	hist   *loadtest.History
	nc     *nats.Conn
	sub    *bus.Subscription
	cancel context.CancelFunc
	ctx    context.Context

	mu      sync.Mutex
	paused  bool
	resumed chan struct{}
	running sync.WaitGroup
	armed   bool
	stopped bool
	stopRun context.CancelFunc // ends the workload's run
}

// StartAgent starts an agent on n. Its publisher is named after the node
// and its incarnation (the number of times an agent opened this record
// file): n1, then n1-r2 after a restart, and so on, because a restarted
// process's counters start again.
func StartAgent(ctx context.Context, n *cluster.Node, cfg AgentConfig) (*Agent, error) {
	if cfg.Node == "" || cfg.Record == "" {
		return nil, errors.New("scenario: agent: Node and Record are required")
	}
	if cfg.Type == "" {
		cfg.Type = DefaultType
	}
	if cfg.Pattern == "" {
		cfg.Pattern = DefaultPattern
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	incarnation, err := countOpens(cfg.Record)
	if err != nil {
		return nil, fmt.Errorf("scenario: agent: %w", err)
	}
	incarnation++
	f, err := os.OpenFile(cfg.Record, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("scenario: agent: %w", err)
	}
	a := &Agent{cfg: cfg, node: n, file: f, resumed: make(chan struct{})}
	close(a.resumed)
	a.ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	a.hist = loadtest.NewHistory(loadtest.WithNode(cfg.Node), loadtest.WithRecord(f))
	rec, err := a.hist.SubscriberOn(cfg.Node, cfg.Node, cfg.Pattern)
	if err != nil {
		a.closeFile()
		return nil, fmt.Errorf("scenario: agent: %w", err)
	}
	var handler bus.Handler = rec
	if cfg.SlowHandler > 0 {
		handler = bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
			time.Sleep(cfg.SlowHandler)
			return rec.Handle(ctx, s)
		})
	}
	// A named subscription: its place in the stream outlives a restart,
	// so what this node was owed while down comes when it is back.
	if a.sub, err = n.Bus().Subscribe(cfg.Pattern, handler, bus.WithSubscriptionName("e2e"), bus.WithQueueSize(8192)); err != nil {
		a.closeFile()
		return nil, fmt.Errorf("scenario: agent: subscribe: %w", err)
	}
	publisher := cfg.Node
	if incarnation > 1 {
		publisher += "-r" + strconv.Itoa(incarnation)
	}
	wl, err := loadtest.NewWorkload(a.hist, loadtest.WorkloadConfig{
		Publisher: publisher, Node: cfg.Node, Type: cfg.Type, Source: "/e2e/" + cfg.Node,
		Rate: cfg.Rate, Duration: 24 * time.Hour, Timeout: cfg.Timeout,
	})
	if err != nil {
		a.closeAll()
		return nil, fmt.Errorf("scenario: agent: %w", err)
	}
	if a.nc, err = nats.Connect(n.ClientURL(), nats.Name("e2e-agent "+cfg.Node), nats.MaxReconnects(-1)); err != nil {
		a.closeAll()
		return nil, fmt.Errorf("scenario: agent: control connection: %w", err)
	}
	if _, err := a.nc.Subscribe(ControlSubject(cfg.Node), func(m *nats.Msg) { a.order(m, wl) }); err != nil {
		a.closeAll()
		return nil, fmt.Errorf("scenario: agent: control subscription: %w", err)
	}
	if err := a.nc.Flush(); err != nil {
		a.closeAll()
		return nil, fmt.Errorf("scenario: agent: control subscription: %w", err)
	}
	return a, nil
}

// order starts the workload on the first order, or stops it; a repeated
// order is answered and changes nothing (the harness repeats an order it
// heard no reply to).
func (a *Agent) order(m *nats.Msg, wl *loadtest.Workload) {
	var o Order
	if err := json.Unmarshal(m.Data, &o); err != nil || (o.Until.IsZero() && !o.Stop) {
		_ = m.Respond([]byte(`bad order: want {"until": RFC 3339 time} or {"stop": true}`))
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case o.Stop:
		a.stopped = true
		if a.stopRun != nil {
			a.stopRun()
		}
	case !a.armed && !a.stopped:
		a.armed = true
		ctx, cancel := context.WithDeadline(a.ctx, o.Until)
		a.stopRun = cancel
		a.running.Go(func() {
			defer cancel()
			_ = wl.Run(ctx, a.publish)
		})
	}
	_ = m.Respond([]byte("ok"))
}

// publish is the node's Publish, held while the agent is paused. Its
// context is not the workload's: stopping the load lets the last
// publish finish, as a service shutting down would; only a kill cuts it.
func (a *Agent) publish(_ context.Context, signals ...bus.Signal) error {
	pctx, cancel := context.WithTimeout(a.ctx, a.timeout())
	defer cancel()
	a.mu.Lock()
	resumed := a.resumed
	a.mu.Unlock()
	select {
	case <-resumed:
	case <-pctx.Done():
		return pctx.Err()
	}
	return a.node.Bus().Publish(pctx, signals...)
}

func (a *Agent) timeout() time.Duration {
	if a.cfg.Timeout > 0 {
		return a.cfg.Timeout
	}
	return loadtest.DefaultPublishTimeout
}

// Pause holds the agent's publishes, as a frozen process would.
func (a *Agent) Pause() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.paused {
		a.paused = true
		a.resumed = make(chan struct{})
	}
}

// Resume lets them go on.
func (a *Agent) Resume() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.paused {
		a.paused = false
		close(a.resumed)
	}
}

// Close stops the workload, lets its last publish finish, closes the
// subscription and the record. After a kill (ctx already done) it is a
// crash: the record is closed first, so no outcome that comes later is
// written (an op without one is an unknown outcome, as a killed
// process's is), and what is in flight is cut.
func (a *Agent) Close(ctx context.Context) error {
	killed := ctx.Err() != nil
	var errs []error
	if killed {
		a.mu.Lock()
		_ = a.file.Close()
		a.mu.Unlock()
	}
	a.mu.Lock()
	a.stopped = true
	if a.stopRun != nil {
		a.stopRun()
	}
	a.mu.Unlock()
	a.Resume()
	if killed {
		a.cancel()
	}
	a.running.Wait()
	a.cancel()
	if a.nc != nil {
		a.nc.Close()
	}
	if killed {
		return nil // the node's bus ends the subscription; the record's writes after the close fail, as they would
	}
	if err := a.sub.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := a.hist.RecordErr(); err != nil {
		errs = append(errs, fmt.Errorf("record: %w", err))
	}
	if err := a.file.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (a *Agent) closeFile() { _ = a.file.Close() }

func (a *Agent) closeAll() {
	if a.nc != nil {
		a.nc.Close()
	}
	if a.sub != nil {
		_ = a.sub.Close()
	}
	a.closeFile()
}

// countOpens counts the agents that opened the record file before.
func countOpens(path string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return CountOpens(f)
}

// CountOpens counts the "open" records in a record: how many recorders
// wrote to it.
func CountOpens(r io.Reader) (int, error) {
	n := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.Contains(line, []byte(`"op":"open"`)) {
			n++
		}
	}
	return n, sc.Err()
}
