package loadtest

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/signalbus/signalbus/bus"
)

// RecordError is the error of ReadHistory: which reader (its index in
// the arguments, from 0) and which line (from 1; 0 for a read error) it
// is about, and what is wrong.
type RecordError struct {
	Reader, Line int
	Err          error
}

func (e *RecordError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("loadtest: history reader %d: %v", e.Reader, e.Err)
	}
	return fmt.Sprintf("loadtest: history reader %d line %d: %v", e.Reader, e.Line, e.Err)
}

func (e *RecordError) Unwrap() error { return e.Err }

// posRecord is a record and where it was read.
type posRecord struct {
	reader, line int
	Record
}

func (p *posRecord) errorf(format string, args ...any) error {
	return &RecordError{Reader: p.reader, Line: p.line, Err: fmt.Errorf(format, args...)}
}

// ReadHistory rebuilds a History from the records (see Record) of
// several files: each node's (a node's files in the order written, if
// it has several) and the harness's fault windows, in any order.
//
// A torn line, one a killed process left half-written, is skipped and
// counted (TornLines): a line cut short of its closing brace that is
// the last of its reader (with no newline after it), or that is followed
// by the open record of the Recorder that appended to the same file
// after a restart. Any other line that is not a valid record is an
// error, a *RecordError naming the reader and the line, as are records
// that contradict each other: an outcome or a delivery of a subscriber
// nobody recorded, two signals with one publisher counter, one id
// attempted by two publishers. Blank lines are skipped.
//
// Attempts are ordered by their time; each subscriber's deliveries keep
// the order of the lines, readers taken in the order given.
func ReadHistory(rs ...io.Reader) (*History, error) {
	var recs []posRecord
	torn := 0
	for ri, r := range rs {
		n, err := readRecords(ri, r, &recs)
		if err != nil {
			return nil, err
		}
		torn += n
	}
	h := NewHistory()
	h.torn = torn
	if err := h.replay(recs); err != nil {
		return nil, err
	}
	return h, nil
}

// readRecords appends the records of reader ri to recs and returns the
// number of torn lines it skipped.
func readRecords(ri int, r io.Reader, recs *[]posRecord) (torn int, err error) {
	br := bufio.NewReader(r)
	// cut is the line number of a line cut short, waiting for what
	// follows to tell whether it is torn; cutErr is its error.
	cut, cutEnded := 0, false
	var cutErr error
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return torn, &RecordError{Reader: ri, Err: err}
		}
		if len(b) == 0 && err != nil {
			break
		}
		ended := bytes.HasSuffix(b, []byte{'\n'})
		b = bytes.TrimRight(b, "\r\n")
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		rec, perr := parseRecord(b)
		if cut != 0 {
			if perr != nil || rec.Op != RecordOpen {
				return torn, &RecordError{Reader: ri, Line: cut, Err: cutErr}
			}
			torn++
			cut = 0
		}
		switch {
		case errors.Is(perr, io.ErrUnexpectedEOF):
			cut, cutEnded, cutErr = line, ended, perr
		case perr != nil:
			return torn, &RecordError{Reader: ri, Line: line, Err: perr}
		default:
			*recs = append(*recs, posRecord{reader: ri, line: line, Record: rec})
		}
	}
	if cut != 0 {
		if cutEnded { // a whole line, cut short: not a torn write
			return torn, &RecordError{Reader: ri, Line: cut, Err: cutErr}
		}
		torn++
	}
	return torn, nil
}

// parseRecord decodes one line; a line cut short of its end returns an
// error wrapping io.ErrUnexpectedEOF.
func parseRecord(b []byte) (Record, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var rec Record
	if err := dec.Decode(&rec); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Record{}, fmt.Errorf("%w: a line cut short: %w", ErrBadRecord, err)
		}
		return Record{}, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Record{}, fmt.Errorf("%w: more after the record's end", ErrBadRecord)
	}
	if err := rec.Validate(); err != nil {
		return Record{}, err
	}
	return rec, nil
}

// replay records recs into the empty History h: subscribers, then
// attempts by time, then outcomes, deliveries and faults in the order
// read.
func (h *History) replay(recs []posRecord) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var invokes []*posRecord
	for i := range recs {
		p := &recs[i]
		switch p.Op {
		case RecordSubscribe:
			if err := h.replaySubscribe(p); err != nil {
				return err
			}
		case RecordInvoke:
			invokes = append(invokes, p)
		}
	}
	slices.SortStableFunc(invokes, func(a, b *posRecord) int {
		return cmp.Or(a.T.Compare(b.T), cmp.Compare(a.reader, b.reader), cmp.Compare(a.line, b.line))
	})
	counters := map[*Publisher]map[uint64]string{} // publisher → n → id
	for _, p := range invokes {
		if err := h.replayInvoke(p, counters); err != nil {
			return err
		}
	}
	for i := range recs {
		p := &recs[i]
		var err error
		switch p.Op {
		case RecordOK, RecordFail, RecordInfo:
			err = h.replayOutcome(p)
		case RecordDeliver:
			err = h.replayDeliver(p)
		case RecordFault:
			h.addFault(Fault{Name: p.Name, Start: p.Start, End: p.End})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *History) replaySubscribe(p *posRecord) error {
	pat, err := bus.ParsePattern(p.Pattern)
	if err != nil {
		return p.errorf("subscriber %q: %w", p.Subscriber, err)
	}
	for _, s := range h.subs {
		if s.name != p.Subscriber {
			continue
		}
		if s.pattern.String() != pat.String() || s.node != p.Node {
			return p.errorf("subscriber %q on node %q wants %q; already on node %q wanting %q", p.Subscriber, p.Node, p.Pattern, s.node, s.pattern)
		}
		return nil // subscribed again after a restart: owed from the first time
	}
	h.addSubscriber(p.Node, p.Subscriber, pat, p.T)
	return nil
}

func (h *History) replayInvoke(p *posRecord, counters map[*Publisher]map[uint64]string) error {
	pub, ok := h.pubs[p.Publisher]
	if !ok {
		pub = h.newPublisher(p.Node, p.Publisher)
		counters[pub] = map[uint64]string{}
	} else if pub.node != p.Node {
		return p.errorf("publisher %q on node %q, already on node %q", p.Publisher, p.Node, pub.node)
	}
	if i, ok := h.byID[p.ID]; ok {
		if o := &h.ops[i]; o.pub == pub && o.seq == p.N {
			return nil // the same attempt twice
		}
		o := &h.ops[i]
		return p.errorf("signal %s attempted as %s#%d, already as %s#%d", p.ID, p.Publisher, p.N, o.pub.name, o.seq)
	}
	if other, ok := counters[pub][p.N]; ok {
		return p.errorf("publisher %q counter %d given to signal %s and to %s (a restarted process must take a new publisher name)", p.Publisher, p.N, other, p.ID)
	}
	counters[pub][p.N] = p.ID
	pub.seq = max(pub.seq, p.N)
	h.addOp(op{pub: pub, seq: p.N, id: p.ID, typ: p.Type, at: p.T})
	return nil
}

func (h *History) replayOutcome(p *posRecord) error {
	i, ok := h.byID[p.ID]
	if !ok {
		return p.errorf("%s of signal %s, never attempted", p.Op, p.ID)
	}
	o := &h.ops[i]
	if o.pub.name != p.Publisher || o.seq != p.N {
		return p.errorf("%s of signal %s as %s#%d, attempted as %s#%d", p.Op, p.ID, p.Publisher, p.N, o.pub.name, o.seq)
	}
	out := map[string]Outcome{RecordOK: Acked, RecordFail: Failed, RecordInfo: Info}[p.Op]
	var err error
	if p.Error != "" {
		err = errors.New(p.Error)
	}
	h.apply(o, out, err, p.T)
	return nil
}

func (h *History) replayDeliver(p *posRecord) error {
	for _, s := range h.subs {
		if s.name == p.Subscriber {
			if s.node != p.Node {
				return p.errorf("delivery to subscriber %q on node %q, subscribed on node %q", p.Subscriber, p.Node, s.node)
			}
			h.deliver(s, p.ID, p.T)
			return nil
		}
	}
	return p.errorf("delivery to subscriber %q, never subscribed", p.Subscriber)
}
