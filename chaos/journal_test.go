package chaos_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/signalbus/signalbus/chaos"
)

// calls is a Cluster that records what reaches it: the Journal's logic is
// under test, not a backend's (chaostest checks those).
type calls struct {
	chaos.Cluster
	got  []string
	fail error
}

func (c *calls) call(op string) error { c.got = append(c.got, op); return c.fail }

func (c *calls) Kill(_ context.Context, n string) error    { return c.call("kill " + n) }
func (c *calls) Restart(_ context.Context, n string) error { return c.call("restart " + n) }
func (c *calls) Pause(_ context.Context, n string) error   { return c.call("pause " + n) }
func (c *calls) Resume(_ context.Context, n string) error  { return c.call("resume " + n) }
func (c *calls) Isolate(_ context.Context, n string) error { return c.call("isolate " + n) }
func (c *calls) Heal(context.Context) error                { return c.call("heal") }
func (c *calls) Slow(_ context.Context, a, b string, _ time.Duration) error {
	return c.call("slow " + a + " " + b)
}

func TestJournalRecordsWindows(t *testing.T) {
	ctx := context.Background()
	inner := &calls{}
	j := chaos.NewJournal(inner, nil)
	steps := []func() error{
		func() error { return j.Isolate(ctx, "n1") },
		func() error { return j.Slow(ctx, "n2", "n3", time.Millisecond) },
		func() error { return j.Pause(ctx, "n2") },
		func() error { return j.Heal(ctx) },
		func() error { return j.Kill(ctx, "n3") },
		func() error { return j.Resume(ctx, "n2") },
		func() error { return j.Restart(ctx, "n3") },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
		if i == 4 { // after the kill of n3, n2 still paused
			if killed, paused := j.Down(); !slices.Equal(killed, []string{"n3"}) || !slices.Equal(paused, []string{"n2"}) {
				t.Errorf("Down = %v, %v; want [n3], [n2]", killed, paused)
			}
		}
	}
	if killed, paused := j.Down(); len(killed) != 0 || len(paused) != 0 {
		t.Errorf("after every recovery, Down = %v, %v", killed, paused)
	}
	want := []string{"isolate n1", "slow n2 n3", "pause n2", "heal", "kill n3", "resume n2", "restart n3"}
	if !slices.Equal(inner.got, want) {
		t.Errorf("passed on %v, want %v", inner.got, want)
	}
	if ev := j.Events(); len(ev) != len(want) || ev[0].Desc != "isolate n1" || ev[3].Op != "heal" {
		t.Errorf("events %+v", ev)
	}
	w := j.Windows()
	faults := make([]string, len(w))
	for i, x := range w {
		faults[i] = x.Fault
		if x.End.IsZero() || x.End.Before(x.Start) {
			t.Errorf("window %q: %v to %v, want closed after it opened", x.Fault, x.Start, x.End)
		}
	}
	if want := []string{"isolate n1, slow n2–n3 by 1ms", "pause n2", "kill n3"}; !slices.Equal(faults, want) {
		t.Errorf("windows %q, want %q", faults, want)
	}
	if !w[0].End.Before(w[2].Start) || w[1].End.Before(w[2].Start) {
		t.Errorf("windows out of order: %+v", w)
	}
}

func TestJournalRecordsFailuresWithoutWindows(t *testing.T) {
	inner := &calls{fail: errors.New("no such container")}
	j := chaos.NewJournal(inner, nil)
	if err := j.Kill(context.Background(), "n1"); !errors.Is(err, inner.fail) {
		t.Fatalf("Kill = %v, want the backend's error", err)
	}
	if ev := j.Events(); len(ev) != 1 || ev[0].Err != "no such container" {
		t.Errorf("events %+v, want the failure recorded", ev)
	}
	if w := j.Windows(); len(w) != 0 {
		t.Errorf("a failed fault opened windows %+v", w)
	}
}
