package telemetry

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/signalbus/signalbus/bus"
)

// receivedSpan is one span an OTLP receiver got, with its resource.
type receivedSpan struct {
	name, traceID, instance, service string
	kind                             tracepb.Span_SpanKind
}

// otlpReceiver is an in-test OTLP/HTTP trace endpoint.
type otlpReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []receivedSpan
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a protobuf POST to /v1/traces", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(req.Body)
		var msg collectortrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &msg)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range msg.GetResourceSpans() {
			attrs := map[string]string{}
			for _, kv := range rs.GetResource().GetAttributes() {
				attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					r.spans = append(r.spans, receivedSpan{name: s.GetName(), traceID: hex.EncodeToString(s.GetTraceId()),
						instance: attrs["service.instance.id"], service: attrs["service.name"], kind: s.GetKind()})
				}
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *otlpReceiver) find(match func(receivedSpan) bool) (receivedSpan, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.spans {
		if match(s) {
			return s, true
		}
	}
	return receivedSpan{}, false
}

// TestOneTraceAcrossNodes: a signal published on node a and handled on
// node b gives one trace: a's send span and b's process span reach the
// OTLP receiver under the same trace id, each with its node's resource.
func TestOneTraceAcrossNodes(t *testing.T) {
	recv := newOTLPReceiver(t)
	cfg := func(name string) Config {
		return Config{ServiceName: "orders", InstanceID: name, OTLPEndpoint: recv.srv.URL}
	}
	pa, pb := newProviders(t, cfg("a")), newProviders(t, cfg("b"))
	a, b := startPair(t, pa, pb)

	handled := make(chan string, 1)
	if _, err := b.Bus().Subscribe("order.created", bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
		if s.Source == "/cross" {
			select {
			case handled <- s.ID:
			default:
			}
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	sig, err := bus.NewSignal("order.created", "/cross", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Bus().Publish(context.Background(), sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-time.After(30 * time.Second):
		t.Fatal("node b never handled the signal")
	}
	// Shutdown flushes the batch span processors.
	for _, p := range []*Providers{pa, pb} {
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	send, ok := recv.find(func(s receivedSpan) bool {
		return s.name == "send order.created" && s.instance == "a"
	})
	if !ok {
		t.Fatalf("no send span from node a; got %v", recv.spans)
	}
	if send.service != "orders" || send.kind != tracepb.Span_SPAN_KIND_PRODUCER {
		t.Errorf("send span: service %q kind %v, want orders, producer", send.service, send.kind)
	}
	process, ok := recv.find(func(s receivedSpan) bool {
		return s.name == "process order.created" && s.instance == "b" && s.traceID == send.traceID
	})
	if !ok {
		t.Fatalf("no process span from node b in trace %s; got %v", send.traceID, recv.spans)
	}
	if process.service != "orders" || process.kind != tracepb.Span_SPAN_KIND_CONSUMER {
		t.Errorf("process span: service %q kind %v, want orders, consumer", process.service, process.kind)
	}
}

// TestNeverSample: a negative SampleRatio samples no new trace.
func TestNeverSample(t *testing.T) {
	p := newProviders(t, Config{SampleRatio: -1})
	_, span := p.TracerProvider.Tracer("test").Start(context.Background(), "x")
	defer span.End()
	if span.SpanContext().IsSampled() {
		t.Fatal("SampleRatio -1 sampled a root span")
	}
	p1 := newProviders(t, Config{})
	_, span1 := p1.TracerProvider.Tracer("test").Start(context.Background(), "x")
	defer span1.End()
	if !span1.SpanContext().IsSampled() {
		t.Fatal("the default SampleRatio did not sample a root span")
	}
}

type grpcTraces struct {
	collectortrace.UnimplementedTraceServiceServer
	got chan string
}

func (g *grpcTraces) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				select {
				case g.got <- s.GetName():
				default:
				}
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// TestGRPCExport: OTLPProtocol grpc sends spans to a gRPC collector.
func TestGRPCExport(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	recv := &grpcTraces{got: make(chan string, 16)}
	collectortrace.RegisterTraceServiceServer(gs, recv)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-served })

	p := newProviders(t, Config{OTLPEndpoint: ln.Addr().String(), OTLPProtocol: ProtocolGRPC, OTLPInsecure: true})
	_, span := p.TracerProvider.Tracer("test").Start(context.Background(), "over-grpc")
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case name := <-recv.got:
		if name != "over-grpc" {
			t.Fatalf("span %q, want over-grpc", name)
		}
	default:
		t.Fatal("Shutdown returned before the span reached the gRPC collector")
	}
}

// TestEndpointFromEnvironment: with no OTLPEndpoint, the standard
// variable decides where spans go.
func TestEndpointFromEnvironment(t *testing.T) {
	recv := newOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.srv.URL)
	p := newProviders(t, Config{InstanceID: "env"})
	_, span := p.TracerProvider.Tracer("test").Start(context.Background(), "from-env")
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := recv.find(func(s receivedSpan) bool { return s.name == "from-env" && s.instance == "env" }); !ok {
		t.Fatalf("no span at the endpoint from OTEL_EXPORTER_OTLP_ENDPOINT; got %v", recv.spans)
	}
}
