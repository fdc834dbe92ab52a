package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/chaos"
	"github.com/signalbus/signalbus/cluster"
	"github.com/signalbus/signalbus/cluster/client"
	"github.com/signalbus/signalbus/loadtest"
)

// Backend is a started cluster whose nodes each run an agent.
type Backend interface {
	chaos.Cluster
	chaos.Recorder
	// WaitReady waits until every node that runs is up, ready and not
	// partitioned.
	WaitReady(ctx context.Context) error
	// Close stops every node and frees what the backend made.
	Close(ctx context.Context) error
}

// Spec is what a backend is asked to start for a scenario.
type Spec struct {
	Scenario Scenario
	// Agent is the template of every node's agent: the backend sets
	// Node and Record, and gives SlowHandler to the last node's alone.
	Agent AgentConfig
}

// Start starts a backend for spec.
type Start func(ctx context.Context, spec Spec) (Backend, error)

// Phases of a run.
type Phases struct {
	Quiet      time.Duration // load before the first fault
	Settle     time.Duration // load after the recovery, before it stops
	Drain      time.Duration // the longest wait, once the load stopped, for every delivery owed
	Ready      time.Duration // the longest wait for the cluster to form or re-form
	FaultLimit time.Duration // the longest a scenario's fault phase may take
}

// DefaultPhases are make e2e's.
var DefaultPhases = Phases{Quiet: 5 * time.Second, Settle: 5 * time.Second, Drain: 60 * time.Second, Ready: 120 * time.Second, FaultLimit: 90 * time.Second}

// Result is one scenario's run.
type Result struct {
	Scenario string           `json:"scenario"`
	Does     string           `json:"does"`
	Mode     string           `json:"mode"`
	Seed     uint64           `json:"seed"`
	Events   []chaos.Event    `json:"events"`
	Windows  []chaos.Window   `json:"windows"`
	Verdict  loadtest.Verdict `json:"verdict"`
	Took     time.Duration    `json:"took"`
	// Err is what stopped the run from reaching a verdict (a fault that
	// could not be injected, a cluster that never re-formed): the run
	// fails, whatever the verdict says.
	Err string `json:"error,omitempty"`
	// History is the merged record of every node, for the raw output.
	History *loadtest.History `json:"-"`
}

// OK reports whether the run reached a verdict and every invariant of
// its mode held.
func (r Result) OK() bool { return r.Err == "" && r.Verdict.Valid() }

// Options of a run.
type Options struct {
	Phases Phases
	Seed   uint64 // 0: from the clock
	Logger *slog.Logger
	Agent  AgentConfig // the agents' template (rate, timeout)
}

// Run runs s on a backend start starts: the cluster forms, every agent
// publishes through a quiet period, the faults, the recovery (what is
// still killed is restarted, paused resumed, and the network healed) and
// a settling period; then the load stops and the run waits until every
// delivery owed has come or Drain has passed, and checks the history.
// The error is for a run that could not start; a run that started and
// failed says so in Result.Err.
func Run(ctx context.Context, s Scenario, start Start, opts Options) (Result, error) {
	began := time.Now()
	ph := opts.Phases
	if ph == (Phases{}) {
		ph = DefaultPhases
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	res := Result{Scenario: s.Name, Does: s.Does, Mode: s.Mode.String(), Seed: seed}
	logger = logger.With("scenario", s.Name)
	logger.Info("start", "seed", seed)

	spec := Spec{Scenario: s, Agent: opts.Agent}
	if s.SlowConsumer > 0 {
		spec.Agent.SlowHandler = s.SlowConsumer
	}
	startCtx, cancel := context.WithTimeout(ctx, ph.Ready)
	b, err := start(startCtx, spec)
	cancel()
	if err != nil {
		return res, fmt.Errorf("scenario %s: start: %w", s.Name, err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		defer cancel()
		if err := b.Close(closeCtx); err != nil {
			logger.Warn("close", "error", err)
		}
	}()
	journal := chaos.NewJournal(b, logger)
	fail := func(err error) (Result, error) {
		res.Err = err.Error()
		res.Events, res.Windows, res.Took = journal.Events(), journal.Windows(), time.Since(began)
		logger.Error("run failed", "error", err)
		return res, nil
	}
	if err := waitReady(ctx, b, ph.Ready); err != nil {
		return fail(fmt.Errorf("the cluster did not form: %w", err))
	}
	// The load runs until the fault phase's limit; the order is sent
	// again after a restart, and the load is stopped earlier by a
	// second order's time only in its own record (see below).
	until := time.Now().Add(ph.Quiet + ph.FaultLimit + ph.Settle)
	arm := &armer{until: until, cluster: b}
	if err := arm.all(ctx); err != nil {
		return fail(err)
	}
	if err := Sleep(ctx, ph.Quiet); err != nil {
		return fail(err)
	}

	faults := &Faults{Cluster: &rearming{Journal: journal, arm: arm}, Rand: rand.New(rand.NewPCG(seed, seed>>1|1)), Prefix: client.DefaultPrefix} // the nodes run with the default prefix
	faultCtx, cancel := context.WithTimeout(ctx, ph.FaultLimit)
	faultErr := s.Faults(faultCtx, faults)
	cancel()
	recoverErr := recoverAll(ctx, journal, arm)
	if faultErr != nil {
		return fail(fmt.Errorf("fault phase: %w", faultErr))
	}
	if recoverErr != nil {
		return fail(fmt.Errorf("recovery: %w", recoverErr))
	}
	if err := waitReady(ctx, b, ph.Ready); err != nil {
		return fail(fmt.Errorf("the cluster did not re-form after the recovery: %w", err))
	}
	if err := Sleep(ctx, ph.Settle); err != nil {
		return fail(err)
	}
	// Stop the load: an order to stop now is an order whose time has
	// come. The agents already run theirs to `until`; stopping them
	// earlier keeps a run short.
	stop := &armer{until: time.Now(), cluster: b, stop: true}
	if err := stop.all(ctx); err != nil {
		return fail(err)
	}
	timeout := opts.Agent.Timeout
	if timeout == 0 {
		timeout = loadtest.DefaultPublishTimeout
	}
	if err := Sleep(ctx, timeout); err != nil { // the last publishes settle
		return fail(err)
	}
	h, err := drain(ctx, b, ph.Drain, logger)
	if err != nil {
		return fail(err)
	}
	for _, w := range journal.Windows() {
		if err := h.AddFault(loadtest.Fault{Name: w.Fault, Start: w.Start, End: w.End}); err != nil {
			return fail(fmt.Errorf("fault window %q: %w", w.Fault, err))
		}
	}
	var checkOpts []loadtest.CheckOption
	if s.Mode == cluster.Fast {
		checkOpts = append(checkOpts, loadtest.FastMode(FastGrace))
	}
	res.Verdict = h.Check(checkOpts...)
	res.History = h
	res.Events, res.Windows, res.Took = journal.Events(), journal.Windows(), time.Since(began)
	logger.Info("verdict", "ok", res.OK(), "verdict", res.Verdict.String())
	return res, nil
}

// FastGrace widens a fast-mode fault window on both sides: signals in
// flight when a link is cut, and the routes' reconnection after a heal,
// may lose what fast mode does not keep.
const FastGrace = 5 * time.Second

func waitReady(ctx context.Context, b Backend, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return b.WaitReady(ctx)
}

// recoverAll restarts what a fault left killed, resumes what it left
// paused, and heals the network.
func recoverAll(ctx context.Context, j *chaos.Journal, arm *armer) error {
	var errs []error
	killed, paused := j.Down()
	for _, n := range paused {
		errs = append(errs, j.Resume(ctx, n))
	}
	errs = append(errs, j.Heal(ctx))
	for _, n := range killed {
		if err := j.Restart(ctx, n); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, arm.one(ctx, n))
	}
	return errors.Join(errs...)
}

// drain reads the nodes' records until every delivery owed has come,
// none has come for DrainStall (what fast mode lost never comes), or
// limit has passed, and returns the last history read.
func drain(ctx context.Context, b Backend, limit time.Duration, logger *slog.Logger) (*loadtest.History, error) {
	deadline := time.Now().Add(limit)
	best, since := -1, time.Now()
	for {
		h, err := readAll(ctx, b)
		if err != nil {
			return nil, err
		}
		missing := h.Missing()
		if best < 0 || missing < best {
			best, since = missing, time.Now()
		}
		stalled := time.Since(since) >= DrainStall
		if missing == 0 || stalled || time.Now().After(deadline) {
			if missing > 0 {
				logger.Warn("drain ended with deliveries owed", "missing", missing, "stalled", stalled)
			}
			return h, nil
		}
		if err := Sleep(ctx, time.Second); err != nil {
			return nil, err
		}
	}
}

// DrainStall ends a drain in which no owed delivery came for this long.
const DrainStall = 15 * time.Second

// readAll merges every node's record.
func readAll(ctx context.Context, b Backend) (*loadtest.History, error) {
	var readers []io.Reader
	for _, n := range b.Nodes() {
		rc, err := b.Record(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("record of %s: %w", n, err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("record of %s: %w", n, err)
		}
		readers = append(readers, bytes.NewReader(data))
	}
	return loadtest.ReadHistory(readers...)
}

// armer sends the agents their order.
type armer struct {
	until   time.Time
	cluster chaos.Cluster
	stop    bool
}

func (a *armer) all(ctx context.Context) error {
	nodes := a.cluster.Nodes()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = a.one(ctx, n) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// one sends node's agent the order until it answers.
func (a *armer) one(ctx context.Context, node string) error {
	body, err := json.Marshal(Order{Until: a.until, Stop: a.stop})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		last = func() error {
			nc, err := nats.Connect(a.cluster.ClientURL(node), nats.Timeout(2*time.Second), nats.NoReconnect())
			if err != nil {
				return err
			}
			defer nc.Close()
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			reply, err := nc.RequestWithContext(rctx, ControlSubject(node), body)
			if err != nil {
				return err
			}
			if string(reply.Data) != "ok" {
				return fmt.Errorf("agent: %s", reply.Data)
			}
			return nil
		}()
		if last == nil {
			return nil
		}
		_ = Sleep(ctx, 200*time.Millisecond)
	}
	return fmt.Errorf("order to the agent on %s: %w (last: %v)", node, ctx.Err(), last)
}

// rearming is the journal the fault phase acts through: a node it
// restarts gets its agent's order again.
type rearming struct {
	*chaos.Journal
	arm *armer
}

func (r *rearming) Restart(ctx context.Context, node string) error {
	if err := r.Journal.Restart(ctx, node); err != nil {
		return err
	}
	return r.arm.one(ctx, node)
}
