package bus_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// TestHandlerGoroutineCarriesSubscriptionLabel: a handler's ctx, and so
// every goroutine it starts, carries the subscription's name as a pprof
// label, which is what tells handlers apart in a CPU profile.
func TestHandlerGoroutineCarriesSubscriptionLabel(t *testing.T) {
	b, err := bus.New()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	got := make(chan [2]string, 4)
	for _, name := range []string{"billing", "shipping"} {
		_, err := b.Subscribe("order.*", bus.HandlerFunc(func(ctx context.Context, _ bus.Signal) error {
			v, _ := pprof.Label(ctx, bus.ProfileLabel)
			got <- [2]string{name, v}
			// The goroutine itself is labelled, not only the ctx: the
			// goroutine profile lists this running handler's labels.
			var buf bytes.Buffer
			if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
				return err
			}
			want := fmt.Sprintf("# labels: {%q:%q}", bus.ProfileLabel, name)
			if !strings.Contains(buf.String(), want) {
				got <- [2]string{name, "goroutine profile without " + want}
			}
			return nil
		}), bus.WithSubscriptionName(name))
		if err != nil {
			t.Fatal(err)
		}
	}
	sig, err := bus.NewSignal("order.created", "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), sig); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		// Each handler sends its ctx label, then a second value only if
		// its goroutine was found unlabelled.
		select {
		case g := <-got:
			if g[0] != g[1] {
				t.Errorf("handler of subscription %q: label %s=%q", g[0], bus.ProfileLabel, g[1])
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a handler did not run within 10 s")
		}
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(got)
	for g := range got {
		t.Errorf("handler of subscription %q: %s", g[0], g[1])
	}
}
