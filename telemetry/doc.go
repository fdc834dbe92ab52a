// Package telemetry wires the OpenTelemetry SDK for a signalbus node:
// a meter provider exported to Prometheus on its own registry (with Go
// runtime and process metrics), a tracer provider exporting over OTLP
// with a parent-based ratio sampler, the W3C propagator, Pyroscope
// profiling linked to spans, and one HTTP listener for /metrics,
// /healthz, /readyz and, when asked, /debug/pprof.
//
// The bus and cluster packages use only the OpenTelemetry API; this is
// the package that installs an SDK behind it. Setup installs the
// providers as the process's globals; New builds them without touching
// the globals, for a process that runs several nodes.
package telemetry
