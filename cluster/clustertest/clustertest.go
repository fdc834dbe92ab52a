// Package clustertest starts clusters of embedded nats-servers on loopback
// for multi-server tests, with every route link passing through a fault
// proxy so a test can cut, black-hole or slow the link between any two
// servers, and kill or restart a server with its data.
//
// It is shaped like nats-server's cluster test helpers (a cluster value
// holding testing.TB; servers on 127.0.0.1 free ports, one store directory
// each; restart reusing a server's configuration; waitOn… helpers that poll
// to a deadline, then Fatalf with want and got) and like hashicorp/raft's
// MakeCluster (Partition, Heal). Unlike nats-server's helpers it tunes
// nothing through package variables, so tests using it may run in parallel.
//
//	c := clustertest.StartCluster(t, 3)      // routes formed, JetStream meta leader elected
//	nc, _ := nats.Connect(c.ClientURL(0))
//	c.Isolate(2)                              // 2 loses every route
//	c.WaitForRoutes(t)
//	c.Heal()
//	c.WaitForRoutes(t)
//
// # Route topology
//
// A nats-server dials every URL in its Routes option (and keeps redialling
// it while it is down), and accepts routes on its cluster port. Between two
// servers i and j both dial, and nats-server keeps one set of connections,
// closing duplicates. To put every route connection between i and j through
// a proxy whatever side dials, there is one proxy per ordered pair:
//
//	proxy[i][j] listens on its own 127.0.0.1 port and forwards to j's cluster port
//	server i's Routes = { proxy[i][j] : every j, i included }
//
// so i's connections to j go through proxy[i][j], j's connections to i
// through proxy[j][i], and the link {i, j} is faulted by applying the same
// fault to both. No server's Routes names a real cluster port. The route
// of i to itself (through proxy[i][i], never faulted) is there because
// nats-server, on a cluster's first start, sizes the JetStream meta group
// by the number of routes configured (at least 2): listing every server,
// itself included, as nats-server's own configurations do, makes that n.
// nats-server recognises the route to itself and drops it.
//
// A cluster of one server is a standalone server: a clustered JetStream
// server whose only route is to itself would wait for a second peer for
// ever.
//
// One more path has to be closed: route gossip. When j accepts a route from
// i, it tells its other peers "there is a server i at <address>", and a peer
// that has no route to i yet dials that address directly (an "implicit"
// route) — which would bypass the proxies, typically right after a restart
// or a heal, and survive every later Cut. The address gossiped is the
// server's cluster advertise address, so every server here advertises the
// same dead address, localhost:1: nats-server never dials an advertised
// hostname that resolves to its own advertise address on a local interface
// (its route-to-self check), so the gossip is ignored without even a dial,
// and were it dialled, nothing listens on port 1 and an implicit route is
// not retried. Explicit routes (the proxies) are dialled by IP address and
// are not affected. WaitForRoutes checks that no route goes straight to a
// real cluster port.
package clustertest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/signalbus/signalbus/cluster/internal/natsserver"
	"github.com/signalbus/signalbus/internal/faultproxy"
	"github.com/signalbus/signalbus/internal/ports"
)

// DefaultTimeout bounds StartCluster's waits and the WaitFor helpers. It is
// generous because a JetStream Raft election takes 4–9 s by itself and a
// loaded CI machine may add more.
const DefaultTimeout = 30 * time.Second

// gossipAdvertise is the route address every server advertises; see the
// package documentation.
const gossipAdvertise = "localhost:1"

// Option configures StartCluster.
type Option func(*config)

type config struct {
	clusterName  string
	logger       *slog.Logger
	syncAlways   bool
	pingInterval time.Duration
	maxPingsOut  int
	timeout      time.Duration
	noJetStream  bool
	noWait       bool
	modify       func(i int, o *natsserver.Options)
}

// WithClusterName sets the cluster name (default "clustertest").
func WithClusterName(name string) Option { return func(c *config) { c.clusterName = name } }

// WithLogger sends every server's log lines to l (default: none).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithSyncAlways makes JetStream fsync every write (default off: faster
// tests, and an in-process restart loses nothing the OS has).
func WithSyncAlways(on bool) Option { return func(c *config) { c.syncAlways = on } }

// WithPing sets the servers' ping interval and maximum outstanding pings
// (default natsserver's: 1 s, 3).
func WithPing(interval time.Duration, maxOut int) Option {
	return func(c *config) { c.pingInterval, c.maxPingsOut = interval, maxOut }
}

// WithTimeout sets the deadline of StartCluster's waits and of the WaitFor
// helpers (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithoutJetStream starts the servers without JetStream (core NATS only).
func WithoutJetStream() Option { return func(c *config) { c.noJetStream = true } }

// WithoutWait makes StartCluster return as soon as every server is up,
// without waiting for routes or JetStream.
func WithoutWait() Option { return func(c *config) { c.noWait = true } }

// WithServerOptions lets a test adjust server i's options before its first
// start (they are reused by Restart). Addresses, routes and store directory
// are set by the cluster and should be left alone.
func WithServerOptions(f func(i int, o *natsserver.Options)) Option {
	return func(c *config) { c.modify = f }
}

// linkState is the fault applied to the link between two servers.
type linkState struct {
	cut, blackhole bool
	latency        time.Duration
}

func (l linkState) down() bool { return l.cut || l.blackhole }

// Cluster is a set of embedded nats-servers routed to each other through
// fault proxies. Its methods are safe for concurrent use; the ones that take
// a testing.TB must be called from the test's goroutine (they may Fatalf).
type Cluster struct {
	t   testing.TB
	cfg config
	n   int

	mu      sync.Mutex
	servers []*natsserver.Server  // nil while down
	opts    []natsserver.Options  // each server's options, client address pinned after first start
	cluster []string              // each server's cluster address of its last start
	proxies [][]*faultproxy.Proxy // proxies[i][j]: routes dialled by i to j
	links   map[[2]int]linkState  // key {min, max}
}

// StartCluster starts n servers (named s0, s1, …) on 127.0.0.1 free ports,
// clustered through fault proxies, each with its own store directory under
// t.TempDir(). Unless WithoutWait is given, it returns once every server has
// a route to every other and (with JetStream) a meta leader is elected and
// knows every server. Everything is shut down by t.Cleanup.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("clustertest: StartCluster(%d): need at least one server", n)
	}
	cfg := config{clusterName: "clustertest", timeout: DefaultTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	c := &Cluster{
		t:       t,
		cfg:     cfg,
		n:       n,
		servers: make([]*natsserver.Server, n),
		opts:    make([]natsserver.Options, n),
		cluster: make([]string, n),
		proxies: make([][]*faultproxy.Proxy, n),
		links:   make(map[[2]int]linkState),
	}
	// Store directories first: t.Cleanup runs last-registered first, and
	// the servers must be shut down before their directories are removed.
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	t.Cleanup(c.shutdown)

	// The proxies' listen addresses are needed for the servers' Routes
	// before the servers (and so the proxies' targets) exist: create them
	// with no target (they refuse connections until SetTarget). A lone
	// server is standalone: no routes, no proxies.
	if n > 1 {
		for i := range n {
			c.proxies[i] = make([]*faultproxy.Proxy, n)
			for j := range n {
				p, err := faultproxy.New(context.Background(), "127.0.0.1:0", "")
				if err != nil {
					t.Fatalf("clustertest: proxy %d→%d: %v", i, j, err)
				}
				c.proxies[i][j] = p
			}
		}
	}
	for i := range n {
		o := natsserver.Options{
			Name:         "s" + strconv.Itoa(i),
			Listen:       "", // see start: a port Restart can have again
			StoreDir:     dirs[i],
			JetStream:    !cfg.noJetStream,
			SyncAlways:   cfg.syncAlways,
			PingInterval: cfg.pingInterval,
			MaxPingsOut:  cfg.maxPingsOut,
			Logger:       cfg.logger,
		}
		if n > 1 {
			o.ClusterName = cfg.clusterName
			o.ClusterListen = "127.0.0.1:0"
			o.ClusterAdvertise = gossipAdvertise
			// Every server of the cluster, this one included (through
			// proxies[i][i], a route to itself that nats-server detects
			// and drops): on first start nats-server sizes the JetStream
			// meta group by the number of routes.
			for j := range n {
				o.Routes = append(o.Routes, "nats://"+c.proxies[i][j].Addr())
			}
		}
		if cfg.modify != nil {
			cfg.modify(i, &o)
		}
		c.opts[i] = o
	}

	// Start every server at once: order must not matter.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = c.start(ctx, i) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("clustertest: start server %d: %v", i, err)
		}
	}
	if !cfg.noWait {
		c.WaitForRoutes(t)
		if !cfg.noJetStream {
			c.WaitForJetStream(t)
		}
	}
	return c
}

// start starts server i with its recorded options, pins its client
// address for restarts (clients reconnect to it) and points the proxies
// leading to it at its cluster port, which may change from one start to
// the next: no one else dials it.
//
// The client port of a first start is picked below the kernel's ephemeral
// range (see package ports): one from that range could be taken by an
// outgoing connection while the server is down, and Restart would fail.
func (c *Cluster) start(ctx context.Context, i int) error {
	c.mu.Lock()
	o := c.opts[i]
	c.mu.Unlock()
	first := o.Listen == ""
	var s *natsserver.Server
	for attempt := 0; ; attempt++ {
		if first {
			o.Listen = ports.Unshared()
		}
		var err error
		if s, err = natsserver.Start(ctx, o); err == nil {
			break
		}
		// Another process may bind the port picked between the check and
		// the start: pick again (a restart must keep its port).
		if !first || attempt == 4 || !strings.Contains(err.Error(), "address already in use") {
			return err
		}
	}
	clusterAddr := hostPort(s.ClusterURL())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.servers[i] = s
	c.opts[i].Listen = hostPort(s.ClientURL())
	c.cluster[i] = clusterAddr
	if clusterAddr == "" {
		return nil // standalone
	}
	for j := range c.n {
		if err := c.proxies[j][i].SetTarget(clusterAddr); err != nil {
			return err
		}
	}
	return nil
}

// hostPort strips the scheme from a nats://host:port URL.
func hostPort(u string) string {
	if _, hp, ok := strings.Cut(u, "://"); ok {
		return hp
	}
	return u
}

func (c *Cluster) shutdown() {
	c.mu.Lock()
	servers := slices.Clone(c.servers)
	clear(c.servers)
	c.mu.Unlock()
	// Cut every link first: servers then shut down without waiting on one
	// another (no leadership hand-over to a peer that is stopping too).
	for _, row := range c.proxies {
		for _, p := range row {
			if p != nil {
				p.Cut()
			}
		}
	}
	var wg sync.WaitGroup
	for i, s := range servers {
		if s == nil {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.timeout)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				c.t.Errorf("clustertest: shut down server %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	for _, row := range c.proxies {
		for _, p := range row {
			if p != nil {
				_ = p.Close()
			}
		}
	}
}

// N is the number of servers.
func (c *Cluster) N() int { return c.n }

func (c *Cluster) check(i int) {
	if i < 0 || i >= c.n {
		c.t.Fatalf("clustertest: server %d out of range [0, %d)", i, c.n)
	}
}

// Server returns server i, or nil while it is down (Kill).
func (c *Cluster) Server(i int) *natsserver.Server {
	c.check(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// Name is server i's name ("s<i>"), stable across restarts.
func (c *Cluster) Name(i int) string {
	c.check(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opts[i].Name
}

// ClientURL is server i's client URL, stable across restarts (a restarted
// server listens on the same port), so clients may keep reconnecting to it.
func (c *Cluster) ClientURL(i int) string {
	c.check(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	return "nats://" + c.opts[i].Listen
}

// ClientURLs is every server's client URL, comma-separated, for a client
// that should fail over between them.
func (c *Cluster) ClientURLs() string {
	urls := make([]string, c.n)
	for i := range urls {
		urls[i] = c.ClientURL(i)
	}
	return strings.Join(urls, ",")
}

// Proxy returns the proxy carrying the routes server i dials to server j,
// for its Stats or for one-directional faults.
func (c *Cluster) Proxy(i, j int) *faultproxy.Proxy {
	c.check(i)
	c.check(j)
	if i == j {
		c.t.Fatalf("clustertest: no link from server %d to itself", i)
	}
	return c.proxies[i][j]
}

func pair(i, j int) [2]int {
	if i > j {
		i, j = j, i
	}
	return [2]int{i, j}
}

// setLink records the fault for link {i, j} and applies it to both proxies.
// c.mu must be held.
func (c *Cluster) setLinkLocked(i, j int, st linkState) {
	if i == j {
		return
	}
	c.links[pair(i, j)] = st
	c.applyLocked(i, j)
}

func (c *Cluster) applyLocked(i, j int) {
	st := c.links[pair(i, j)]
	for _, p := range []*faultproxy.Proxy{c.proxies[i][j], c.proxies[j][i]} {
		p.SetLatency(st.latency)
		switch {
		case st.cut:
			p.Cut()
		case st.blackhole:
			p.Blackhole()
		default:
			p.Restore()
		}
	}
}

func (c *Cluster) modifyLink(i, j int, f func(*linkState)) {
	c.check(i)
	c.check(j)
	if i == j {
		c.t.Fatalf("clustertest: no link from server %d to itself", i)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.links[pair(i, j)]
	f(&st)
	c.setLinkLocked(i, j, st)
}

// Cut closes the link between servers i and j and refuses new connections
// on it until Heal or Restore: both see their routes to each other close.
func (c *Cluster) Cut(i, j int) {
	c.modifyLink(i, j, func(st *linkState) { st.cut, st.blackhole = true, false })
}

// Blackhole silently drops everything on the link between servers i and j
// until Heal or Restore: their routes stay open but go quiet, until the
// servers' pings declare them stale (about 4 s with the default pings).
func (c *Cluster) Blackhole(i, j int) {
	c.modifyLink(i, j, func(st *linkState) { st.cut, st.blackhole = false, true })
}

// Slow delays everything on the link between servers i and j by d in each
// direction (a round trip by 2d); 0 removes the delay.
func (c *Cluster) Slow(i, j int, d time.Duration) {
	c.modifyLink(i, j, func(st *linkState) { st.latency = d })
}

// Restore ends a Cut or Blackhole of the link between servers i and j (its
// latency stays).
func (c *Cluster) Restore(i, j int) {
	c.modifyLink(i, j, func(st *linkState) { st.cut, st.blackhole = false, false })
}

// Partition cuts every link between servers of different groups. Servers
// not listed in any group form one more group together. Links inside a
// group are left as they are.
func (c *Cluster) Partition(groups ...[]int) {
	group := make([]int, c.n)
	for i := range group {
		group[i] = -1
	}
	for g, members := range groups {
		for _, i := range members {
			c.check(i)
			if group[i] != -1 {
				c.t.Fatalf("clustertest: Partition: server %d is in two groups", i)
			}
			group[i] = g
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.n {
		for j := i + 1; j < c.n; j++ {
			if group[i] != group[j] {
				st := c.links[pair(i, j)]
				st.cut, st.blackhole = true, false
				c.setLinkLocked(i, j, st)
			}
		}
	}
}

// Isolate cuts every link of server i.
func (c *Cluster) Isolate(i int) {
	c.check(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	for j := range c.n {
		if j != i {
			st := c.links[pair(i, j)]
			st.cut, st.blackhole = true, false
			c.setLinkLocked(i, j, st)
		}
	}
}

// Heal removes every fault from every link: cuts, black holes and latency.
// Servers redial their routes within about a second.
func (c *Cluster) Heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.n {
		for j := i + 1; j < c.n; j++ {
			c.setLinkLocked(i, j, linkState{})
		}
	}
}

// Kill stops server i abruptly, approximating a crash: its links are cut
// before it shuts down, so its peers get no goodbye (no Raft leadership
// hand-over; they notice the loss as a dropped connection), then the links
// get their previous state back. Its clients see their connection close.
// Its store directory is kept for Restart.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.check(i)
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	if s != nil {
		for j := range c.n {
			if j != i {
				c.proxies[i][j].Cut()
				c.proxies[j][i].Cut()
			}
		}
	}
	c.mu.Unlock()
	if s == nil {
		return
	}
	c.stop(i, s)
	c.mu.Lock()
	defer c.mu.Unlock()
	for j := range c.n {
		if j != i {
			c.applyLocked(i, j)
		}
	}
}

// Stop shuts server i down gracefully (its Raft leaderships are handed
// over first). Its store directory is kept for Restart.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	c.check(i)
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		c.stop(i, s)
	}
}

func (c *Cluster) stop(i int, s *natsserver.Server) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.timeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		c.t.Fatalf("clustertest: shut down server %d: %v", i, err)
	}
}

// Restart shuts server i down gracefully if it is running, then starts it
// again with the same name, store directory and client port (its cluster
// port may change: the proxies are pointed at the new one).
// It returns once the server accepts connections; call WaitForRoutes or
// WaitForJetStream to wait for it to rejoin.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Stop(i)
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.timeout)
	defer cancel()
	if err := c.start(ctx, i); err != nil {
		c.t.Fatalf("clustertest: restart server %d: %v", i, err)
	}
}

// running returns the indexes of the servers that are up, and the servers.
func (c *Cluster) running() ([]int, []*natsserver.Server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var idx []int
	var srv []*natsserver.Server
	for i, s := range c.servers {
		if s != nil {
			idx = append(idx, i)
			srv = append(srv, s)
		}
	}
	return idx, srv
}

// waitFor polls cond every 25 ms until it returns nil, or fails the test
// with cond's last error once the cluster's timeout has passed.
func (c *Cluster) waitFor(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(c.cfg.timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clustertest: %s: not reached after %v: %v", what, c.cfg.timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// routez returns server i's route report, or nil while it is down or
// cannot report.
func (c *Cluster) routez(i int) *server.Routez {
	s := c.Server(i)
	if s == nil {
		return nil
	}
	rz, err := s.Raw().Routez(nil)
	if err != nil {
		return nil
	}
	return rz
}

// Peers returns the names of the servers server i has a route to, sorted.
func (c *Cluster) Peers(i int) []string {
	rz := c.routez(i)
	if rz == nil {
		return nil
	}
	var names []string
	for _, r := range rz.Routes {
		if !slices.Contains(names, r.RemoteName) {
			names = append(names, r.RemoteName)
		}
	}
	slices.Sort(names)
	return names
}

// WaitForRoutes waits until the routes match the links: every running
// server has a route to exactly the running servers whose link to it is
// neither cut nor black-holed. It also checks that no route bypasses the
// fault proxies.
func (c *Cluster) WaitForRoutes(t testing.TB) {
	t.Helper()
	c.waitFor(t, "routes", func() error {
		idx, _ := c.running()
		for _, i := range idx {
			var want []string
			c.mu.Lock()
			for _, j := range idx {
				if j != i && !c.links[pair(i, j)].down() {
					want = append(want, c.opts[j].Name)
				}
			}
			c.mu.Unlock()
			slices.Sort(want)
			if got := c.Peers(i); !slices.Equal(got, want) {
				return fmt.Errorf("server %d routes to %v, want %v", i, got, want)
			}
			if err := c.checkProxied(i); err != nil {
				t.Fatalf("clustertest: %v", err)
			}
		}
		return nil
	})
}

// checkProxied reports a route of server i that does not go through the
// fault proxies. A route i dialled directly to a peer's real cluster port
// has that port as its remote address on i's side (on the peer's side it
// looks like any accepted connection), so checking every server's routes
// for a remote address equal to a real cluster address finds all of them.
func (c *Cluster) checkProxied(i int) error {
	rz := c.routez(i)
	if rz == nil {
		return nil
	}
	c.mu.Lock()
	real := make(map[string]int, c.n)
	for j, addr := range c.cluster {
		real[addr] = j
	}
	c.mu.Unlock()
	for _, r := range rz.Routes {
		if j, ok := real[net.JoinHostPort(r.IP, strconv.Itoa(r.Port))]; ok {
			return fmt.Errorf("server %d has a route to %s straight to server %d's cluster port %s:%d, bypassing the fault proxies",
				i, r.RemoteName, j, r.IP, r.Port)
		}
	}
	return nil
}

// WaitForJetStream waits until JetStream is ready on the given servers
// (default: every running server): each is in contact with the same meta
// leader and current with it, and that leader sees every given server as a
// current peer, so streams of any replica count up to their number can be
// placed. Call it on a healthy cluster, or name the servers of the majority
// side of a partition.
func (c *Cluster) WaitForJetStream(t testing.TB, servers ...int) {
	t.Helper()
	c.waitFor(t, "JetStream", func() error {
		idx := servers
		if len(idx) == 0 {
			idx, _ = c.running()
		}
		var leader string
		for _, i := range idx {
			s := c.Server(i)
			if s == nil {
				return fmt.Errorf("server %d is down", i)
			}
			hs := s.Raw().Healthz(&server.HealthzOptions{JSMetaOnly: true})
			if hs.StatusCode != 200 {
				return fmt.Errorf("server %d: %s", i, hs.Error)
			}
			if c.n == 1 {
				return nil // standalone: no meta group
			}
			jsz, err := s.Raw().Jsz(nil)
			if err != nil {
				return fmt.Errorf("server %d: %v", i, err)
			}
			if jsz.Meta == nil || jsz.Meta.Leader == "" {
				return fmt.Errorf("server %d knows no meta leader", i)
			}
			if leader == "" {
				leader = jsz.Meta.Leader
			} else if jsz.Meta.Leader != leader {
				return fmt.Errorf("server %d sees meta leader %s, others %s", i, jsz.Meta.Leader, leader)
			}
		}
		li := c.index(leader)
		if li < 0 || c.Server(li) == nil {
			return fmt.Errorf("meta leader %q is not a running server of this cluster", leader)
		}
		jsz, err := c.Server(li).Raw().Jsz(nil)
		if err != nil || jsz.Meta == nil {
			return fmt.Errorf("meta leader %s: no meta info (%v)", leader, err)
		}
		for _, i := range idx {
			name := c.Name(i)
			if name == leader {
				continue
			}
			var ok bool
			for _, p := range jsz.Meta.Replicas {
				if p.Name == name && p.Current && !p.Offline {
					ok = true
				}
			}
			if !ok {
				return fmt.Errorf("meta leader %s does not see %s as a current peer (peers %s)", leader, name, peerList(jsz.Meta.Replicas))
			}
		}
		return nil
	})
}

func peerList(ps []*server.PeerInfo) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s(current=%t offline=%t)", p.Name, p.Current, p.Offline))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func (c *Cluster) index(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, o := range c.opts {
		if o.Name == name {
			return i
		}
	}
	return -1
}

// MetaLeader returns the index of the server that server i sees as the
// JetStream meta leader, or -1.
func (c *Cluster) MetaLeader(i int) int {
	s := c.Server(i)
	if s == nil {
		return -1
	}
	jsz, err := s.Raw().Jsz(nil)
	if err != nil || jsz.Meta == nil {
		return -1
	}
	return c.index(jsz.Meta.Leader)
}

// StreamState returns server i's own replica of the named stream (in any
// account), as stored on that server — not the leader's view that a
// STREAM.INFO request through server i would return.
func (c *Cluster) StreamState(i int, stream string) (server.StreamState, error) {
	s := c.Server(i)
	if s == nil {
		return server.StreamState{}, fmt.Errorf("server %d is down", i)
	}
	jsz, err := s.Raw().Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return server.StreamState{}, err
	}
	for _, acc := range jsz.AccountDetails {
		for _, sd := range acc.Streams {
			if sd.Name == stream {
				return sd.State, nil
			}
		}
	}
	return server.StreamState{}, fmt.Errorf("server %d has no replica of stream %q", i, stream)
}

// WaitForStreamMsgs waits until the given servers' replicas (default: every
// running server's) of the stream hold msgs messages, with the same last
// sequence.
func (c *Cluster) WaitForStreamMsgs(t testing.TB, stream string, msgs uint64, servers ...int) {
	t.Helper()
	c.waitFor(t, fmt.Sprintf("stream %s with %d messages", stream, msgs), func() error {
		idx := servers
		if len(idx) == 0 {
			idx, _ = c.running()
		}
		var last uint64
		for k, i := range idx {
			st, err := c.StreamState(i, stream)
			if err != nil {
				return err
			}
			if st.Msgs != msgs {
				return fmt.Errorf("server %d's replica has %d messages, want %d", i, st.Msgs, msgs)
			}
			if k > 0 && st.LastSeq != last {
				return fmt.Errorf("server %d's replica ends at sequence %d, another's at %d", i, st.LastSeq, last)
			}
			last = st.LastSeq
		}
		return nil
	})
}
