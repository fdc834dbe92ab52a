package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/chaos/scenario"
	"github.com/signalbus/signalbus/cluster"
	"github.com/signalbus/signalbus/telemetry"
)

const nodeUsage = `usage: signalbus node --name NAME [flags]

Runs one cluster node until SIGINT or SIGTERM: by default an embedded NATS
server (client --listen, routes on --cluster-listen to the --routes of its
peers, JetStream store in --data-dir), the node's bus on it, and HTTP on
--http with /metrics (Prometheus, OpenMetrics with exemplars), /healthz and
/readyz (200 once connected, the stream answers in durable mode and the node
is not partitioned). With --nats it runs no server and joins an existing
NATS deployment instead.

On the first signal it shuts down cleanly: it drains what it holds into the
bus and flushes its publishes (at most --shutdown-timeout), stops serving,
flushes the telemetry (at most --shutdown-timeout again) and exits 0. A
second signal exits at once, with code 130.

Example, the first of three nodes:

	signalbus node --name n1 --listen 127.0.0.1:4222 --cluster-listen 127.0.0.1:6222 \
	    --routes nats://127.0.0.1:6223,nats://127.0.0.1:6224 --data-dir /var/lib/signalbus/n1 \
	    --http 127.0.0.1:9464 --expected-size 3`

// NodeCommand runs a cluster node with its telemetry.
type NodeCommand struct {
	Stdout    io.Writer
	Stderr    io.Writer
	LookupEnv LookupEnv
	// afterStart, when set, is called with the node as soon as it has
	// started, before its --subscribe and canary subscriptions. Tests use
	// it.
	afterStart func(n *cluster.Node)
	// started, when set, is called with the node and the HTTP address once
	// both serve. Tests use it.
	started func(n *cluster.Node, httpAddr string)
}

// nodeConfig is what node's flags say.
type nodeConfig struct {
	name, natsURL, listen, clusterListen, clusterAdvertise string
	routes, subscribe                                      listValue
	dataDir, httpAddr, prefix, clusterName                 string
	mode, encoding                                         *choice
	expectedSize, replicas                                 int
	otlpEndpoint, otlpProtocol, pyroscopeURL               string
	otlpInsecure, pprof, noSync                            bool
	sampleRatio                                            float64
	shutdownTimeout                                        positiveDuration
	canaryInterval                                         time.Duration
	e2e                                                    e2eFlags
	log                                                    logFlags
}

// e2eFlags run the chaos harness's agent in the node (see package
// chaos/scenario): the service a user would embed, which publishes
// through the node and records every attempt, outcome and delivery.
type e2eFlags struct {
	record      string
	rate        float64
	slowHandler time.Duration
}

func (cfg *nodeConfig) register(fs *flag.FlagSet) {
	cfg.mode = newChoice("durable", "durable", "fast")
	cfg.encoding = newChoice("binary", "binary", "protobuf-batch")
	cfg.shutdownTimeout = positiveDuration(30 * time.Second)
	fs.StringVar(&cfg.name, "name", "", "node `name`, unique in the cluster and stable across restarts: 1-64 of [A-Za-z0-9_-] (required)")
	fs.StringVar(&cfg.natsURL, "nats", "", "external NATS `URL`s, comma-separated: run no embedded server")
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:4222", "embedded server's client `address` (port 0 picks one)")
	fs.StringVar(&cfg.clusterListen, "cluster-listen", "", "embedded server's route `address`; empty: a standalone server")
	fs.StringVar(&cfg.clusterAdvertise, "cluster-advertise", "", "route `address` told to peers (behind NAT or in a container)")
	fs.Var(&cfg.routes, "routes", "peers' route `URLs`, comma-separated (nats://host:port)")
	fs.StringVar(&cfg.dataDir, "data-dir", "", "JetStream store `directory`; empty: a temporary one, removed on exit")
	fs.StringVar(&cfg.httpAddr, "http", "127.0.0.1:9464", "`address` of /metrics, /healthz and /readyz (port 0 picks one)")
	fs.Var(cfg.mode, "mode", "durable (JetStream, acknowledged, deduplicated) or fast (core NATS, at most once)")
	fs.Var(cfg.encoding, "encoding", "binary (one message per signal) or protobuf-batch (one per batch)")
	fs.IntVar(&cfg.expectedSize, "expected-size", 0, "nodes in a healthy cluster, for partition detection and the stream's replicas")
	fs.IntVar(&cfg.replicas, "replicas", 0, "stream replicas in durable mode; 0: min(3, --expected-size)")
	fs.StringVar(&cfg.prefix, "prefix", "", "subject prefix: signals travel on <prefix>.<type> (default signals)")
	fs.StringVar(&cfg.clusterName, "cluster-name", "", "NATS cluster name of the embedded servers (default signalbus)")
	fs.BoolVar(&cfg.noSync, "no-sync", false, "acknowledge stored signals before they are fsynced")
	fs.StringVar(&cfg.otlpEndpoint, "otlp-endpoint", "", "OTLP trace `endpoint` (http://host:4318); empty: the OTEL_EXPORTER_OTLP_* variables decide")
	fs.StringVar(&cfg.otlpProtocol, "otlp-protocol", "", "OTLP protocol: http/protobuf or grpc (default http/protobuf)")
	fs.BoolVar(&cfg.otlpInsecure, "otlp-insecure", false, "OTLP without TLS")
	fs.Float64Var(&cfg.sampleRatio, "sample-ratio", 0, "share of new traces sampled, 0-1; 0: all, negative: none")
	fs.StringVar(&cfg.pyroscopeURL, "pyroscope-url", "", "Pyroscope server `URL` for continuous profiling; empty: off")
	fs.BoolVar(&cfg.pprof, "pprof", false, "serve /debug/pprof on --http")
	fs.Var(&cfg.shutdownTimeout, "shutdown-timeout", "how long each step of the clean shutdown may take: the drain, the telemetry flush")
	fs.DurationVar(&cfg.canaryInterval, "canary-interval", 0, "publish a "+canaryType+" signal through the node's bus this often and subscribe to every node's, so that publish and delivery are measured end to end with no application; 0: off")
	fs.Var(&cfg.subscribe, "subscribe", "`patterns`, comma-separated, the node itself subscribes to: each signal is logged at debug level and counted in the delivery metrics (a sink for trying a cluster out)")
	fs.StringVar(&cfg.e2e.record, "e2e-record", "", "for make e2e: run the chaos agent, recording to this `file` (appended to across restarts); empty: off")
	fs.Float64Var(&cfg.e2e.rate, "e2e-rate", 0, "for make e2e: signals per second the agent publishes once ordered (default 40)")
	fs.DurationVar(&cfg.e2e.slowHandler, "e2e-slow-handler", 0, "for make e2e: how long the agent's handler takes per signal")
	cfg.log.register(fs)
}

// clusterConfig maps the flags to a cluster.Config and checks the others,
// so that every usage error comes before anything starts; fs says which
// flags were given, since --nats excludes the embedded server's flags.
func (cfg *nodeConfig) clusterConfig(fs *flag.FlagSet) (cluster.Config, error) {
	if cfg.name == "" {
		return cluster.Config{}, usageErrorf("node: --name is required (see 'signalbus help node')")
	}
	c := cluster.Config{
		Name: cfg.name, NATSURL: cfg.natsURL, Listen: cfg.listen, ClusterListen: cfg.clusterListen,
		ClusterAdvertise: cfg.clusterAdvertise, Routes: cfg.routes, DataDir: cfg.dataDir,
		ExpectedSize: cfg.expectedSize, Replicas: cfg.replicas, Prefix: cfg.prefix,
		ClusterName: cfg.clusterName, NoSync: cfg.noSync,
	}
	if cfg.mode.value == "fast" {
		c.Mode = cluster.Fast
	}
	if cfg.encoding.value == "protobuf-batch" {
		c.Encoding = cluster.ProtobufBatch
	}
	if cfg.natsURL != "" {
		for _, name := range []string{"listen", "cluster-listen", "cluster-advertise", "routes", "data-dir"} {
			if isSet(fs, name) {
				return cluster.Config{}, usageErrorf("node: --%s is for the embedded server; --nats runs none", name)
			}
		}
		c.Listen = ""
	}
	if err := c.Validate(); err != nil {
		var cerr *cluster.ConfigError
		if errors.As(err, &cerr) {
			return cluster.Config{}, usageErrorf("node: --%s %q: %w", flagOfField(cerr.Field), fmt.Sprint(cerr.Value), cerr.Err)
		}
		return cluster.Config{}, usageErrorf("node: %w", err)
	}
	if cfg.sampleRatio > 1 {
		return cluster.Config{}, usageErrorf("node: --sample-ratio %v: must be at most 1", cfg.sampleRatio)
	}
	if cfg.e2e.rate < 0 || cfg.e2e.slowHandler < 0 {
		return cluster.Config{}, usageErrorf("node: --e2e-rate and --e2e-slow-handler must not be negative")
	}
	if cfg.canaryInterval < 0 {
		return cluster.Config{}, usageErrorf("node: --canary-interval %v: must not be negative", cfg.canaryInterval)
	}
	// Before any server starts: a pattern the bus refuses is a usage error.
	for _, pattern := range cfg.subscribe {
		if err := bus.ValidatePattern(pattern); err != nil {
			return cluster.Config{}, usageErrorf("node: --subscribe: %w", err)
		}
	}
	return c, nil
}

// flagOfField names the flag of a cluster.Config field.
func flagOfField(field string) string {
	switch field {
	case "Name":
		return "name"
	case "NATSURL":
		return "nats"
	case "Listen":
		return "listen"
	case "ClusterListen":
		return "cluster-listen"
	case "ClusterAdvertise":
		return "cluster-advertise"
	case "Routes":
		return "routes"
	case "DataDir":
		return "data-dir"
	case "ExpectedSize":
		return "expected-size"
	case "Replicas":
		return "replicas"
	case "Prefix":
		return "prefix"
	}
	return field
}

// checkDataDir makes dir and checks it takes a file, so that an
// unwritable store is one clear error before any server starts.
func checkDataDir(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".signalbus-write-check-*")
	if err != nil {
		return fmt.Errorf("--data-dir %s is not writable: %w", dir, err)
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(filepath.Clean(name))
}

// Run parses the flags and runs the node until ctx ends; see nodeUsage.
func (c *NodeCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("node", c.Stderr, nodeUsage)
	var cfg nodeConfig
	cfg.register(fs)
	positional, err := parseArgs(fs, args, c.LookupEnv)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return usageErrorf("node: unexpected argument %q (see 'signalbus help node')", positional[0])
	}
	ccfg, err := cfg.clusterConfig(fs)
	if err != nil {
		return err
	}
	logger := cfg.log.logger(c.Stderr).With("node", cfg.name)
	ccfg.Logger = logger
	if err := checkDataDir(ccfg.DataDir); err != nil {
		return fmt.Errorf("node: %w", err)
	}

	reg := prometheus.NewRegistry()
	shutdownTelemetry, err := telemetry.Setup(ctx, telemetry.Config{
		InstanceID: cfg.name, ServiceVersion: version(), Registry: reg, OTLPEndpoint: cfg.otlpEndpoint, OTLPProtocol: cfg.otlpProtocol,
		OTLPInsecure: cfg.otlpInsecure, SampleRatio: cfg.sampleRatio, PyroscopeURL: cfg.pyroscopeURL, Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("node: telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(cfg.shutdownTimeout))
		defer cancel()
		if err := shutdownTelemetry(sctx); err != nil {
			logger.Warn("telemetry shutdown", "error", err)
		}
	}()

	// HTTP first: a port in use is reported before NATS starts, and
	// /healthz answers while the node starts.
	var node atomic.Pointer[cluster.Node]
	srv, err := telemetry.Serve(telemetry.ServerConfig{
		Addr: cfg.httpAddr, Gatherer: reg, Pprof: cfg.pprof, Logger: logger,
		Ready: func(ctx context.Context) map[string]error {
			n := node.Load()
			if n == nil {
				return map[string]error{"node": errors.New("starting")}
			}
			return n.Readiness(ctx)
		},
	})
	if err != nil {
		return fmt.Errorf("node: --http %s: %w", cfg.httpAddr, err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Close(sctx)
	}()

	n, err := cluster.Start(ctx, ccfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while starting: nothing to shut down
		}
		return fmt.Errorf("node: start: %w", err)
	}
	if c.afterStart != nil {
		c.afterStart(n)
	}
	if err := subscribeSinks(n.Bus(), &cfg, logger); err != nil {
		// The node is up: it is closed before the error is reported.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(cfg.shutdownTimeout))
		defer cancel()
		if cerr := n.Close(cctx); cerr != nil {
			logger.Warn("close after a failed start", "error", cerr)
		}
		return fmt.Errorf("node: %w", err)
	}
	var agent *scenario.Agent
	if cfg.e2e.record != "" {
		agent, err = scenario.StartAgent(ctx, n, scenario.AgentConfig{
			Node: cfg.name, Record: cfg.e2e.record, Rate: cfg.e2e.rate, SlowHandler: cfg.e2e.slowHandler, Logger: logger,
		})
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(cfg.shutdownTimeout))
			defer cancel()
			if cerr := n.Close(cctx); cerr != nil {
				logger.Warn("close after a failed start", "error", cerr)
			}
			return fmt.Errorf("node: --e2e-record: %w", err)
		}
	}
	var canaryDone chan struct{}
	if cfg.canaryInterval > 0 {
		canaryDone = make(chan struct{})
		go func() {
			defer close(canaryDone)
			runCanary(ctx, n.Bus(), "/signalbus/node/"+cfg.name, cfg.canaryInterval, logger)
		}()
	}
	node.Store(n)
	base := "http://" + srv.Addr()
	attrs := []any{"version", version(), "mode", cfg.mode.value, "metrics", base + "/metrics", "ready", base + "/readyz", "health", base + "/healthz"}
	if u := n.ClientURL(); u != "" {
		attrs = append(attrs, "nats", u)
	} else {
		attrs = append(attrs, "nats", cfg.natsURL)
	}
	if cfg.pprof {
		attrs = append(attrs, "pprof", base+"/debug/pprof/")
	}
	logger.Info("node started", attrs...)
	if c.started != nil {
		c.started(n, srv.Addr())
	}

	<-ctx.Done()
	if canaryDone != nil {
		<-canaryDone // no canary publish races the close
	}
	logger.Info("shutting down", "timeout", time.Duration(cfg.shutdownTimeout))
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(cfg.shutdownTimeout))
	defer cancel()
	if agent != nil {
		if err := agent.Close(closeCtx); err != nil {
			logger.Warn("e2e agent close", "error", err)
		}
	}
	if err := n.Close(closeCtx); err != nil {
		return fmt.Errorf("node: close: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// subscribeSinks makes the node's own subscriptions: one per --subscribe
// pattern and, with --canary-interval, one to the canary signals.
func subscribeSinks(b *bus.Bus, cfg *nodeConfig, logger *slog.Logger) error {
	for _, pattern := range cfg.subscribe {
		if _, err := b.Subscribe(pattern, sinkHandler(logger)); err != nil {
			return fmt.Errorf("--subscribe %q: %w", pattern, err)
		}
	}
	if cfg.canaryInterval > 0 {
		if _, err := b.Subscribe(canaryType, sinkHandler(logger)); err != nil {
			return fmt.Errorf("canary: %w", err)
		}
	}
	return nil
}

// sinkHandler is the handler of --subscribe: it takes every signal, so
// that the delivery path and its metrics can be watched without an
// application.
func sinkHandler(logger *slog.Logger) bus.HandlerFunc {
	return func(ctx context.Context, s bus.Signal) error {
		logger.DebugContext(ctx, "signal", "type", s.Type, "id", s.ID, "source", s.Source)
		return nil
	}
}

// canaryType is the type of the signals --canary-interval publishes.
const canaryType = "signalbus.canary"

// runCanary publishes one canary signal every interval until ctx ends. A
// failed publish is logged and the next tick tries again: the canary is a
// probe, and its failures show in the publish error metrics.
func runCanary(ctx context.Context, b *bus.Bus, source string, interval time.Duration, logger *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sig, err := bus.NewSignal(canaryType, source, nil)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, max(interval, 5*time.Second))
			err = b.Publish(pctx, sig)
			cancel()
		}
		if err != nil && ctx.Err() == nil {
			logger.Warn("canary publish failed", "error", err)
		}
	}
}
