package telemetry_test

import (
	"context"
	"fmt"
	"net/http"

	"github.com/signalbus/signalbus/telemetry"
)

// A node's process installs the SDK once, then serves /metrics and the
// health endpoints on one listener.
func Example() {
	ctx := context.Background()
	p, err := telemetry.New(ctx, telemetry.Config{InstanceID: "n1", SampleRatio: 0.01})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Shutdown(ctx)
	// Give p.MeterProvider, p.TracerProvider and p.Propagator to the node
	// (cluster.Config and bus options), or call telemetry.Setup instead
	// to install them as the OpenTelemetry globals.

	srv, err := telemetry.Serve(telemetry.ServerConfig{Addr: "127.0.0.1:0", Gatherer: p.Registry})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close(ctx)
	resp, err := http.Get("http://" + srv.Addr() + "/healthz")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}
