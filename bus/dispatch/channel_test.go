package dispatch_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/bus/dispatch"
)

func TestChannelDelivers(t *testing.T) {
	cases := []struct {
		name   string
		buffer int
	}{
		{"unbuffered", 0},
		{"buffered", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := make(chan bus.Signal, tc.buffer)
			want := newSignal(t, "42")
			errc := make(chan error, 1)
			go func() { errc <- dispatch.Channel(ch).Handle(context.Background(), want) }()
			sameSignal(t, recv(t, ch), want)
			if err := recv(t, errc); err != nil {
				t.Errorf("Handle: %v", err)
			}
		})
	}
}

// TestChannelCtx: a handler blocked on a channel no one reads returns when
// its ctx ends, with the ctx's error; an ended ctx sends nothing even where
// the channel has room.
func TestChannelCtx(t *testing.T) {
	cases := []struct {
		name   string
		buffer int
		ctx    func() (context.Context, context.CancelFunc)
		// cancelAfterBlock cancels the ctx once Handle blocks.
		cancelAfterBlock bool
		want             error
	}{
		{"cancelled while blocked", 0, func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, true, context.Canceled},
		{"deadline while blocked", 0, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), time.Second)
		}, false, context.DeadlineExceeded},
		{"cancelled before, room in channel", 1, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, false, context.Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ch := make(chan bus.Signal, tc.buffer)
				ctx, cancel := tc.ctx()
				defer cancel()
				errc := make(chan error, 1)
				go func() { errc <- dispatch.Channel(ch).Handle(ctx, newSignal(t, "1")) }()
				if tc.cancelAfterBlock {
					synctest.Wait() // Handle is blocked on the send
					cancel()
				}
				err := <-errc
				if !errors.Is(err, tc.want) {
					t.Errorf("Handle: %v, want %v", err, tc.want)
				}
				if len(ch) != 0 {
					t.Errorf("channel holds %d signals, want 0", len(ch))
				}
			})
		})
	}
}

// TestChannelBusClose: a subscription blocked on a channel no one reads
// does not hold Close past its deadline: Close cancels the handler's ctx,
// the handler returns, and the worker ends (goleak checks it).
func TestChannelBusClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := bus.New(bus.WithLogger(quietLogger))
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan bus.Signal)
		sub, err := b.Subscribe("order.*", dispatch.Channel(ch))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(context.Background(), newSignal(t, "1")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the handler is blocked on ch
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := b.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close: %v, want DeadlineExceeded", err)
		}
		<-sub.Done()
	})
}

func TestChannelNil(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Channel(nil) did not panic")
		}
	}()
	dispatch.Channel(nil)
}
