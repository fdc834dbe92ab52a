package inprocess

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/chaos"
	"github.com/signalbus/signalbus/cluster"
	"github.com/signalbus/signalbus/internal/faultproxy"
	"github.com/signalbus/signalbus/internal/ports"
	"github.com/signalbus/signalbus/telemetry"
)

// gossipAdvertise is the route address every server advertises: one
// nats-server never dials (it resolves to itself), so no peer learns a
// real cluster port from route gossip and every route stays on the
// proxies, where the faults are.
const gossipAdvertise = "localhost:1"

// App is what runs on a node while it is up: the service that embeds it
// (subscriptions, publishers, a workload). Pause and Resume stop and
// restart its work while the node is paused, as a frozen process would.
type App interface {
	Pause()
	Resume()
	// Close stops it; the node is closed after it.
	Close(ctx context.Context) error
}

// Config describes a cluster.
type Config struct {
	// Nodes is the number of nodes, named n1 … nN. Default 3.
	Nodes int
	// Mode is the cluster mode of every node. Default cluster.Durable.
	Mode cluster.Mode
	// Dir holds each node's store, in a folder of its name; it must
	// exist. The caller removes it.
	Dir string
	// Configure, if set, adjusts a node's configuration before each
	// start (the backend sets the name, addresses, routes, mode, data
	// dir, telemetry and ExpectedSize before calling it).
	Configure func(name string, cfg *cluster.Config)
	// Start, if set, starts the node's App each time the node starts;
	// start is 1 at the first start, 2 after one restart, and so on.
	Start func(ctx context.Context, c *Cluster, name string, start int, n *cluster.Node) (App, error)
	// RecordFile is the name, in a node's folder, of the record its App
	// writes and Record reads (see RecordPath).
	RecordFile string
	// Logger receives the nodes' logs. Default: a logger that discards.
	Logger *slog.Logger
}

// Cluster is a chaos.Cluster of embedded nodes in this process. Every
// connection a node has with the outside (its routes, its NATS clients,
// its HTTP listener) goes through a fault proxy, which is where faults
// are injected: a partition black-holes route proxies, so peers see
// timeouts; a pause black-holes every proxy of the node and pauses its
// App (the node's own goroutines keep running, which a frozen process's
// would not); a kill cuts every proxy and closes the node without a
// drain (its store is closed cleanly, which a SIGKILL's is not: the
// container backend is the one that shows a real kill).
type Cluster struct {
	cfg    Config
	names  []string
	logger *slog.Logger
	ctx    context.Context // for the proxies and the nodes' lifetime

	mu      sync.Mutex
	nodes   []*node
	links   *chaos.Links // network faults
	closed  bool
	proxies []*faultproxy.Proxy // every proxy, for Close
}

// node is one node and its proxies.
type node struct {
	name        string
	clusterAddr string               // the node's cluster listener, which routes[j] of others dial
	routes      []*faultproxy.Proxy  // routes[j]: the route this node dials to node j
	client      *faultproxy.Proxy    // ClientURL
	http        *faultproxy.Proxy    // HTTPURL
	n           *cluster.Node        // nil while killed
	app         App                  // nil when none or killed
	prov        *telemetry.Providers // nil while killed
	srv         *telemetry.Server    // nil while killed
	starts      int                  // how many times it started
	paused      bool
}

// Start starts the cluster and waits until every node sees every other
// up. ctx bounds the start; the cluster lives until Close.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 1 {
		return nil, fmt.Errorf("inprocess: Nodes %d: %w", cfg.Nodes, chaos.ErrBadFault)
	}
	if cfg.Dir == "" {
		return nil, errors.New("inprocess: Config.Dir is empty: each node needs a folder for its store")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{cfg: cfg, logger: logger, ctx: context.WithoutCancel(ctx)}
	for i := range cfg.Nodes {
		c.names = append(c.names, "n"+strconv.Itoa(i+1))
	}
	c.links = chaos.NewLinks(c.names)
	ok := false
	defer func() {
		if !ok {
			_ = c.Close(context.WithoutCancel(ctx))
		}
	}()
	for _, name := range c.names {
		nd := &node{name: name, clusterAddr: ports.Unshared()}
		c.nodes = append(c.nodes, nd)
		var err error
		if nd.client, err = c.proxy("127.0.0.1:1"); err != nil {
			return nil, err
		}
		if nd.http, err = c.proxy("127.0.0.1:1"); err != nil {
			return nil, err
		}
	}
	for _, nd := range c.nodes {
		for _, peer := range c.nodes {
			p, err := c.proxy(peer.clusterAddr)
			if err != nil {
				return nil, err
			}
			nd.routes = append(nd.routes, p)
		}
	}
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { errs[i] = c.start(ctx, i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := c.WaitReady(ctx); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

func (c *Cluster) proxy(target string) (*faultproxy.Proxy, error) {
	p, err := faultproxy.New(c.ctx, "127.0.0.1:0", target)
	if err != nil {
		return nil, fmt.Errorf("inprocess: proxy to %s: %w", target, err)
	}
	c.proxies = append(c.proxies, p)
	return p, nil
}

// start starts node i (not holding mu: a start takes seconds).
func (c *Cluster) start(ctx context.Context, i int) (err error) {
	nd := c.nodes[i]
	prov, err := telemetry.New(ctx, telemetry.Config{ServiceName: "signalbus-chaos", InstanceID: nd.name, SampleRatio: -1, Logger: c.logger})
	if err != nil {
		return fmt.Errorf("%s: telemetry: %w", nd.name, err)
	}
	defer func() {
		if err != nil {
			_ = prov.Shutdown(context.WithoutCancel(ctx))
		}
	}()
	routes := make([]string, len(c.nodes))
	for j := range routes {
		routes[j] = "nats://" + nd.routes[j].Addr()
	}
	dir := filepath.Join(c.cfg.Dir, nd.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%s: data dir: %w", nd.name, err)
	}
	var n *cluster.Node
	addr := nd.clusterAddr
	for attempt := 0; ; attempt++ {
		cfg := cluster.Config{
			Name:             nd.name,
			Listen:           "127.0.0.1:0",
			ClusterListen:    addr,
			ClusterAdvertise: gossipAdvertise,
			Routes:           routes,
			ClusterName:      "signalbus-chaos",
			DataDir:          dir,
			Mode:             c.cfg.Mode,
			ExpectedSize:     len(c.nodes),
			NoSync:           true,
			TracerProvider:   prov.TracerProvider,
			MeterProvider:    prov.MeterProvider,
			Logger:           c.logger,
			BusOptions: []bus.Option{bus.WithMeterProvider(prov.MeterProvider), bus.WithTracerProvider(prov.TracerProvider),
				bus.WithLogger(c.logger)},
		}
		if c.cfg.Configure != nil {
			c.cfg.Configure(nd.name, &cfg)
		}
		n, err = cluster.Start(ctx, cfg)
		if err == nil {
			break
		}
		if attempt == 4 || !strings.Contains(err.Error(), "address already in use") {
			return fmt.Errorf("start %s: %w", nd.name, err)
		}
		// Another process took the port between the pick and the start.
		addr = ports.Unshared()
		for _, peer := range c.nodes {
			if err := peer.routes[i].SetTarget(addr); err != nil {
				return fmt.Errorf("start %s: %w", nd.name, err)
			}
		}
	}
	defer func() {
		if err != nil {
			_ = n.Close(context.WithoutCancel(ctx))
		}
	}()
	srv, err := telemetry.Serve(telemetry.ServerConfig{Addr: "127.0.0.1:0", Gatherer: prov.Registry, Ready: n.Readiness, Logger: c.logger})
	if err != nil {
		return fmt.Errorf("%s: HTTP: %w", nd.name, err)
	}
	defer func() {
		if err != nil {
			_ = srv.Close(context.WithoutCancel(ctx))
		}
	}()
	if err := nd.client.SetTarget(hostPort(n.ClientURL())); err != nil {
		return fmt.Errorf("%s: %w", nd.name, err)
	}
	if err := nd.http.SetTarget(srv.Addr()); err != nil {
		return fmt.Errorf("%s: %w", nd.name, err)
	}
	c.mu.Lock()
	nd.starts++
	start := nd.starts
	c.mu.Unlock()
	var app App
	if c.cfg.Start != nil {
		if app, err = c.cfg.Start(ctx, c, nd.name, start, n); err != nil {
			return fmt.Errorf("%s: start its app: %w", nd.name, err)
		}
	}
	c.mu.Lock()
	nd.clusterAddr, nd.n, nd.app, nd.prov, nd.srv = addr, n, app, prov, srv
	c.mu.Unlock()
	return nil
}

// hostPort is the host:port of a nats:// URL.
func hostPort(u string) string {
	return strings.TrimPrefix(u, "nats://")
}

// WaitReady waits until every running node that is not paused sees every
// running node up and is ready (cluster.Node.Readiness: connected, its
// stream answering in durable mode, not partitioned).
func (c *Cluster) WaitReady(ctx context.Context) error {
	for {
		var missing []string
		c.mu.Lock()
		running := 0
		var check []*node
		for _, nd := range c.nodes {
			if nd.n != nil {
				running++
				if !nd.paused {
					check = append(check, nd)
				}
			}
		}
		c.mu.Unlock()
		for _, nd := range check {
			up := 0
			for _, m := range nd.n.Members() {
				if m.State == cluster.Up {
					up++
				}
			}
			if up < running {
				missing = append(missing, fmt.Sprintf("%s sees %d of %d up", nd.name, up, running))
				continue
			}
			probe, cancel := context.WithTimeout(ctx, 2*time.Second)
			for what, err := range nd.n.Readiness(probe) {
				if err != nil {
					missing = append(missing, fmt.Sprintf("%s: %s: %v", nd.name, what, err))
				}
			}
			cancel()
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			slices.Sort(missing)
			return fmt.Errorf("inprocess: not ready (%s): %w", strings.Join(missing, "; "), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Nodes returns n1 … nN.
func (c *Cluster) Nodes() []string { return slices.Clone(c.names) }

// Node returns the running node of that name, or nil while it is killed.
func (c *Cluster) Node(name string) *cluster.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.names, name); i >= 0 {
		return c.nodes[i].n
	}
	return nil
}

func (c *Cluster) index(name string) (int, error) { return c.links.Index(name) }

// ClientURL is a proxy in front of node's NATS client port: stable across
// restarts.
func (c *Cluster) ClientURL(name string) string {
	i, err := c.index(name)
	if err != nil {
		return ""
	}
	return "nats://" + c.nodes[i].client.Addr()
}

// HTTPURL is a proxy in front of node's HTTP listener: stable across
// restarts.
func (c *Cluster) HTTPURL(name string) string {
	i, err := c.index(name)
	if err != nil {
		return ""
	}
	return "http://" + c.nodes[i].http.Addr()
}

// Kill cuts every connection of the node and closes it without waiting
// for anything: what it had not sent is lost.
func (c *Cluster) Kill(ctx context.Context, name string) error {
	i, err := c.index(name)
	if err != nil {
		return err
	}
	c.mu.Lock()
	nd := c.nodes[i]
	n, app, prov, srv := nd.n, nd.app, nd.prov, nd.srv
	nd.n, nd.app, nd.prov, nd.srv, nd.paused = nil, nil, nil, nil, false
	if n != nil {
		for _, p := range c.nodeProxiesLocked(i) {
			p.Cut()
		}
	}
	c.mu.Unlock()
	if n == nil {
		return nil // already killed
	}
	// A closed context: Close drains nothing and returns at once.
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if app != nil {
		_ = app.Close(dead)
	}
	_ = n.Close(dead)
	_ = srv.Close(dead)
	_ = prov.Shutdown(dead)
	// The server stops in the background once Close has given up on it:
	// the node is dead when its ports refuse connections.
	if err := waitRefused(ctx, hostPort(n.ClientURL()), nd.clusterAddr); err != nil {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	c.mu.Lock()
	for _, p := range c.nodeProxiesLocked(i) {
		p.Restore() // connections to a dead node are refused, as a killed process's are
	}
	c.applyAllLocked()
	c.mu.Unlock()
	return nil
}

// waitRefused waits until every address refuses a TCP connection.
func waitRefused(ctx context.Context, addrs ...string) error {
	for _, addr := range addrs {
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				break
			}
			conn.Close()
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s still takes connections: %w", addr, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// nodeProxiesLocked returns every proxy that carries node i's traffic.
func (c *Cluster) nodeProxiesLocked(i int) []*faultproxy.Proxy {
	nd := c.nodes[i]
	ps := []*faultproxy.Proxy{nd.client, nd.http}
	for j, peer := range c.nodes {
		if j != i {
			ps = append(ps, nd.routes[j], peer.routes[i])
		}
	}
	return ps
}

// Restart starts the node again on its store, killing it first if it
// runs. It returns once the node runs; the cluster may still be
// partitioned, so waiting for it to be whole is WaitReady's.
func (c *Cluster) Restart(ctx context.Context, name string) error {
	i, err := c.index(name)
	if err != nil {
		return err
	}
	if err := c.Kill(ctx, name); err != nil {
		return err
	}
	return c.start(ctx, i)
}

// Pause black-holes every connection of the node and pauses its App.
func (c *Cluster) Pause(_ context.Context, name string) error {
	return c.setPaused(name, true)
}

// Resume undoes Pause.
func (c *Cluster) Resume(_ context.Context, name string) error {
	return c.setPaused(name, false)
}

func (c *Cluster) setPaused(name string, paused bool) error {
	i, err := c.index(name)
	if err != nil {
		return err
	}
	c.mu.Lock()
	nd := c.nodes[i]
	if nd.n == nil {
		c.mu.Unlock()
		return fmt.Errorf("%w: %s is killed", chaos.ErrBadFault, name)
	}
	was := nd.paused
	nd.paused = paused
	app := nd.app
	c.applyAllLocked()
	c.mu.Unlock()
	if app != nil && was != paused {
		if paused {
			app.Pause()
		} else {
			app.Resume()
		}
	}
	return nil
}

// Partition black-holes the links between nodes of different groups; a
// node in no group is cut from all.
func (c *Cluster) Partition(_ context.Context, groups ...[]string) error {
	return c.changeLinks(func(l *chaos.Links) error { return l.Partition(groups...) })
}

// Isolate cuts the node from every other.
func (c *Cluster) Isolate(_ context.Context, name string) error {
	return c.changeLinks(func(l *chaos.Links) error { return l.Isolate(name) })
}

// Bridge cuts a from b; both keep bridge, and every other link is as it
// was.
func (c *Cluster) Bridge(_ context.Context, a, bridge, b string) error {
	return c.changeLinks(func(l *chaos.Links) error { return l.Bridge(a, bridge, b) })
}

// BlackHole drops everything on the link between from and to.
func (c *Cluster) BlackHole(_ context.Context, from, to string) error {
	return c.changeLinks(func(l *chaos.Links) error { return l.BlackHole(from, to) })
}

// Slow delays traffic both ways on the link between from and to.
func (c *Cluster) Slow(_ context.Context, from, to string, latency time.Duration) error {
	return c.changeLinks(func(l *chaos.Links) error { return l.Slow(from, to, latency) })
}

// Heal undoes every network fault.
func (c *Cluster) Heal(context.Context) error {
	return c.changeLinks(func(l *chaos.Links) error { l.Heal(); return nil })
}

// changeLinks changes the link faults and applies them.
func (c *Cluster) changeLinks(change func(*chaos.Links) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := change(c.links); err != nil {
		return err
	}
	c.applyAllLocked()
	return nil
}

// applyAllLocked sets every proxy to what the faults and pauses make it.
func (c *Cluster) applyAllLocked() {
	for i, nd := range c.nodes {
		if nd.n == nil {
			continue // killed: its proxies stay as Kill left them
		}
		for _, p := range []*faultproxy.Proxy{nd.client, nd.http} {
			if nd.paused {
				p.Blackhole()
			} else {
				p.Restore()
			}
		}
		for j, peer := range c.nodes {
			if j == i {
				continue
			}
			l := c.links.Link(i, j)
			p := nd.routes[j]
			p.SetLatency(l.Latency)
			if l.Down || nd.paused || (peer.n != nil && peer.paused) {
				p.Blackhole()
			} else {
				p.Restore()
			}
		}
	}
}

// Record opens the node's Config.RecordFile in its folder.
func (c *Cluster) Record(_ context.Context, name string) (io.ReadCloser, error) {
	if _, err := c.index(name); err != nil {
		return nil, err
	}
	if c.cfg.RecordFile == "" {
		return nil, errors.New("inprocess: Config.RecordFile is not set")
	}
	return os.Open(c.RecordPath(name))
}

// RecordPath is where node's App is to write its record: Config.RecordFile
// in the node's folder.
func (c *Cluster) RecordPath(name string) string {
	return filepath.Join(c.cfg.Dir, name, c.cfg.RecordFile)
}

// Close stops every node (draining: the test is over) and proxy.
func (c *Cluster) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.clearFaultsLocked()
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, nd := range nodes {
		wg.Go(func() {
			var e []error
			if nd.app != nil {
				e = append(e, nd.app.Close(ctx))
			}
			if nd.n != nil {
				e = append(e, nd.n.Close(ctx))
			}
			if nd.srv != nil {
				e = append(e, nd.srv.Close(ctx))
			}
			if nd.prov != nil {
				e = append(e, nd.prov.Shutdown(ctx))
			}
			emu.Lock()
			errs = append(errs, e...)
			emu.Unlock()
		})
	}
	wg.Wait()
	for _, p := range c.proxies {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// clearFaultsLocked clears every pause and network fault before Close,
// so that nodes can drain. The caller holds mu.
func (c *Cluster) clearFaultsLocked() {
	for _, nd := range c.nodes {
		nd.paused = false
	}
	c.links.Heal()
	c.applyAllLocked()
}

var (
	_ chaos.Cluster  = (*Cluster)(nil)
	_ chaos.Recorder = (*Cluster)(nil)
)
