package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/signalbus/signalbus/bus"
)

func TestWorkloadConfigValidate(t *testing.T) {
	good := WorkloadConfig{Publisher: "n1", Type: "loadtest.signal", Count: 1}
	cases := []struct {
		name string
		edit func(*WorkloadConfig)
		want string // "" for valid
	}{
		{"good", func(*WorkloadConfig) {}, ""},
		{"a duration is bound enough", func(c *WorkloadConfig) { c.Count, c.Duration = 0, time.Second }, ""},
		{"no publisher", func(c *WorkloadConfig) { c.Publisher = "" }, "Publisher is empty"},
		{"unbounded", func(c *WorkloadConfig) { c.Count = 0 }, "Count and Duration are both zero"},
		{"negative count", func(c *WorkloadConfig) { c.Count = -1 }, "Count is negative"},
		{"negative duration", func(c *WorkloadConfig) { c.Duration = -time.Second }, "Duration is negative"},
		{"negative rate", func(c *WorkloadConfig) { c.Rate = -1 }, "Rate -1 is not a rate"},
		{"NaN rate", func(c *WorkloadConfig) { c.Rate = math.NaN() }, "Rate NaN"},
		{"infinite rate", func(c *WorkloadConfig) { c.Rate = math.Inf(1) }, "Rate +Inf"},
		{"negative timeout", func(c *WorkloadConfig) { c.Timeout = -1 }, "Timeout is negative"},
		{"no type", func(c *WorkloadConfig) { c.Type = "" }, `Type ""`},
		{"bad type", func(c *WorkloadConfig) { c.Type = "a..b" }, `Type "a..b"`},
		{"bad source", func(c *WorkloadConfig) { c.Source = "\xff" }, `Source "\xff"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, bus.ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want ErrInvalidOption and %q", err, tc.want)
			}
			if _, err := NewWorkload(NewHistory(), c); err == nil {
				t.Error("NewWorkload took a bad config")
			}
		})
	}
}

func TestClassifyError(t *testing.T) {
	cases := []struct {
		err  error
		want Outcome
	}{
		{nil, Acked},
		{context.DeadlineExceeded, Info},
		{fmt.Errorf("publish: %w", context.Canceled), Info},
		{fmt.Errorf("publish: %w", bus.ErrInvalidSignal), Failed},
		{bus.ErrInvalidOption, Failed},
		{bus.ErrClosed, Failed},
		{errors.New("connection reset"), Info},
	}
	for _, tc := range cases {
		if got := ClassifyError(tc.err); got != tc.want {
			t.Errorf("ClassifyError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// fakePublish answers each publish by the signal's position: fail with
// bus.ErrInvalidSignal, block until ctx ends, return another error, or
// ack.
type fakePublish struct {
	mu      sync.Mutex
	sent    []bus.Signal
	answers map[int]string // 0-based position → "fail", "block", "other"
}

func (f *fakePublish) publish(ctx context.Context, sigs ...bus.Signal) error {
	f.mu.Lock()
	i := len(f.sent)
	f.sent = append(f.sent, sigs...)
	answer := f.answers[i]
	f.mu.Unlock()
	switch answer {
	case "fail":
		return fmt.Errorf("publish: %w", bus.ErrInvalidSignal)
	case "block":
		<-ctx.Done()
		return fmt.Errorf("publish: %w", ctx.Err())
	case "other":
		return errors.New("connection reset")
	}
	return nil
}

func TestWorkloadOutcomes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHistory(WithNode("n1"))
		w, err := NewWorkload(h, WorkloadConfig{Publisher: "n1", Type: "loadtest.signal", Count: 7, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		f := &fakePublish{answers: map[int]string{1: "fail", 2: "block", 4: "other"}}
		start := time.Now()
		if err := w.Run(t.Context(), f.publish); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("the run took %v: one publish timed out after 1s, the rest took no time", d)
		}
		v := h.Check()
		if v.Attempted != 7 || v.Acked != 4 || v.Failed != 1 || v.Info != 2 {
			t.Fatalf("verdict %v", v)
		}
		// The timeout at #3 moves the process to n1/2, the other error at
		// n1/2's #2 to n1/3; the failure keeps its identity.
		want := []PublisherVerdict{
			{Name: "n1", Node: "n1", Attempted: 3, Acked: 1, Failed: 1, Info: 1},
			{Name: "n1/2", Node: "n1", Attempted: 2, Acked: 1, Info: 1},
			{Name: "n1/3", Node: "n1", Attempted: 2, Acked: 2},
		}
		if fmt.Sprint(v.Publishers) != fmt.Sprint(want) {
			t.Errorf("publishers %+v\n  want %+v", v.Publishers, want)
		}
		if w.Publisher().Name() != "n1/3" {
			t.Errorf("workload publishes as %q", w.Publisher().Name())
		}
		for i, s := range f.sent {
			if s.Type != "loadtest.signal" || s.Source != "/loadtest/n1" || s.ID == "" || s.Validate() != nil {
				t.Errorf("signal %d: %+v", i, s)
			}
		}
		if f.sent[0].Subject != "n1" || f.sent[6].Subject != "n1/3" {
			t.Errorf("subjects %q, %q: want the publisher's identity", f.sent[0].Subject, f.sent[6].Subject)
		}
	})
}

func TestWorkloadRate(t *testing.T) {
	cases := []struct {
		name     string
		cfg      WorkloadConfig
		attempts int
		took     time.Duration
	}{
		{"count at a rate", WorkloadConfig{Rate: 100, Count: 50}, 50, 490 * time.Millisecond},
		{"duration at a rate", WorkloadConfig{Rate: 10, Duration: time.Second}, 10, 900 * time.Millisecond},
		{"the count ends it first", WorkloadConfig{Rate: 10, Count: 3, Duration: time.Hour}, 3, 200 * time.Millisecond},
		{"the duration ends it first", WorkloadConfig{Rate: 10, Count: 1000, Duration: 2 * time.Second}, 20, 1900 * time.Millisecond},
		{"back to back", WorkloadConfig{Count: 25}, 25, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := NewHistory()
				tc.cfg.Publisher, tc.cfg.Type = "p", "t"
				w, err := NewWorkload(h, tc.cfg)
				if err != nil {
					t.Fatal(err)
				}
				var at []time.Duration
				start := time.Now()
				err = w.Run(t.Context(), func(context.Context, ...bus.Signal) error {
					at = append(at, time.Since(start))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(at) != tc.attempts || time.Since(start) != tc.took {
					t.Fatalf("%d publishes in %v, want %d in %v", len(at), time.Since(start), tc.attempts, tc.took)
				}
				if tc.cfg.Rate > 0 {
					for i, d := range at {
						if want := time.Duration(float64(i) / tc.cfg.Rate * float64(time.Second)); d != want {
							t.Fatalf("publish %d at %v, want %v", i, d, want)
						}
					}
				}
				if v := h.Check(); v.Attempted != tc.attempts || v.Acked != tc.attempts {
					t.Errorf("verdict %v", v)
				}
			})
		})
	}
}

func TestWorkloadCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHistory()
		w, err := NewWorkload(h, WorkloadConfig{Publisher: "p", Type: "t", Rate: 1, Duration: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2500*time.Millisecond)
		defer cancel()
		err = w.Run(ctx, func(context.Context, ...bus.Signal) error { return nil })
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "workload p") {
			t.Errorf("Run = %v", err)
		}
		if v := h.Check(); v.Attempted != 3 {
			t.Errorf("verdict %v, want 3 attempts (at 0, 1 and 2 s)", v)
		}
		// A ctx that ends mid-publish leaves that outcome unknown.
		h = NewHistory()
		w, _ = NewWorkload(h, WorkloadConfig{Publisher: "p", Type: "t", Count: 5, Timeout: time.Hour})
		ctx, cancel = context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		err = w.Run(ctx, (&fakePublish{answers: map[int]string{0: "block"}}).publish)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run = %v", err)
		}
		if v := h.Check(); v.Attempted != 1 || v.Info != 1 {
			t.Errorf("verdict %v", v)
		}
	})
}

// TestWorkloadBus runs two workloads, as two embedded nodes would,
// through a real in-process bus with a recording subscriber on each
// "node", recording to files that are read back.
func TestWorkloadBus(t *testing.T) {
	b, err := bus.New()
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = b.Close(context.Background())
		}
	}()
	var files [2]bytes.Buffer
	hs := [2]*History{}
	for i := range hs {
		node := fmt.Sprintf("n%d", i+1)
		hs[i] = NewHistory(WithNode(node), WithRecord(&files[i]))
		sub, err := hs[i].Subscriber(node, "loadtest.**")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Subscribe("loadtest.**", sub); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i, h := range hs {
		w, err := NewWorkload(h, WorkloadConfig{Publisher: fmt.Sprintf("n%d", i+1), Type: "loadtest.signal", Count: 200})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := w.Run(t.Context(), b.Publish); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// Each node's History owes what it published to its own
	// subscriber; the records owe each subscriber everything.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, h := range hs {
		if err := h.AwaitDelivered(ctx, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	closed = true
	if err := b.Close(ctx); err != nil { // drains the subscriptions: the files are complete
		t.Fatal(err)
	}
	merged, err := ReadHistory(&files[0], &files[1])
	if err != nil {
		t.Fatal(err)
	}
	v := merged.Check()
	if !v.OK() || v.Attempted != 400 || v.Acked != 400 || v.ReadOK != 800 || len(v.Subscribers) != 2 || v.Subscribers[1].Node != "n2" {
		t.Errorf("verdict %v", v)
	}
}
