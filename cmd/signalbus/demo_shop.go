package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/signalbus/signalbus/bus"
)

// The demo's signals: the life of an order in a web shop.
const (
	shopSource      = "/demo/shop"
	typeCreated     = "order.created"
	typePaid        = "order.paid"
	typeShipped     = "order.shipped"
	typeCancelled   = "order.cancelled"
	poisonRate      = 0.01 // orders the carrier always rejects
	firstFailRate   = 0.30 // first shipping attempts that fail
	retryFailRate   = 0.10 // later shipping attempts that fail
	maxOpenOrders   = 64   // orders created or paid, not yet shipped or cancelled
	minOpenOrders   = 8
	createRate      = 0.35 // share of steps that create an order, between the bounds
	rememberedDeads = 3    // dead letters the dead-letter handler keeps as examples
	replayShown     = 3    // replayed cancelled orders printed
)

var orderTypes = []string{typeCreated, typePaid, typeShipped, typeCancelled}

// order is the data of every order signal.
type order struct {
	ID       string  `json:"order_id"`
	Amount   float64 `json:"amount"`
	Currency string  `json:"currency"`
	Customer string  `json:"customer"`
	// Poison marks an order the carrier rejects on every attempt.
	Poison bool `json:"poison,omitempty"`
}

var customers = []string{"ada", "alan", "barbara", "dennis", "edsger", "grace", "ken", "margaret", "rob", "tony"}

// shop makes the stream of order signals: it creates orders and moves open
// ones along created → paid → shipped, or to cancelled. Given its seed the
// stream is always the same, however fast it is drawn.
type shop struct {
	rng  *rand.Rand
	seq  int
	open []openOrder
}

type openOrder struct {
	order
	paid bool
}

func newShop(seed uint64) *shop {
	return &shop{rng: rand.New(rand.NewPCG(seed, 0x5109))}
}

// next returns the type and data of the next signal.
func (s *shop) next() (string, order) {
	if len(s.open) < minOpenOrders || (len(s.open) < maxOpenOrders && s.rng.Float64() < createRate) {
		s.seq++
		o := order{
			ID:       fmt.Sprintf("ord-%06d", s.seq),
			Amount:   float64(500+s.rng.IntN(50000)) / 100,
			Currency: "EUR",
			Customer: customers[s.rng.IntN(len(customers))],
			Poison:   s.rng.Float64() < poisonRate,
		}
		s.open = append(s.open, openOrder{order: o})
		return typeCreated, o
	}
	i := s.rng.IntN(len(s.open))
	o := &s.open[i]
	p := s.rng.Float64()
	switch {
	case !o.paid && p < 0.8:
		o.paid = true
		return typePaid, o.order
	case o.paid && p < 0.92:
		return typeShipped, s.close(i)
	}
	return typeCancelled, s.close(i)
}

// close removes open order i and returns it.
func (s *shop) close(i int) order {
	o := s.open[i].order
	last := len(s.open) - 1
	s.open[i] = s.open[last]
	s.open = s.open[:last]
	return o
}

// signals appends n signals to dst.
func (s *shop) signals(dst []bus.Signal, n int) ([]bus.Signal, error) {
	for range n {
		typ, o := s.next()
		sig, err := bus.NewSignal(typ, shopSource, o, bus.WithSubject(o.ID))
		if err != nil {
			return dst, err
		}
		dst = append(dst, sig)
	}
	return dst, nil
}

func decodeOrder(s bus.Signal) (order, error) {
	var o order
	if err := json.Unmarshal(s.Data, &o); err != nil {
		// No retry can fix a payload that does not decode.
		return o, bus.Permanent(fmt.Errorf("decode %s data: %w", s.Type, err))
	}
	return o, nil
}

// The subscribers. Each handler runs on its subscription's worker, one
// signal at a time; the mutexes are for the reports read at the end.

// analytics counts every order signal by type ("order.*").
type analytics struct {
	mu     sync.Mutex
	byType map[string]int64
}

func (a *analytics) handle(_ context.Context, s bus.Signal) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byType == nil {
		a.byType = make(map[string]int64)
	}
	a.byType[s.Type]++
	return nil
}

func (a *analytics) counts() map[string]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int64, len(a.byType))
	for k, v := range a.byType {
		out[k] = v
	}
	return out
}

// billing books the revenue of paid orders ("order.paid").
type billing struct {
	mu    sync.Mutex
	paid  int64
	cents int64
}

func (b *billing) handle(_ context.Context, s bus.Signal) error {
	o, err := decodeOrder(s)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.paid++
	b.cents += int64(o.Amount*100 + 0.5)
	return nil
}

func (b *billing) revenue() (int64, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.paid, fmt.Sprintf("%d.%02d EUR", b.cents/100, b.cents%100)
}

// audit sees every signal under "order.**"; at the end it also replays the
// cancelled orders from the bus history.
type audit struct {
	mu   sync.Mutex
	seen int64
}

func (a *audit) handle(_ context.Context, _ bus.Signal) error {
	a.mu.Lock()
	a.seen++
	a.mu.Unlock()
	return nil
}

func (a *audit) count() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen
}

// carrierError is a failed call to the (simulated) carrier API. Its type
// name is what the process span's error.type attribute shows.
type carrierError struct {
	Order  string
	Status int
}

func (e *carrierError) Error() string {
	return fmt.Sprintf("carrier API: HTTP %d for order %s", e.Status, e.Order)
}

// shipping books shipments with a flaky carrier ("order.shipped"): about
// 30 % of first attempts fail, 10 % of later ones, and poison orders fail
// for good.
type shipping struct {
	rng *rand.Rand // used by the subscription's worker only

	// The bus does not tell a handler which attempt it is making; retries
	// of a signal come right after its failed attempt on the same worker,
	// so the last signal id seen is enough to tell.
	lastID   string
	attempts int

	mu      sync.Mutex
	shipped int64
}

func newShipping(seed uint64) *shipping {
	return &shipping{rng: rand.New(rand.NewPCG(seed, 0x5419))}
}

func (sh *shipping) handle(_ context.Context, s bus.Signal) error {
	if s.ID == sh.lastID {
		sh.attempts++
	} else {
		sh.lastID, sh.attempts = s.ID, 1
	}
	o, err := decodeOrder(s)
	if err != nil {
		return err
	}
	if o.Poison {
		return bus.Permanent(fmt.Errorf("carrier rejects order %s: %w", o.ID, errPoison))
	}
	failRate := firstFailRate
	if sh.attempts > 1 {
		failRate = retryFailRate
	}
	if sh.rng.Float64() < failRate {
		return &carrierError{Order: o.ID, Status: 503}
	}
	sh.mu.Lock()
	sh.shipped++
	sh.mu.Unlock()
	return nil
}

func (sh *shipping) count() int64 {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.shipped
}

var errPoison = errors.New("poison flag set")

// deadLetters is the shipping subscription's dead-letter handler: it
// counts what reaches it and keeps the first few of each kind (poison
// orders, given up on after the retries) as examples.
type deadLetters struct {
	mu     sync.Mutex
	total  int64
	poison int64
	byKind [2][]deadLetterExample // [0] poison, [1] retries spent
}

type deadLetterExample struct {
	signalID string
	orderID  string
	attempts int
	err      error
}

func (d *deadLetters) handle(ctx context.Context, s bus.Signal) error {
	dl, ok := bus.DeadLetterFromContext(ctx)
	if !ok {
		return errors.New("dead-letter handler called without dead-letter details")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.total++
	kind := 1
	if errors.Is(dl.Err, errPoison) {
		d.poison++
		kind = 0
	}
	if len(d.byKind[kind]) < rememberedDeads {
		d.byKind[kind] = append(d.byKind[kind], deadLetterExample{
			signalID: s.ID, orderID: s.Subject, attempts: dl.Attempts, err: dl.Err,
		})
	}
	return nil
}

// report returns the counts and up to rememberedDeads examples, of both
// kinds when there are both.
func (d *deadLetters) report() (total, poison int64, examples []deadLetterExample) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := 0; len(examples) < rememberedDeads; i++ {
		added := false
		for _, kind := range d.byKind {
			if i < len(kind) && len(examples) < rememberedDeads {
				examples = append(examples, kind[i])
				added = true
			}
		}
		if !added {
			break
		}
	}
	return d.total, d.poison, examples
}
