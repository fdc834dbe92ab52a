package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/cluster"
	"github.com/signalbus/signalbus/internal/faultproxy"
	"github.com/signalbus/signalbus/internal/ports"
	"github.com/signalbus/signalbus/loadtest"
	"github.com/signalbus/signalbus/telemetry"
)

const (
	clusterNodes = 3
	// gossipAdvertise is the route address every demo server advertises:
	// one nats-server never dials (it resolves to itself), so no peer
	// learns a real cluster port from route gossip and every route stays
	// on the fault proxies. See package clustertest.
	gossipAdvertise    = "localhost:1"
	demoPattern        = "order.**"
	demoTick           = 20 * time.Millisecond // publishers publish what is due this often
	demoPublishTimeout = time.Second           // a synchronous publish that takes longer is left waiting; the next go to the outbox
	demoReadyTimeout   = 45 * time.Second      // for the cluster to form
	demoCloseTimeout   = 15 * time.Second
)

// ClusterDemoCommand runs a three-node durable cluster in this process,
// isolates one node for a while, and judges, from a history of every
// publish and delivery, whether any acknowledged signal was lost,
// duplicated or reordered.
type ClusterDemoCommand struct {
	Stdout io.Writer // the story and the verdict
	Stderr io.Writer // usage and the first few node warnings
	// LookupEnv reads the flags' SIGNALBUS_* variables; nil is
	// os.LookupEnv.
	LookupEnv LookupEnv

	Rate         int           // signals per second, over the three nodes
	Duration     time.Duration // how long to publish
	IsolateAt    time.Duration // when, after publishing starts, to isolate a node
	IsolateFor   time.Duration // how long it stays isolated; 0: no isolation
	DrainTimeout time.Duration // how long to wait, once publishing stops, for every acked signal to arrive
	HTTPBasePort int           // node i serves /metrics on 127.0.0.1:HTTPBasePort+i; 0: free ports
	Seed         uint64
}

const clusterDemoUsage = `usage: signalbus demo [flags]

Starts three signalbus nodes in this process (n1, n2, n3), each with its
embedded nats-server on loopback, clustered by routes that all pass
through fault proxies, in durable mode with a three-replica stream. Every
node publishes order signals (order.created, order.paid, order.shipped,
order.cancelled) and subscribes to order.**, recording every publish and
delivery. After --isolate-at, n3 is cut off from the other two for
--isolate-for, then healed. Publishes go synchronously to the stream; a
node that is partitioned, or whose publish times out, hands them to its
outbox (PublishAsync), which sends them once the cluster is back.

Every second it prints the publish rate, the p99 latency from publish to
handler, the members each node sees up, who is partitioned, each node's
outbox depth, dedup hits and signals held back to restore order. When
publishing ends it waits for every acknowledged signal to arrive, prints
the verdict (published, acked, delivered per node, lost, duplicated,
reordered) and exits non-zero if anything was lost, duplicated or
reordered. Each node serves /metrics, /healthz and /readyz meanwhile.

The in-process bus demo (one bus, retries, dead letters, replay, spans)
is 'signalbus demo --local'.`

// Run parses the flags and runs the demo. It returns once the nodes are
// closed: an error when the cluster could not start, or when the verdict
// finds a signal lost, duplicated or reordered. An interrupt (ctx ending)
// stops the publishing early and still gives the verdict.
func (c *ClusterDemoCommand) Run(ctx context.Context, args []string) error {
	err := parseDemoFlags(args, c.Stderr, c.LookupEnv, clusterDemoUsage, false, func(fs *flag.FlagSet) {
		fs.IntVar(&c.Rate, "rate", 300, "signals to publish per second, over the three nodes")
		fs.DurationVar(&c.Duration, "duration", 16*time.Second, "how long to publish")
		fs.DurationVar(&c.IsolateAt, "isolate-at", 4*time.Second, "when, after publishing starts, to isolate n3")
		fs.DurationVar(&c.IsolateFor, "isolate-for", 8*time.Second, "how long n3 stays isolated (0: no isolation)")
		fs.DurationVar(&c.DrainTimeout, "drain-timeout", 10*time.Second, "how long to wait for every acked signal once publishing stops")
		fs.IntVar(&c.HTTPBasePort, "http-base-port", 0, "serve node i's /metrics on 127.0.0.1:<port+i-1> (0: free ports, printed)")
		fs.Uint64Var(&c.Seed, "seed", 1, "seed of the order streams")
	})
	if err == nil {
		err = checkPace(c.Rate, 100_000, c.Duration)
	}
	if err != nil {
		return err
	}
	switch {
	case c.IsolateAt < 0:
		return usageErrorf("demo: --isolate-at %v is negative", c.IsolateAt)
	case c.IsolateFor < 0:
		return usageErrorf("demo: --isolate-for %v is negative", c.IsolateFor)
	case c.IsolateFor > 0 && c.IsolateAt+c.IsolateFor > c.Duration:
		return usageErrorf("demo: --isolate-at %v + --isolate-for %v ends after --duration %v: the heal must come while publishing",
			c.IsolateAt, c.IsolateFor, c.Duration)
	case c.DrainTimeout <= 0:
		return usageErrorf("demo: --drain-timeout %v is not positive", c.DrainTimeout)
	case c.HTTPBasePort < 0 || c.HTTPBasePort > 65535-clusterNodes:
		return usageErrorf("demo: --http-base-port %d is outside 0…%d", c.HTTPBasePort, 65535-clusterNodes)
	}
	return c.run(ctx)
}

// parseDemoFlags parses the flags of a demo, as newFlagSet and parseFlags
// do every command's: --local, which picks the demo (local says whether
// this is the in-process one; see isLocalDemo), and those register adds.
func parseDemoFlags(args []string, stderr io.Writer, lookup LookupEnv, usage string, local bool, register func(fs *flag.FlagSet)) error {
	fs := newFlagSet("demo", stderr, usage)
	if local {
		fs.Bool("local", true, "run this in-process bus demo (without it: the three-node cluster demo)")
	} else {
		fs.Bool("local", false, "run the in-process bus demo instead (see 'signalbus demo --local -h')")
	}
	register(fs)
	return parseFlags(fs, args, lookup)
}

// checkPace checks the --rate and --duration both demos have.
func checkPace(rate, maxRate int, duration time.Duration) error {
	switch {
	case rate < 1 || rate > maxRate:
		return usageErrorf("demo: --rate %d is outside 1…%d", rate, maxRate)
	case duration <= 0:
		return usageErrorf("demo: --duration %v is not positive", duration)
	}
	return nil
}

// isLocalDemo reports whether args ask for the in-process demo: a -local
// or --local flag (true unless given =false) before any "--", or, with
// none, SIGNALBUS_LOCAL read with lookup (nil: os.LookupEnv) set true. A
// variable that is no bool picks the cluster demo, whose flags report it.
func isLocalDemo(args []string, lookup LookupEnv) bool {
	local, given := false, false
	for _, a := range args {
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "local" {
			continue
		}
		local, given = true, true
		if hasValue {
			local, _ = strconv.ParseBool(value)
		}
	}
	if given {
		return local
	}
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if v, ok := lookup(envName("local")); ok {
		local, _ = strconv.ParseBool(v)
	}
	return local
}

// clusterDemo is the state of one run.
type clusterDemo struct {
	cmd     *ClusterDemoCommand
	out     io.Writer
	logger  *slog.Logger
	warns   *sampledHandler
	hist    *loadtest.History
	proxies [][]*faultproxy.Proxy // proxies[i][j] carries the routes node i dials to node j
	nodes   []*demoNode
	start   time.Time // publishing began
	outMu   sync.Mutex
	// stopLive stops the live line, once delivery has completed.
	stopLive func()
	// syncCtx bounds the synchronous publishes (the end of the drain);
	// sync waits for them.
	syncCtx    context.Context
	syncCancel context.CancelFunc
	sync       sync.WaitGroup
	// cutAt and healAt are when the isolation began and ended; written
	// by isolate, read once traffic has waited for it.
	cutAt, healAt time.Time
}

// demoNode is one member of the demo cluster and what the demo keeps of it.
type demoNode struct {
	name     string
	node     *cluster.Node
	prov     *telemetry.Providers
	http     *telemetry.Server
	sub      *loadtest.Subscriber
	pub      *loadtest.Publisher
	shopSeed uint64
	stored   atomic.Int64 // publishes acknowledged by the stream
	outboxed atomic.Int64 // publishes acknowledged by the outbox (PublishAsync)
	// outboxDepth is the last signalbus_outbox_depth read, -1 before one.
	outboxDepth atomic.Int64
	partition   partitionLog
}

// partitionLog keeps what a node's own partition signals said.
type partitionLog struct {
	mu               sync.Mutex
	partitioned      bool
	detected, healed time.Time // the first detection, the last heal
	detections       int
}

func (p *partitionLog) handle(_ context.Context, s bus.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch s.Type {
	case cluster.TypePartitionDetected:
		p.partitioned = true
		p.detections++
		if p.detected.IsZero() {
			p.detected = time.Now()
		}
	case cluster.TypePartitionHealed:
		p.partitioned = false
		p.healed = time.Now()
	}
	return nil
}

func (p *partitionLog) state() (partitioned bool, detected, healed time.Time, detections int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.partitioned, p.detected, p.healed, p.detections
}

// printf writes a line of the story; the publishers, the live line and
// the isolation write from their own goroutines.
func (d *clusterDemo) printf(format string, args ...any) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	fmt.Fprintf(d.out, format, args...)
}

// since is the time since publishing began, for the story's t= stamps.
func (d *clusterDemo) since() string {
	return fmt.Sprintf("t=%.1fs", time.Since(d.start).Seconds())
}

func (c *ClusterDemoCommand) run(ctx context.Context) (err error) {
	d := &clusterDemo{cmd: c, out: c.Stdout, hist: loadtest.NewHistory()}
	d.warns = newWarnHandler(c.Stderr, slog.LevelError)
	d.logger = slog.New(d.warns)

	began := time.Now()
	d.printf("signalbus demo: %d nodes in this process, durable mode, a 3-replica stream; routes through fault proxies\n", clusterNodes)
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), demoCloseTimeout)
		defer cancel()
		err = errors.Join(err, d.close(cctx))
		if n := d.warns.suppressed(); n > 0 {
			fmt.Fprintf(c.Stderr, "(%d more node errors not shown)\n", n)
		}
	}()
	if err := d.startCluster(ctx); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := d.waitReady(ctx); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	d.printf("cluster ready in %.1fs:\n", time.Since(began).Seconds())
	for _, n := range d.nodes {
		d.printf("  %s  nats %s  metrics http://%s/metrics  (/healthz, /readyz)\n", n.name, n.node.ClientURL(), n.http.Addr())
	}
	isolation := "no isolation"
	if c.IsolateFor > 0 {
		isolation = fmt.Sprintf("%s isolated at t=%v for %v", d.nodes[clusterNodes-1].name, c.IsolateAt, c.IsolateFor)
	}
	d.printf("publishing %d signals/s over the three nodes for %v; %s\n", c.Rate, c.Duration, isolation)

	d.start = time.Now()
	d.syncCtx, d.syncCancel = context.WithDeadline(context.WithoutCancel(ctx), d.start.Add(c.Duration+c.DrainTimeout))
	interrupted := d.traffic(ctx)
	return d.finish(ctx, interrupted)
}

// startCluster starts the proxies, then the nodes, all at once, each with
// its telemetry providers, subscriptions and HTTP listener.
func (d *clusterDemo) startCluster(ctx context.Context) error {
	c := d.cmd
	addrs := make([]string, clusterNodes)
	for i := range addrs {
		addrs[i] = ports.Unshared()
	}
	d.proxies = make([][]*faultproxy.Proxy, clusterNodes)
	for i := range clusterNodes {
		d.proxies[i] = make([]*faultproxy.Proxy, clusterNodes)
		for j := range clusterNodes {
			p, err := faultproxy.New(context.WithoutCancel(ctx), "127.0.0.1:0", addrs[j])
			if err != nil {
				return fmt.Errorf("route proxy %d→%d: %w", i+1, j+1, err)
			}
			d.proxies[i][j] = p
		}
	}
	d.nodes = make([]*demoNode, clusterNodes)
	for i := range d.nodes {
		n := &demoNode{name: "n" + strconv.Itoa(i+1), shopSeed: c.Seed*31 + uint64(i)}
		n.outboxDepth.Store(-1)
		// In node order, for the verdict's; before any signal is attempted.
		var err error
		if n.sub, err = d.hist.Subscriber(n.name, demoPattern); err != nil {
			return err
		}
		n.pub = d.hist.Publisher(n.name)
		d.nodes[i] = n
	}
	errs := make([]error, clusterNodes)
	var wg sync.WaitGroup
	for i, n := range d.nodes {
		wg.Go(func() { errs[i] = d.startNode(ctx, i, n, addrs[i]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startNode starts node i with its cluster port at addr (picked again if
// another process took it meanwhile).
func (d *clusterDemo) startNode(ctx context.Context, i int, n *demoNode, addr string) error {
	prov, err := telemetry.New(ctx, telemetry.Config{ServiceName: "signalbus-demo", ServiceVersion: version(), InstanceID: n.name, SampleRatio: 0.01, Logger: d.logger})
	if err != nil {
		return fmt.Errorf("%s: telemetry: %w", n.name, err)
	}
	n.prov = prov
	routes := make([]string, clusterNodes)
	for j := range routes {
		routes[j] = "nats://" + d.proxies[i][j].Addr()
	}
	for attempt := 0; ; attempt++ {
		cfg := cluster.Config{
			Name:             n.name,
			Listen:           "127.0.0.1:0",
			ClusterListen:    addr,
			ClusterAdvertise: gossipAdvertise,
			Routes:           routes,
			ClusterName:      "signalbus-demo",
			Mode:             cluster.Durable,
			ExpectedSize:     clusterNodes,
			// The store is flushed to the OS on every write, as a process
			// crash needs; fsyncing each one would measure the disk.
			NoSync:         true,
			TracerProvider: prov.TracerProvider,
			MeterProvider:  prov.MeterProvider,
			Logger:         d.logger,
			BusOptions: []bus.Option{bus.WithMeterProvider(prov.MeterProvider), bus.WithTracerProvider(prov.TracerProvider),
				bus.WithPropagator(prov.Propagator), bus.WithLogger(d.logger)},
		}
		n.node, err = cluster.Start(ctx, cfg)
		if err == nil {
			break
		}
		if attempt == 4 || !strings.Contains(err.Error(), "address already in use") {
			return fmt.Errorf("start %s: %w", n.name, err)
		}
		// Another process bound the port between the check and the start.
		addr = ports.Unshared()
		for j := range clusterNodes {
			if err := d.proxies[j][i].SetTarget(addr); err != nil {
				return fmt.Errorf("start %s: %w", n.name, err)
			}
		}
	}
	if _, err := n.node.Bus().Subscribe(demoPattern, n.sub, bus.WithQueueSize(8192)); err != nil {
		return fmt.Errorf("%s: subscribe: %w", n.name, err)
	}
	if _, err := n.node.Bus().Subscribe("signalbus.cluster.partition.*", bus.HandlerFunc(n.partition.handle)); err != nil {
		return fmt.Errorf("%s: subscribe: %w", n.name, err)
	}
	httpAddr := "127.0.0.1:0"
	if d.cmd.HTTPBasePort > 0 {
		httpAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(d.cmd.HTTPBasePort+i))
	}
	if n.http, err = telemetry.Serve(telemetry.ServerConfig{Addr: httpAddr, Gatherer: prov.Registry, Ready: n.node.Readiness, Logger: d.logger}); err != nil {
		return fmt.Errorf("%s: metrics: %w", n.name, err)
	}
	return nil
}

// waitReady waits until every node sees every other up and has stored a
// probe signal: the stream, with its three replicas, and every node's
// consumer exist, so what any node publishes from now on reaches all.
func (d *clusterDemo) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, demoReadyTimeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(d.nodes))
	for i, n := range d.nodes {
		wg.Go(func() {
			for {
				up := membersUp(n.node)
				var err error
				if up == clusterNodes {
					probe, _ := bus.NewSignal("demo.probe", "/demo/"+n.name, nil)
					pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					err = n.node.Bus().Publish(pctx, probe)
					cancel()
					if err == nil {
						return
					}
				} else {
					err = fmt.Errorf("%s sees %d of %d nodes up", n.name, up, clusterNodes)
				}
				select {
				case <-ctx.Done():
					// ctx.Err, not context.Cause: the cause of an
					// interrupt is the signal's own error.
					if errors.Is(ctx.Err(), context.Canceled) { // interrupted, not timed out
						errs[i] = ctx.Err()
						return
					}
					errs[i] = fmt.Errorf("cluster not ready after %v: %w", demoReadyTimeout, err)
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// traffic publishes from every node, runs the isolation and prints the
// live line, until the duration is over or ctx ends; it reports whether
// ctx ended first.
func (d *clusterDemo) traffic(ctx context.Context) (interrupted bool) {
	pctx, cancel := context.WithDeadline(ctx, d.start.Add(d.cmd.Duration))
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range d.nodes {
		wg.Go(func() { d.publish(pctx, n, float64(d.cmd.Rate)/clusterNodes) })
	}
	if d.cmd.IsolateFor > 0 {
		wg.Go(func() { d.isolate(pctx, clusterNodes-1) })
	}
	liveCtx, stopLive := context.WithCancel(context.WithoutCancel(ctx))
	var live sync.WaitGroup
	live.Go(func() { d.live(liveCtx) })
	for _, n := range d.nodes {
		live.Go(func() { d.watchOutbox(liveCtx, n) })
	}
	<-pctx.Done()
	wg.Wait()
	interrupted = ctx.Err() != nil
	if interrupted {
		d.printf("%s interrupted\n", d.since())
	}
	// The live line goes on while delivery completes: finish stops it.
	d.stopLive = func() { stopLive(); live.Wait() }
	return interrupted
}

// publish publishes the node's order stream at rate signals per second
// until ctx ends: every demoTick, the signals due, in one call.
//
// A call is synchronous (Bus().Publish: acked once the stream has stored
// it) unless the node knows itself partitioned or an earlier synchronous
// call is still waiting; then it goes to the outbox (PublishAsync: acked
// once queued, as DESIGN.md's durable guarantee puts it, to be sent in
// order when the cluster is back). A synchronous call that takes longer
// than demoPublishTimeout is left waiting on a goroutine of its own, with
// the run's deadline, and records its own outcome when it returns; what
// comes next queues behind it. No signal is ever published twice: a
// caller's retry of a publish whose answer it missed could be stored under
// another sequence number, and the History would not be judging one
// publish per signal.
func (d *clusterDemo) publish(ctx context.Context, n *demoNode, rate float64) {
	tick := time.NewTicker(demoTick)
	defer tick.Stop()
	shop := newShop(n.shopSeed)
	source := "/demo/" + n.name
	var (
		done    int64
		waiting = make(chan struct{}, 1) // holds a token while a synchronous call is left waiting
	)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			due := int64(rate*now.Sub(d.start).Seconds()) - done
			if due <= 0 {
				continue
			}
			batch := make([]bus.Signal, 0, min(due, int64(rate)/2+1)) // catch up at most half a second at once
			for range cap(batch) {
				typ, o := shop.next()
				sig, err := bus.NewSignal(typ, source, o, bus.WithSubject(o.ID))
				if err != nil {
					d.logger.Error("demo: make a signal", "error", err)
					return
				}
				batch = append(batch, sig)
			}
			done += int64(len(batch))
			d.publishBatch(ctx, n, batch, waiting)
		}
	}
}

// publishBatch publishes one call's signals and records their attempt
// and outcome (see publish).
func (d *clusterDemo) publishBatch(ctx context.Context, n *demoNode, batch []bus.Signal, waiting chan struct{}) {
	ops := make([]loadtest.Op, len(batch))
	for i := range batch {
		ops[i] = n.pub.Attempt(&batch[i])
	}
	record := func(err error, acks *atomic.Int64) {
		for _, op := range ops {
			if err != nil {
				op.Fail(err)
			} else {
				op.Ack()
			}
		}
		if err == nil {
			acks.Add(int64(len(ops)))
		} else if !errors.Is(err, cluster.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			d.logger.Error("demo: publish", "node", n.name, "error", err)
		}
	}
	partitioned, _, _, _ := n.partition.state()
	if partitioned || len(waiting) > 0 {
		record(n.node.PublishAsync(context.WithoutCancel(ctx), batch...), &n.outboxed)
		return
	}
	waiting <- struct{}{}
	result := make(chan error, 1)
	d.sync.Go(func() {
		err := n.node.Bus().Publish(d.syncCtx, batch...)
		record(err, &n.stored)
		<-waiting
		result <- err
	})
	select {
	case <-result:
	case <-time.After(demoPublishTimeout):
		// Left waiting: the next calls go to the outbox, behind it.
	}
}

// isolate cuts every route link of node k at IsolateAt, in both
// directions, and restores them IsolateFor later (or when ctx ends).
func (d *clusterDemo) isolate(ctx context.Context, k int) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Until(d.start.Add(d.cmd.IsolateAt))):
	}
	links := d.links(k)
	for _, p := range links {
		p.Cut()
	}
	d.cutAt = time.Now()
	d.printf("%s isolating %s: its %d route links cut\n", d.since(), d.nodes[k].name, len(links))
	select {
	case <-ctx.Done():
	case <-time.After(d.cmd.IsolateFor):
	}
	for _, p := range links {
		p.Restore()
	}
	d.healAt = time.Now()
	d.printf("%s healing %s: its route links restored\n", d.since(), d.nodes[k].name)
}

// links returns the proxies of every route between node k and the others,
// both directions.
func (d *clusterDemo) links(k int) []*faultproxy.Proxy {
	var ps []*faultproxy.Proxy
	for j := range clusterNodes {
		if j != k {
			ps = append(ps, d.proxies[k][j], d.proxies[j][k])
		}
	}
	return ps
}

// close stops the HTTP listeners, the nodes (all at once), the proxies
// and the telemetry.
func (d *clusterDemo) close(ctx context.Context) error {
	if d.stopLive != nil {
		d.stopLive()
	}
	if d.syncCancel != nil {
		d.syncCancel()
		d.sync.Wait()
	}
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range d.nodes {
		if n == nil {
			continue
		}
		wg.Go(func() {
			var e []error
			if n.http != nil {
				e = append(e, n.http.Close(ctx))
			}
			if n.node != nil {
				e = append(e, n.node.Close(ctx))
			}
			if n.prov != nil {
				e = append(e, n.prov.Shutdown(ctx))
			}
			mu.Lock()
			errs = append(errs, e...)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, row := range d.proxies {
		for _, p := range row {
			if p != nil {
				errs = append(errs, p.Close())
			}
		}
	}
	return errors.Join(errs...)
}
