package cluster

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// acker settles one stored signal with JetStream: a jetstream.Msg when the
// signal is a message of its own, a batchShare when it is one event of a
// batch message. Metadata is the stored message's (its stream sequence
// tells whether the node's own consumer sees it: see pipe.parks).
type acker interface {
	Ack() error
	Nak() error
	NakWithDelay(delay time.Duration) error
	Term() error
	Metadata() (*jetstream.MsgMetadata, error)
}

var _ acker = jetstream.Msg(nil)

// batchAck settles a batch message once every signal in it is settled.
// JetStream acknowledges a message, not a part of it: the batch is
// acknowledged when every share was acknowledged (or terminated: a signal
// that can never be delivered needs no redelivery), and negatively
// acknowledged, with the longest delay asked, when any share asked for a
// redelivery. The redelivery brings back the whole batch; its signals
// already handled are dropped by the dedup window while the node runs
// (after a restart the window is empty, which is the trade-off
// Config.Encoding documents).
type batchAck struct {
	msg       jetstream.Msg
	mu        sync.Mutex
	left      int
	redeliver bool
	delay     time.Duration
}

func newBatchAck(msg jetstream.Msg, shares int) *batchAck {
	return &batchAck{msg: msg, left: shares}
}

// share is the acker of one signal of the batch.
func (b *batchAck) share() acker { return batchShare{b} }

type batchShare struct{ b *batchAck }

func (s batchShare) Ack() error                                { return s.b.settle(false, 0) }
func (s batchShare) Term() error                               { return s.b.settle(false, 0) }
func (s batchShare) Nak() error                                { return s.b.settle(true, 0) }
func (s batchShare) NakWithDelay(d time.Duration) error        { return s.b.settle(true, d) }
func (s batchShare) Metadata() (*jetstream.MsgMetadata, error) { return s.b.msg.Metadata() }

func (b *batchAck) settle(redeliver bool, delay time.Duration) error {
	b.mu.Lock()
	b.left--
	if redeliver {
		b.redeliver = true
		b.delay = max(b.delay, delay)
	}
	last, again, wait := b.left == 0, b.redeliver, b.delay
	b.mu.Unlock()
	switch {
	case !last:
		return nil
	case !again:
		return b.msg.Ack()
	case wait > 0:
		return b.msg.NakWithDelay(wait)
	}
	return b.msg.Nak()
}
