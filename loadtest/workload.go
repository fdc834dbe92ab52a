package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// DefaultPublishTimeout bounds one publish of a Workload whose Timeout
// is zero.
const DefaultPublishTimeout = 5 * time.Second

// WorkloadConfig is what a Workload publishes and for how long. Count
// or Duration must be set: a workload is bounded.
type WorkloadConfig struct {
	// Publisher names the first identity of the process (History.Publisher):
	// "n1". A restarted node takes a new name, as its counter starts again.
	Publisher string
	// Node is the node the workload runs on; empty: the History's
	// (WithNode).
	Node string
	// Type is the type of the signals, Source their source (default
	// "/loadtest/" + Publisher).
	Type, Source string
	// Rate is the signals per second, spread evenly; 0: back to back.
	Rate float64
	// Count stops the workload after this many attempts; Duration stops
	// it from starting another publish once this long has passed. Zero
	// is no bound; one of them must be set.
	Count    int
	Duration time.Duration
	// Timeout bounds each publish (default DefaultPublishTimeout): a
	// publish that runs out of it has an unknown outcome.
	Timeout time.Duration
	// Classify maps a publish error to Failed or Info (default
	// ClassifyError). Anything else it returns counts as Info.
	Classify func(error) Outcome
}

// Validate names the first field that is wrong. The errors wrap
// bus.ErrInvalidOption.
func (c WorkloadConfig) Validate() error {
	bad := func(field, problem string) error {
		return fmt.Errorf("%w: workload %s %s", bus.ErrInvalidOption, field, problem)
	}
	switch {
	case c.Publisher == "":
		return bad("Publisher", "is empty")
	case math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) || c.Rate < 0:
		return bad("Rate", fmt.Sprintf("%v is not a rate", c.Rate))
	case c.Count < 0:
		return bad("Count", "is negative")
	case c.Duration < 0:
		return bad("Duration", "is negative")
	case c.Count == 0 && c.Duration == 0:
		return bad("Count and Duration", "are both zero: the workload would never end")
	case c.Timeout < 0:
		return bad("Timeout", "is negative")
	}
	if _, err := bus.NewSignal(c.Type, c.source(), nil); err != nil {
		return fmt.Errorf("%w: workload Type %q, Source %q: %w", bus.ErrInvalidOption, c.Type, c.source(), err)
	}
	return nil
}

func (c WorkloadConfig) source() string {
	if c.Source == "" {
		return "/loadtest/" + c.Publisher
	}
	return c.Source
}

// ClassifyError is the default classification of a publish error: a
// definite failure (Failed) for an error that says the signal was not
// taken (bus.ErrInvalidSignal, bus.ErrInvalidOption, bus.ErrClosed);
// an unknown outcome (Info) for anything else, a timeout or a lost
// connection above all, because the signal may have been stored before
// the error. When in doubt a Jepsen client says info.
func ClassifyError(err error) Outcome {
	switch {
	case err == nil:
		return Acked
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return Info
	case errors.Is(err, bus.ErrInvalidSignal), errors.Is(err, bus.ErrInvalidOption), errors.Is(err, bus.ErrClosed):
		return Failed
	}
	return Info
}

// Workload is the load a node runs and records: one process publishing
// signals one at a time, in order, recording each attempt and its
// outcome in a History. After a publish whose outcome is unknown it goes
// on as a new identity (Publisher.Next). Its deliveries are recorded by
// a Subscriber of the same History (a bus.Handler) subscribed on the
// node.
type Workload struct {
	h   *History
	cfg WorkloadConfig
	pub *Publisher // the current identity; only Run changes it
}

// NewWorkload returns a Workload recording in h, or the config's error.
func NewWorkload(h *History, cfg WorkloadConfig) (*Workload, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultPublishTimeout
	}
	if cfg.Classify == nil {
		cfg.Classify = ClassifyError
	}
	node := cfg.Node
	if node == "" {
		node = h.node
	}
	return &Workload{h: h, cfg: cfg, pub: h.PublisherOn(node, cfg.Publisher)}, nil
}

// Publisher is the identity the workload publishes as now: the first,
// or the one it took after its last unknown outcome.
func (w *Workload) Publisher() *Publisher { return w.pub }

// Run publishes until Count signals were attempted or Duration has
// passed, as the user would: bus.NewSignal, then publish (bus.Bus's
// Publish or cluster.Node's, as a method value) with ctx bounded by
// Timeout. It records each attempt, and its outcome by publish's error:
// nil is an ack; otherwise Classify says fail or info, and after an info
// the workload goes on as its publisher's Next. A publish error is the
// run's data, not Run's error: Run returns nil once the bounds are
// reached, or ctx's error if ctx ends first. It takes at most Duration
// plus one Timeout, if publish returns when its ctx ends. Run is not
// safe for concurrent use.
func (w *Workload) Run(ctx context.Context, publish func(context.Context, ...bus.Signal) error) error {
	cfg := w.cfg
	start := time.Now()
	var end time.Time
	if cfg.Duration > 0 {
		end = start.Add(cfg.Duration)
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for i := 0; cfg.Count == 0 || i < cfg.Count; i++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("loadtest: workload %s: %w", cfg.Publisher, err)
		}
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
			if !end.IsZero() && !due.Before(end) {
				return nil
			}
			if wait := time.Until(due); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("loadtest: workload %s: %w", cfg.Publisher, ctx.Err())
				case <-timer.C:
				}
			}
		}
		if !end.IsZero() && !time.Now().Before(end) {
			return nil
		}
		w.publishOne(ctx, publish)
	}
	return nil
}

// publishOne makes, attempts and publishes one signal and records its
// outcome.
func (w *Workload) publishOne(ctx context.Context, publish func(context.Context, ...bus.Signal) error) {
	cfg := w.cfg
	sig, err := bus.NewSignal(cfg.Type, cfg.source(), nil, bus.WithSubject(w.pub.Name()))
	if err != nil { // Validate made one: not expected, but recorded as the user would see it
		sig = bus.Signal{ID: bus.NewID(), Type: cfg.Type}
		w.pub.Attempt(&sig).Fail(err)
		return
	}
	op := w.pub.Attempt(&sig)
	pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	err = publish(pctx, sig)
	cancel()
	if err == nil {
		op.Ack()
		return
	}
	if cfg.Classify(err) == Failed {
		op.Fail(err)
		return
	}
	w.pub = op.Info(err)
}
