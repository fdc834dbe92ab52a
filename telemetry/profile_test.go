package telemetry

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// fakePyroscope is an in-test Pyroscope server: it parses each CPU
// profile uploaded to /ingest and keeps the span ids its samples carry.
type fakePyroscope struct {
	srv     *httptest.Server
	mu      sync.Mutex
	spanIDs map[string]string // span_id → span_name
	errs    []string
}

func newFakePyroscope(t *testing.T) *fakePyroscope {
	f := &fakePyroscope{spanIDs: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ingest" {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("units") != "samples" {
			return // not the CPU profile
		}
		f.record(r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakePyroscope) record(r *http.Request) {
	var body io.Reader = r.Body
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		file, _, err := r.FormFile("profile")
		if err != nil {
			f.fail("multipart without a profile part: " + err.Error())
			return
		}
		defer file.Close()
		body = file
	}
	p, err := profile.Parse(body)
	if err != nil {
		f.fail("unparsable pprof: " + err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range p.Sample {
		if ids := s.Label["span_id"]; len(ids) > 0 {
			f.spanIDs[ids[0]] = strings.Join(s.Label["span_name"], ",")
		}
	}
}

func (f *fakePyroscope) fail(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, msg)
}

func (f *fakePyroscope) spanName(id string) (string, bool, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name, ok := f.spanIDs[id]
	return name, ok, append([]string(nil), f.errs...)
}

// TestProfilesCarrySpanIDs: with Pyroscope on, CPU burnt inside a span
// reaches the server as a pprof profile whose samples carry the span's
// id and name.
func TestProfilesCarrySpanIDs(t *testing.T) {
	fake := newFakePyroscope(t)
	p := newProviders(t, Config{InstanceID: "prof", PyroscopeURL: fake.srv.URL, profileUploadRate: 200 * time.Millisecond})
	// The wrapped tracer labels this goroutine at Start.
	_, span := p.TracerProvider.Tracer("test").Start(context.Background(), "burn")
	defer span.End()
	id := span.SpanContext().SpanID().String()
	sum := sha256.Sum256(nil)
	deadline := time.Now().Add(60 * time.Second)
	for {
		for range 20000 {
			sum = sha256.Sum256(sum[:])
		}
		name, ok, errs := fake.spanName(id)
		if len(errs) > 0 {
			t.Fatalf("uploads: %v", errs)
		}
		if ok {
			if name != "burn" {
				t.Errorf("span_name = %q, want burn", name)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no uploaded CPU sample carries span_id %s", id)
		}
	}
}
