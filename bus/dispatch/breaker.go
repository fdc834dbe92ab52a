package dispatch

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrCircuitOpen is wrapped by the error Webhook.Handle returns, without
// sending anything, while the webhook's circuit breaker is open (or
// half-open with its trial requests already in flight). It is not
// permanent: the subscription's retry policy tries again later, and the
// signal is dead-lettered if the circuit stays open through every attempt.
var ErrCircuitOpen = errors.New("webhook circuit open")

// CircuitBreakerConfig configures the circuit breaker of WithCircuitBreaker.
//
// The breaker starts closed: requests go through. FailureThreshold failures
// in a row (network errors, timeouts, and the retryable statuses: 408, 429,
// 5xx) open it: for OpenFor, Handle fails at once with ErrCircuitOpen,
// sparing an endpoint that is down the load and the subscription the
// timeouts. Then it is half-open: up to HalfOpenMax trial requests may be
// in flight at once, the others are refused. The first trial that succeeds
// closes the breaker; one that fails opens it for another OpenFor.
//
// A response with a permanent status (another 4xx) counts as a success: the
// endpoint is up and answering, the signal is at fault. A request cut short
// because the handler's ctx ended counts as neither.
type CircuitBreakerConfig struct {
	FailureThreshold int           // consecutive failures that open the circuit; at least 1
	OpenFor          time.Duration // how long the circuit stays open; positive
	HalfOpenMax      int           // trial requests at once while half-open; 0 means 1
}

func (c CircuitBreakerConfig) validate() error {
	switch {
	case c.FailureThreshold < 1:
		return fmt.Errorf("FailureThreshold %d is below 1", c.FailureThreshold)
	case c.OpenFor <= 0:
		return fmt.Errorf("OpenFor %v is not positive", c.OpenFor)
	case c.HalfOpenMax < 0:
		return fmt.Errorf("HalfOpenMax %d is negative", c.HalfOpenMax)
	}
	return nil
}

type breakerState int

const (
	stateClosed breakerState = iota
	stateOpen
	stateHalfOpen
)

// outcome is what one request tells the breaker about the endpoint.
type outcome int

const (
	outcomeSuccess outcome = iota // the endpoint answered
	outcomeFailure                // it failed in a way a retry may fix
	outcomeNeutral                // nothing learnt (the caller gave up)
)

// breaker is a circuit breaker for one endpoint. It is safe for concurrent
// use: a Webhook may serve several subscriptions.
type breaker struct {
	cfg CircuitBreakerConfig

	mu        sync.Mutex
	state     breakerState
	failures  int       // consecutive, while closed
	openUntil time.Time // while open
	trials    int       // in flight, while half-open
	// gen changes with every state change. A request reports its outcome
	// with the gen it started under, and a late report from an earlier
	// state is ignored: a request sent while closed that fails after the
	// breaker opened must not extend the open period or spend a trial.
	gen uint64
}

func newBreaker(cfg CircuitBreakerConfig) *breaker {
	if cfg.HalfOpenMax == 0 {
		cfg.HalfOpenMax = 1
	}
	return &breaker{cfg: cfg}
}

// allow reports whether a request may be sent now. If so, the caller must
// report its outcome with done and the returned gen.
func (b *breaker) allow(now time.Time) (gen uint64, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case stateOpen:
		if wait := b.openUntil.Sub(now); wait > 0 {
			return 0, fmt.Errorf("%w for another %v", ErrCircuitOpen, wait)
		}
		b.setState(stateHalfOpen)
		fallthrough
	case stateHalfOpen:
		if b.trials >= b.cfg.HalfOpenMax {
			return 0, fmt.Errorf("%w: half-open, %d trial request(s) in flight", ErrCircuitOpen, b.trials)
		}
		b.trials++
	}
	return b.gen, nil
}

// done records the outcome of a request allowed under gen.
func (b *breaker) done(gen uint64, o outcome, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen != b.gen {
		return
	}
	switch b.state {
	case stateClosed:
		switch o {
		case outcomeSuccess:
			b.failures = 0
		case outcomeFailure:
			b.failures++
			if b.failures >= b.cfg.FailureThreshold {
				b.open(now)
			}
		}
	case stateHalfOpen:
		b.trials--
		switch o {
		case outcomeSuccess:
			b.setState(stateClosed)
		case outcomeFailure:
			b.open(now)
		}
	}
}

func (b *breaker) open(now time.Time) {
	b.setState(stateOpen)
	b.openUntil = now.Add(b.cfg.OpenFor)
}

func (b *breaker) setState(s breakerState) {
	b.state = s
	b.gen++
	b.failures = 0
	b.trials = 0
}
