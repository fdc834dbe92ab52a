package dispatch_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/bus/dispatch"
)

// waitTimeout bounds every wait for something another goroutine does. It is
// a deadline for failure, never a sleep: tests proceed as soon as the event
// happens.
const waitTimeout = 10 * time.Second

// quietLogger drops the bus's own log lines (dead letters, retries).
var quietLogger = slog.New(slog.DiscardHandler)

// newBus returns a bus closed when the test ends.
func newBus(t *testing.T, opts ...bus.Option) *bus.Bus {
	t.Helper()
	b, err := bus.New(append([]bus.Option{bus.WithLogger(quietLogger)}, opts...)...)
	if err != nil {
		t.Fatalf("bus.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("bus.Close: %v", err)
		}
	})
	return b
}

// newSignal returns a valid signal with data, a subject and an extension,
// so that round trips exercise every kind of attribute.
func newSignal(t testing.TB, subject string) bus.Signal {
	t.Helper()
	s, err := bus.NewSignal("order.created", "/shop", map[string]any{"order": subject, "total": 42},
		bus.WithSubject(subject), bus.WithExtension("tenant", "acme"))
	if err != nil {
		t.Fatalf("NewSignal: %v", err)
	}
	return s
}

// sameSignal fails the test unless got carries every attribute of want.
// Times are compared with Equal: a JSON round trip loses the monotonic
// reading and the location.
func sameSignal(t *testing.T, got, want bus.Signal) {
	t.Helper()
	if got.ID != want.ID || got.Source != want.Source || got.Type != want.Type ||
		got.Subject != want.Subject || got.DataContentType != want.DataContentType ||
		got.DataSchema != want.DataSchema {
		t.Errorf("signal attributes:\n got %+v\nwant %+v", got, want)
	}
	if got.SpecVersion != bus.SpecVersion {
		t.Errorf("specversion = %q, want %q", got.SpecVersion, bus.SpecVersion)
	}
	if !got.Time.Equal(want.Time) {
		t.Errorf("time = %v, want %v", got.Time, want.Time)
	}
	if !bytes.Equal(got.Data, want.Data) {
		t.Errorf("data = %s, want %s", got.Data, want.Data)
	}
	if !maps.Equal(got.Extensions, want.Extensions) {
		t.Errorf("extensions = %v, want %v", got.Extensions, want.Extensions)
	}
}

// recv returns the next value from ch, failing the test after waitTimeout.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("nothing received within %v", waitTimeout)
		panic("unreachable")
	}
}

// request is what a hookServer received.
type request struct {
	method string
	path   string
	header http.Header
	body   []byte
}

// hookServer is a webhook endpoint for tests. It counts requests, passes
// each to the test on got, and answers with what respond says.
type hookServer struct {
	*httptest.Server
	requests atomic.Int64
	got      chan request
}

// newHookServer starts a hookServer, closed when the test ends. respond
// gets the 1-based number of the request; nil answers 204.
func newHookServer(t *testing.T, respond func(n int64, w http.ResponseWriter, r *http.Request)) *hookServer {
	t.Helper()
	hs := &hookServer{got: make(chan request, 64)}
	hs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hs.requests.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case hs.got <- request{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body}:
		default: // the test does not look at every request
		}
		if respond == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		respond(n, w, r)
	}))
	t.Cleanup(func() {
		hs.Close() // waits for handlers; closes idle client connections
		hs.Client().CloseIdleConnections()
	})
	return hs
}

// status answers every request with code.
func status(code int) func(int64, http.ResponseWriter, *http.Request) {
	return func(_ int64, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

// newWebhook returns a Webhook posting to hs with hs's client.
func newWebhook(t *testing.T, hs *hookServer, opts ...dispatch.WebhookOption) *dispatch.Webhook {
	t.Helper()
	w, err := dispatch.NewWebhook(hs.URL+"/hook", append([]dispatch.WebhookOption{dispatch.WithHTTPClient(hs.Client())}, opts...)...)
	if err != nil {
		t.Fatalf("NewWebhook: %v", err)
	}
	return w
}
