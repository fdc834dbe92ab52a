package loadtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// The ops of a Record.
const (
	RecordInvoke    = "invoke"    // a publish attempted (Jepsen's :invoke)
	RecordOK        = "ok"        // its publish acked
	RecordFail      = "fail"      // its publish failed: not published
	RecordInfo      = "info"      // its outcome unknown
	RecordDeliver   = "deliver"   // a delivery to a handler
	RecordSubscribe = "subscribe" // a subscriber begins
	RecordFault     = "fault"     // a fault window
	RecordOpen      = "open"      // a Recorder began writing
)

// ErrBadRecord is wrapped by the errors of a record that is not one:
// an unknown op, or a field its op needs missing.
var ErrBadRecord = errors.New("bad record")

// Record is one line of a history file: a JSON object on a line of its
// own. Op says what it records and which fields it carries:
//
//	invoke          publisher, n, id, node, t, type   a publish attempted
//	ok, fail, info  publisher, n, id, node, t, error  its outcome
//	deliver         subscriber, node, id, t           a delivery to a handler
//	subscribe       subscriber, node, pattern, t      a subscriber, owed what matches pattern from t on
//	fault           name, start, end                  a fault window; end omitted while it lasts
//	open            t                                 a Recorder's first line
//
// N is the publisher's counter, from 1; a publisher is one identity of a
// process (see History.Publisher). Times are RFC 3339 with nanoseconds.
// A fault written twice with the same name and start is one window: the
// second line gives its end, so the harness writes a line when a fault
// begins and another when it heals.
type Record struct {
	Op         string    `json:"op"`
	Publisher  string    `json:"publisher,omitempty"`
	N          uint64    `json:"n,omitempty"`
	Subscriber string    `json:"subscriber,omitempty"`
	Name       string    `json:"name,omitempty"`
	ID         string    `json:"id,omitempty"`
	Type       string    `json:"type,omitempty"`
	Pattern    string    `json:"pattern,omitempty"`
	Node       string    `json:"node,omitempty"`
	T          time.Time `json:"t,omitzero"`
	Start      time.Time `json:"start,omitzero"`
	End        time.Time `json:"end,omitzero"`
	Error      string    `json:"error,omitempty"`
}

// Validate reports a record that ReadHistory would refuse: an unknown op
// or a field its op needs missing. The error wraps ErrBadRecord.
func (r Record) Validate() error {
	missing := func(field string) error {
		return fmt.Errorf("%w: %q record without %s", ErrBadRecord, r.Op, field)
	}
	switch r.Op {
	case RecordInvoke, RecordOK, RecordFail, RecordInfo:
		switch {
		case r.Publisher == "":
			return missing("publisher")
		case r.N == 0:
			return missing("n")
		case r.ID == "":
			return missing("id")
		}
	case RecordDeliver:
		switch {
		case r.Subscriber == "":
			return missing("subscriber")
		case r.ID == "":
			return missing("id")
		}
	case RecordSubscribe:
		if r.Subscriber == "" {
			return missing("subscriber")
		}
		if err := bus.ValidatePattern(r.Pattern); err != nil {
			return fmt.Errorf("%w: subscriber %q: %w", ErrBadRecord, r.Subscriber, err)
		}
	case RecordFault:
		if err := (Fault{Name: r.Name, Start: r.Start, End: r.End}).Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrBadRecord, err)
		}
		return nil
	case RecordOpen:
	case "":
		return fmt.Errorf("%w: no op", ErrBadRecord)
	default:
		return fmt.Errorf("%w: unknown op %q", ErrBadRecord, r.Op)
	}
	if r.T.IsZero() {
		return missing("t")
	}
	return nil
}

// recordOp is the record op of an outcome.
func recordOp(o Outcome) string {
	switch o {
	case Acked:
		return RecordOK
	case Failed:
		return RecordFail
	case Info:
		return RecordInfo
	}
	return ""
}

// Recorder writes Records to an io.Writer, one line per Write call on
// it, so that each record reaches an unbuffered *os.File's page cache
// when it is written and survives a SIGKILL of the process; at worst the
// line being written is torn, which ReadHistory tolerates. Its first
// write begins with a newline and an open record, so that a torn last
// line left by a killed predecessor appending to the same file ends
// there and is recognised as torn.
//
// A Recorder is safe for concurrent use. After a write error it writes
// nothing more and returns that error (Err), since a record with a gap
// would be misjudged.
type Recorder struct {
	mu     sync.Mutex
	w      io.Writer
	opened bool
	buf    []byte
	err    error
}

// NewRecorder returns a Recorder writing to w.
func NewRecorder(w io.Writer) *Recorder { return &Recorder{w: w} }

// Write writes rec as one line. A record that does not Validate is
// refused (and not kept as the Recorder's error).
func (r *Recorder) Write(rec Record) error {
	if err := rec.Validate(); err != nil {
		return fmt.Errorf("loadtest: record: %w", err)
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("loadtest: record: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.buf = r.buf[:0]
	if !r.opened {
		open, err := json.Marshal(Record{Op: RecordOpen, T: time.Now()})
		if err != nil {
			return fmt.Errorf("loadtest: record: %w", err)
		}
		r.buf = append(append(append(r.buf, '\n'), open...), '\n')
	}
	r.buf = append(append(r.buf, line...), '\n')
	if _, err := r.w.Write(r.buf); err != nil {
		r.err = fmt.Errorf("loadtest: record: %w", err)
		return r.err
	}
	r.opened = true
	return nil
}

// Fault writes a fault window: with a zero end when it begins, and again
// with its end once healed.
func (r *Recorder) Fault(name string, start, end time.Time) error {
	return r.Write(Record{Op: RecordFault, Name: name, Start: start, End: end})
}

// Err returns the first write error, or nil.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// WriteTo writes the history as records, as ReadHistory reads them:
// the subscribers, each attempt with its final outcome, the deliveries
// in order and the fault windows. It is how a run merged from several
// files is kept as one.
func (h *History) WriteTo(w io.Writer) (int64, error) {
	h.mu.Lock()
	var recs []Record
	for _, s := range h.subs {
		recs = append(recs, Record{Op: RecordSubscribe, Subscriber: s.name, Node: s.node, Pattern: s.pattern.String(), T: s.from})
	}
	for i := range h.ops {
		o := &h.ops[i]
		recs = append(recs, Record{Op: RecordInvoke, Publisher: o.pub.name, N: o.seq, ID: o.id, Type: o.typ, Node: o.pub.node, T: o.at})
		if o.outcome != Pending {
			r := Record{Op: recordOp(o.outcome), Publisher: o.pub.name, N: o.seq, ID: o.id, Node: o.pub.node, T: o.done}
			if o.err != nil && o.outcome != Acked {
				r.Error = o.err.Error()
			}
			recs = append(recs, r)
		}
	}
	for _, s := range h.subs {
		for _, d := range s.deliveries {
			recs = append(recs, Record{Op: RecordDeliver, Subscriber: s.name, Node: s.node, ID: d.id, T: d.at})
		}
	}
	for _, f := range h.faults {
		recs = append(recs, Record{Op: RecordFault, Name: f.Name, Start: f.Start, End: f.End})
	}
	h.mu.Unlock()

	cw := &countingWriter{w: w}
	r := NewRecorder(cw)
	for _, rec := range recs {
		if err := r.Write(rec); err != nil {
			return cw.n, err
		}
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
