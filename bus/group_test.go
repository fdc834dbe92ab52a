package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/signalbus/signalbus/bus"
)

// idSet collects ids across handlers and remembers duplicates.
type idSet struct {
	mu   sync.Mutex
	seen map[string]int
	dups []string
}

func (s *idSet) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]int{}
	}
	s.seen[id]++
	if s.seen[id] > 1 {
		s.dups = append(s.dups, id)
	}
}

func (s *idSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func TestGroupGivesEachSignalToOneMemberInTurn(t *testing.T) {
	b := newBus(t)
	var all idSet
	var counts [3]recorder
	var members [3]*bus.Subscription
	for i := range members {
		i := i
		members[i] = mustSubscribe(t, b, "order.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
			all.add(s.ID)
			return counts[i].Handle(ctx, s)
		}), bus.WithGroup("billing"))
	}
	var everyone recorder
	audit := mustSubscribe(t, b, "order.**", &everyone)
	const n = 3000
	for i := 0; i < n; i++ {
		if err := b.Publish(context.Background(), mustSignal(t, "order.created", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members {
		_ = m.Close()
	}
	_ = audit.Close()
	if got := all.len(); got != n || len(all.dups) != 0 {
		t.Fatalf("group handled %d distinct signals with %d duplicates, want %d and 0", got, len(all.dups), n)
	}
	for i := range counts {
		// Every queue had room throughout, so the turns were strict.
		if got := counts[i].len(); got != n/3 {
			t.Errorf("member %d handled %d, want %d (one in three)", i, got, n/3)
		}
	}
	if everyone.len() != n {
		t.Errorf("the subscription outside the group received %d, want every one of %d", everyone.len(), n)
	}
}

func TestGroupsAreIndependentOfEachOther(t *testing.T) {
	b := newBus(t)
	var billing, shipping idSet
	handler := func(set *idSet) bus.Handler {
		return bus.HandlerFunc(func(_ context.Context, s bus.Signal) error { set.add(s.ID); return nil })
	}
	subs := []*bus.Subscription{
		mustSubscribe(t, b, "order.*", handler(&billing), bus.WithGroup("billing")),
		mustSubscribe(t, b, "order.created", handler(&billing), bus.WithGroup("billing")),
		mustSubscribe(t, b, "**", handler(&shipping), bus.WithGroup("shipping")),
	}
	for i := 0; i < 100; i++ {
		if err := b.Publish(context.Background(), mustSignal(t, "order.created", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range subs {
		_ = s.Close()
	}
	if billing.len() != 100 || len(billing.dups) != 0 {
		t.Errorf("billing handled %d distinct with %d duplicates, want 100 and 0", billing.len(), len(billing.dups))
	}
	if shipping.len() != 100 || len(shipping.dups) != 0 {
		t.Errorf("shipping handled %d distinct with %d duplicates, want 100 and 0", shipping.len(), len(shipping.dups))
	}
}

func TestGroupPassesOverAFullMember(t *testing.T) {
	b := newBus(t)
	release := make(chan struct{})
	var stuck, free recorder
	slow := mustSubscribe(t, b, "job.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		<-release
		return stuck.Handle(ctx, s)
	}), bus.WithGroup("workers"), bus.WithQueueSize(1), bus.WithOverflow(bus.Reject))
	fast := mustSubscribe(t, b, "job.*", &free, bus.WithGroup("workers"), bus.WithQueueSize(1024))
	const n = 200
	for i := 0; i < n; i++ {
		// Reject would fail this Publish if the group picked the full
		// member rather than the one with room.
		if err := b.Publish(context.Background(), mustSignal(t, "job.run", i)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	close(release)
	_ = slow.Close()
	_ = fast.Close()
	if got := stuck.len() + free.len(); got != n {
		t.Fatalf("handled %d in all, want %d", got, n)
	}
	// The stuck member holds at most one in its handler and one queued.
	if stuck.len() > 2 {
		t.Errorf("the blocked member handled %d, want at most 2", stuck.len())
	}
}

func TestGroupMemberLeavingHandsOverItsShare(t *testing.T) {
	b := newBus(t)
	var first, second recorder
	a := mustSubscribe(t, b, "t.x", &first, bus.WithGroup("g"))
	c := mustSubscribe(t, b, "t.x", &second, bus.WithGroup("g"))
	_ = a.Close()
	for i := 0; i < 10; i++ {
		if err := b.Publish(context.Background(), mustSignal(t, "t.x", i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.Close()
	if first.len() != 0 || second.len() != 10 {
		t.Fatalf("closed member got %d, remaining member %d; want 0 and 10", first.len(), second.len())
	}
	// A new member of a group whose members all left starts a new group.
	var third recorder
	d := mustSubscribe(t, b, "t.x", &third, bus.WithGroup("g"))
	if err := b.Publish(context.Background(), mustSignal(t, "t.x", 0)); err != nil {
		t.Fatal(err)
	}
	_ = d.Close()
	if third.len() != 1 {
		t.Fatalf("new member got %d, want 1", third.len())
	}
}

func TestWithGroupRejectsBadNames(t *testing.T) {
	b := newBus(t)
	for _, name := range []string{"", "a.b", "a b", "a*", "é"} {
		_, err := b.Subscribe("t.x", &recorder{}, bus.WithGroup(name))
		if !errors.Is(err, bus.ErrInvalidOption) {
			t.Errorf("WithGroup(%q): err = %v, want ErrInvalidOption", name, err)
		}
	}
}

// feeder is a SubscriptionTransport that takes over the subscriptions whose
// name starts with "fed", the way a network transport takes over groups and
// durable subscriptions, and records what it was told.
type feeder struct {
	loopback
	mu        sync.Mutex
	feeds     map[string]bus.Feed
	infos     []bus.SubscriptionInfo
	detached  map[string]int
	attachErr error
}

func (f *feeder) Attach(info bus.SubscriptionInfo, feed bus.Feed) (bus.Detach, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attachErr != nil {
		return nil, f.attachErr
	}
	f.infos = append(f.infos, info)
	if len(info.Name) < 3 || info.Name[:3] != "fed" {
		return nil, nil
	}
	if f.feeds == nil {
		f.feeds, f.detached = map[string]bus.Feed{}, map[string]int{}
	}
	f.feeds[info.Name] = feed
	return func(context.Context) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.detached[info.Name]++
		return nil
	}, nil
}

func (f *feeder) feed(name string) bus.Feed {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.feeds[name]
}

// outcomes collects the done reports of fed signals.
type outcomes struct {
	mu  sync.Mutex
	got map[string]error
}

func (o *outcomes) done(id string) func(error) {
	return func(err error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.got == nil {
			o.got = map[string]error{}
		}
		if _, twice := o.got[id]; twice {
			panic(fmt.Sprintf("done called twice for %s", id))
		}
		o.got[id] = err
	}
}

func (o *outcomes) of(id string) (error, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	err, ok := o.got[id]
	return err, ok
}

func TestSubscriptionTransportFeedsTheSubscriptionsItTakes(t *testing.T) {
	f := &feeder{}
	b := newBus(t, bus.WithTransport(f))
	f.loopback.buses = []*bus.Bus{b}
	var fed, local recorder
	fail := errors.New("boom")
	fedSub := mustSubscribe(t, b, "order.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		if string(s.Data) == `"bad"` {
			return fail
		}
		return fed.Handle(ctx, s)
	}), bus.WithSubscriptionName("fed-audit"), bus.WithGroup("g"), bus.WithRetry(bus.NoRetry))
	localSub := mustSubscribe(t, b, "order.*", &local)

	if len(f.infos) != 2 {
		t.Fatalf("Attach was asked %d times, want 2", len(f.infos))
	}
	want := bus.SubscriptionInfo{Pattern: "order.*", Name: "fed-audit", Named: true, Group: "g"}
	if f.infos[0] != want {
		t.Errorf("Attach got %+v, want %+v", f.infos[0], want)
	}
	if got := f.infos[1]; got.Named || got.Name != "order.*" || got.Group != "" {
		t.Errorf("Attach got %+v for an unnamed subscription", got)
	}

	// Published signals reach the local subscription only: Dispatch skips
	// the fed one.
	if err := b.Publish(context.Background(), mustSignal(t, "order.created", 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the local subscription", func() bool { return local.len() == 1 })

	var out outcomes
	good, bad := mustSignal(t, "order.created", "good"), mustSignal(t, "order.created", "bad")
	feed := f.feed("fed-audit")
	for _, s := range []bus.Signal{good, bad} {
		if err := feed(context.Background(), s, out.done(s.ID)); err != nil {
			t.Fatalf("feed: %v", err)
		}
	}
	if err := feed(context.Background(), bus.Signal{ID: "x", Source: "/t", Type: ""}, out.done("x")); !errors.Is(err, bus.ErrInvalidSignal) {
		t.Errorf("feeding an invalid signal: err = %v, want ErrInvalidSignal", err)
	}
	waitFor(t, "both outcomes", func() bool {
		_, a := out.of(good.ID)
		_, c := out.of(bad.ID)
		return a && c
	})
	if err, _ := out.of(good.ID); err != nil {
		t.Errorf("done(%v) for a handled signal, want nil", err)
	}
	if err, _ := out.of(bad.ID); err != nil {
		t.Errorf("done(%v) for a dead-lettered signal, want nil: it is done with", err)
	}
	if _, called := out.of("x"); called {
		t.Error("done was called for a signal Feed refused")
	}
	if fed.len() != 1 {
		t.Errorf("fed subscription handled %d, want 1 (the good one; not the published one)", fed.len())
	}

	_ = fedSub.Close()
	_ = localSub.Close()
	f.mu.Lock()
	detached := f.detached["fed-audit"]
	f.mu.Unlock()
	if detached != 1 {
		t.Errorf("Subscription.Close detached %d times, want 1", detached)
	}
	if err := feed(context.Background(), good, nil); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("feeding a closed subscription: err = %v, want ErrClosed", err)
	}
}

func TestFeedReportsDropsAndShutdown(t *testing.T) {
	f := &feeder{}
	b, err := bus.New(bus.WithTransport(f), bus.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	mustSubscribe(t, b, "t.*", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ctx.Err()
	}), bus.WithSubscriptionName("fed"), bus.WithQueueSize(1), bus.WithOverflow(bus.DropOldest), bus.WithRetry(bus.NoRetry))
	feed := f.feed("fed")
	var out outcomes
	sigs := []bus.Signal{mustSignal(t, "t.a", 1), mustSignal(t, "t.a", 2), mustSignal(t, "t.a", 3)}
	if err := feed(context.Background(), sigs[0], out.done(sigs[0].ID)); err != nil {
		t.Fatal(err)
	}
	<-started // sigs[0] is in the handler; the queue (size 1) is empty
	for _, s := range sigs[1:] {
		if err := feed(context.Background(), s, out.done(s.ID)); err != nil {
			t.Fatal(err)
		}
	}
	if err, ok := out.of(sigs[1].ID); !ok || !errors.Is(err, bus.ErrQueueFull) {
		t.Errorf("the signal DropOldest dropped: done(%v) (called %v), want ErrQueueFull", err, ok)
	}
	// Close gives up at once: the handler's run and the queued signal are
	// not handled, and their feeder hears ErrClosed.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with an ended ctx: %v", err)
	}
	waitFor(t, "both shutdown outcomes", func() bool {
		_, a := out.of(sigs[0].ID)
		_, c := out.of(sigs[2].ID)
		return a && c
	})
	for _, s := range []bus.Signal{sigs[0], sigs[2]} {
		if err, _ := out.of(s.ID); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("signal abandoned at Close: done(%v), want ErrClosed", err)
		}
	}
	f.mu.Lock()
	detached := f.detached["fed"]
	f.mu.Unlock()
	if detached != 1 {
		t.Errorf("Bus.Close detached %d times, want 1", detached)
	}
}

func TestAttachErrorFailsSubscribe(t *testing.T) {
	f := &feeder{attachErr: errors.New("no consumer")}
	b := newBus(t, bus.WithTransport(f))
	if _, err := b.Subscribe("t.x", &recorder{}); err == nil || !errors.Is(err, f.attachErr) {
		t.Fatalf("Subscribe: err = %v, want the Attach error", err)
	}
}

func ExampleWithGroup() {
	b, _ := bus.New()
	defer b.Close(context.Background())
	var mu sync.Mutex
	handled := map[string]int{}
	worker := func(name string) bus.Handler {
		return bus.HandlerFunc(func(_ context.Context, s bus.Signal) error {
			mu.Lock()
			handled[name]++
			mu.Unlock()
			return nil
		})
	}
	a, _ := b.Subscribe("invoice.*", worker("a"), bus.WithGroup("billing"))
	c, _ := b.Subscribe("invoice.*", worker("b"), bus.WithGroup("billing"))
	for i := 0; i < 4; i++ {
		s, _ := bus.NewSignal("invoice.issued", "/shop", i)
		_ = b.Publish(context.Background(), s)
	}
	_ = a.Close()
	_ = c.Close()
	fmt.Println(handled["a"], handled["b"])
	// Output: 2 2
}
