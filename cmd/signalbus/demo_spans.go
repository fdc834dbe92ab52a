package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

const (
	keptTraces       = 100 // traces the span keeper holds on to
	maxSpansPerTrace = 64
	exportedSpans    = 3 // spans printed with stdouttrace

	attrAttempt    = attribute.Key("signalbus.attempt")
	attrBatchCount = attribute.Key("messaging.batch.message_count")
	attrErrorType  = attribute.Key("error.type")
	attrCESubject  = attribute.Key("cloudevents.event_subject")
)

// spanKeeper is a SpanProcessor that keeps the ended spans of the first
// keptTraces traces it sees and drops the rest, so the demo can sample every
// span and still hold a few kilobytes. A trace here is one Publish call and
// the handler runs it caused.
type spanKeeper struct {
	mu      sync.Mutex
	traces  map[trace.TraceID][]sdktrace.ReadOnlySpan
	order   []trace.TraceID // in the order first seen
	dropped int64
}

var _ sdktrace.SpanProcessor = (*spanKeeper)(nil)

func newSpanKeeper() *spanKeeper {
	return &spanKeeper{traces: make(map[trace.TraceID][]sdktrace.ReadOnlySpan)}
}

func (k *spanKeeper) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (k *spanKeeper) Shutdown(context.Context) error                  { return nil }
func (k *spanKeeper) ForceFlush(context.Context) error                { return nil }

// OnEnd keeps s if its trace is kept. The SDK hands each processor its own
// snapshot of the span, so keeping it is safe.
func (k *spanKeeper) OnEnd(s sdktrace.ReadOnlySpan) {
	id := s.SpanContext().TraceID()
	k.mu.Lock()
	defer k.mu.Unlock()
	spans, ok := k.traces[id]
	switch {
	case ok && len(spans) < maxSpansPerTrace:
		k.traces[id] = append(spans, s)
	case !ok && len(k.order) < keptTraces:
		k.traces[id] = []sdktrace.ReadOnlySpan{s}
		k.order = append(k.order, id)
	default:
		k.dropped++
	}
}

// keptTrace is one trace laid out as its send span and the process spans
// that are its children, oldest first.
type keptTrace struct {
	send     sdktrace.ReadOnlySpan
	children []sdktrace.ReadOnlySpan
}

// pick returns the most telling kept trace: a single-signal publish whose
// handler failed and then succeeded on a retry, else one with any failed
// handler run, else the first with a send span.
func (k *spanKeeper) pick() (keptTrace, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var withFailure, first keptTrace
	for _, id := range k.order {
		t, ok := layout(k.traces[id])
		if !ok {
			continue
		}
		if first.send == nil {
			first = t
		}
		failed := slices.IndexFunc(t.children, isFailed)
		if failed < 0 {
			continue
		}
		if withFailure.send == nil {
			withFailure = t
		}
		if _, batch := attr(t.send, attrBatchCount); !batch && retriedOK(t, failed) {
			return t, true
		}
	}
	if withFailure.send != nil {
		return withFailure, true
	}
	return first, first.send != nil
}

func layout(spans []sdktrace.ReadOnlySpan) (keptTrace, bool) {
	var t keptTrace
	for _, s := range spans {
		if s.SpanKind() == trace.SpanKindProducer {
			t.send = s
			break
		}
	}
	if t.send == nil {
		return t, false
	}
	for _, s := range spans {
		if s.Parent().SpanID() == t.send.SpanContext().SpanID() {
			t.children = append(t.children, s)
		}
	}
	slices.SortFunc(t.children, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	return t, true
}

func isFailed(s sdktrace.ReadOnlySpan) bool { return s.Status().Code == codes.Error }

// retriedOK reports whether the failed child at index failed was followed
// by a successful run of the same subscription.
func retriedOK(t keptTrace, failed int) bool {
	sub, _ := attr(t.children[failed], attrSubscription)
	for _, c := range t.children[failed+1:] {
		if s, _ := attr(c, attrSubscription); s == sub && !isFailed(c) {
			return true
		}
	}
	return false
}

// exportSet returns the spans to print in full: the send span, the first
// failed run, and the retry that followed it (or another run).
func (t keptTrace) exportSet() []sdktrace.ReadOnlySpan {
	out := []sdktrace.ReadOnlySpan{t.send}
	failed := slices.IndexFunc(t.children, isFailed)
	if failed >= 0 {
		out = append(out, t.children[failed])
		sub, _ := attr(t.children[failed], attrSubscription)
		for _, c := range t.children[failed+1:] {
			if s, _ := attr(c, attrSubscription); s == sub {
				out = append(out, c)
				break
			}
		}
	}
	for _, c := range t.children {
		if len(out) >= exportedSpans {
			break
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key attribute.Key) (string, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value.Emit(), true
		}
	}
	return "", false
}

// printSpans prints the picked trace as a tree, then a few of its spans in
// full with the stdouttrace exporter.
func printSpans(ctx context.Context, w io.Writer, k *spanKeeper) error {
	t, ok := k.pick()
	if !ok {
		fmt.Fprintln(w, "\nspans: none kept")
		return nil
	}
	fmt.Fprintf(w, "\nspans: one Publish call and the handler runs it caused (trace %s)\n", t.send.SpanContext().TraceID())
	fmt.Fprintf(w, "  %-24s %-10s %s\n", t.send.Name(), "producer", spanDetail(t.send))
	for _, c := range t.children {
		sub, _ := attr(c, attrSubscription)
		fmt.Fprintf(w, "    %-22s %-10s %s\n", c.Name(), sub, spanDetail(c))
	}
	spans := t.exportSet()
	fmt.Fprintf(w, "\n%d of them as the stdouttrace exporter writes them:\n", len(spans))
	exp, err := stdouttrace.New(stdouttrace.WithWriter(w), stdouttrace.WithPrettyPrint())
	if err != nil {
		return fmt.Errorf("stdouttrace: %w", err)
	}
	if err := exp.ExportSpans(ctx, spans); err != nil {
		return fmt.Errorf("export spans: %w", err)
	}
	return exp.Shutdown(ctx)
}

// spanDetail is the one-line summary of a span in the tree.
func spanDetail(s sdktrace.ReadOnlySpan) string {
	d := fmt.Sprintf("%8s", s.EndTime().Sub(s.StartTime()).Round(time.Microsecond/10))
	if n, ok := attr(s, attrBatchCount); ok {
		d += "  batch of " + n
	} else if id, ok := attr(s, attrCESubject); ok {
		d += "  " + id
	}
	if a, ok := attr(s, attrAttempt); ok {
		d += "  attempt " + a
	}
	if isFailed(s) {
		et, _ := attr(s, attrErrorType)
		d += fmt.Sprintf("  ERROR %s: %s", et, s.Status().Description)
	}
	return d
}
