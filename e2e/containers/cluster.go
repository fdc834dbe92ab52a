package containers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/signalbus/signalbus/chaos"
	"github.com/signalbus/signalbus/internal/faultproxy"
)

// gossipAdvertise is the route address every node advertises: one
// nats-server never dials (it resolves to itself), so no node learns a
// peer's real address from route gossip and every route stays on the
// proxies. See package clustertest.
const gossipAdvertise = "localhost:1"

// stopTimeout bounds the waits of Kill and Close for a container to stop.
const stopTimeout = 30 * time.Second

// Cluster is a chaos.Cluster and chaos.Recorder of signalbus nodes in
// containers. Its methods are safe for concurrent use; operations on one
// node (Kill, Restart, Pause, Resume) run one at a time.
type Cluster struct {
	spec   Spec
	run    string
	labels map[string]string
	log    *slog.Logger
	names  []string

	docker   *testcontainers.DockerClient
	net      *testcontainers.DockerNetwork
	gateway  netip.Addr // the host's address on net: where the proxies listen
	image    *Image
	ownImage bool // built by Start: Close removes it

	proxyCancel context.CancelFunc
	proxies     [][]*faultproxy.Proxy // proxies[i][j], i ≠ j: node i's route to node j

	netMu sync.Mutex // one rule update at a time, so the last one wins everywhere

	mu     sync.Mutex
	nodes  []*node
	links  *chaos.Links // the network faults in force
	closed bool
}

// state is what the backend made of a node's container.
type state int

const (
	created state = iota
	running
	paused
	killed
)

func (s state) String() string {
	return [...]string{"created", "running", "paused", "killed"}[s]
}

// node is one node's container. The fields after ctr are guarded by
// Cluster.mu.
type node struct {
	name string
	opMu sync.Mutex // serialises Kill, Restart, Pause and Resume
	ctr  testcontainers.Container

	state      state
	pid        int
	ip         netip.Addr
	clientURL  string
	httpURL    string
	starts     int
	lastChange time.Time
	// guarded: the rules of the faults in force are in its namespace.
	// Until they are (a node just started), the proxies of its down
	// links drop everything too.
	guarded bool
}

// Start builds the node image, starts spec's nodes and waits until every
// node is ready (/readyz answers 200). ctx bounds the start only; the
// cluster lives until Close. On error everything made so far is removed.
func Start(ctx context.Context, spec Spec) (*Cluster, error) {
	return start(ctx, spec, nil)
}

// start is Start; created, if set, is handed each container as soon as
// it exists, before its creation error is looked at.
func start(ctx context.Context, spec Spec, created func(testcontainers.Container)) (c *Cluster, err error) {
	setupEnv()
	spec, err = spec.withDefaults()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	run := newRunID()
	c = &Cluster{
		spec: spec, run: run, labels: labels(run), log: spec.Logger.With("run", run),
	}
	for i := range spec.Nodes {
		c.names = append(c.names, nodeName(i))
		c.nodes = append(c.nodes, &node{name: nodeName(i)})
	}
	c.links = chaos.NewLinks(c.names)
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if cerr := c.Close(cctx); cerr != nil {
				err = errors.Join(err, cerr)
			}
			c = nil
		}
	}()

	c.docker, err = testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return c, fmt.Errorf("containers: docker client: %w", err)
	}
	if _, err := c.docker.Ping(ctx, client.PingOptions{}); err != nil {
		return c, fmt.Errorf("containers: no Docker engine answers: %w", err)
	}
	if err := SweepStale(ctx); err != nil {
		c.log.Warn("sweeping what earlier runs left", "error", err)
	}

	if c.image = spec.Image; c.image == nil {
		if c.image, err = BuildImage(ctx, spec.Binary); err != nil {
			return c, err
		}
		c.ownImage = true
		c.log.Info("image built", "image", c.image.Tag(), "took", time.Since(began).Round(time.Millisecond))
	}

	nw, err := tcnetwork.New(ctx, tcnetwork.WithLabels(c.labels))
	c.net = nw
	if err != nil {
		return c, fmt.Errorf("containers: create the network: %w", err)
	}
	ni, err := c.docker.NetworkInspect(ctx, nw.ID, client.NetworkInspectOptions{})
	if err != nil {
		return c, fmt.Errorf("containers: inspect the network: %w", err)
	}
	for _, cfg := range ni.Network.IPAM.Config {
		if cfg.Gateway.Is4() {
			c.gateway = cfg.Gateway
		}
	}
	if !c.gateway.IsValid() {
		return c, fmt.Errorf("containers: network %s has no IPv4 gateway", nw.Name)
	}

	if err := c.startProxies(); err != nil {
		return c, err
	}
	for i := range c.nodes {
		req := c.request(i)
		ctr, err := testcontainers.GenericContainer(ctx, req)
		if created != nil {
			created(ctr)
		}
		if ctr != nil {
			c.mu.Lock()
			c.nodes[i].ctr = ctr
			c.mu.Unlock()
		}
		if err != nil {
			return c, fmt.Errorf("containers: create %s: %w", c.names[i], err)
		}
	}
	// All at once: in durable mode no node is ready before a majority runs.
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Go(func() {
			if err := n.ctr.Start(ctx); err != nil {
				errs[i] = fmt.Errorf("containers: start %s: %w%s", n.name, err, c.logTail(n))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	c.log.Info("nodes started", "took", time.Since(began).Round(time.Millisecond))
	if err := c.WaitReady(ctx); err != nil {
		return c, err
	}
	c.log.Info("cluster ready", "nodes", spec.Nodes, "mode", spec.Mode, "took", time.Since(began).Round(time.Millisecond))
	return c, nil
}

// startProxies makes every node's route proxies, on the gateway address.
// Their targets are set when the target node starts.
func (c *Cluster) startProxies() error {
	ctx, cancel := context.WithCancel(context.Background())
	c.proxyCancel = cancel
	n := len(c.nodes)
	c.proxies = make([][]*faultproxy.Proxy, n)
	for i := range n {
		c.proxies[i] = make([]*faultproxy.Proxy, n)
		for j := range n {
			if i == j {
				continue
			}
			p, err := faultproxy.New(ctx, netip.AddrPortFrom(c.gateway, 0).String(), "")
			if err != nil {
				return fmt.Errorf("containers: route proxy %s→%s: %w", c.names[i], c.names[j], err)
			}
			c.proxies[i][j] = p
		}
	}
	return nil
}

// proxyPort is the port of node i's route proxy to node j.
func (c *Cluster) proxyPort(i, j int) uint16 {
	ap, _ := netip.ParseAddrPort(c.proxies[i][j].Addr())
	return ap.Port()
}

// args is node i's command line.
func (c *Cluster) args(i int) []string {
	name := c.names[i]
	args := []string{
		"node", "--name", name,
		"--listen", "0.0.0.0:" + strconv.Itoa(ClientPort),
		"--http", "0.0.0.0:" + strconv.Itoa(HTTPPort),
		"--data-dir", "/data",
		"--mode", c.spec.Mode,
		"--expected-size", strconv.Itoa(len(c.nodes)),
	}
	if len(c.nodes) > 1 {
		// Every route through a proxy, and one to itself, which
		// nats-server drops: it sizes the JetStream meta group by the
		// routes on a first start.
		routes := make([]string, len(c.nodes))
		for j := range c.nodes {
			if j == i {
				routes[j] = fmt.Sprintf("nats://%s:%d", name, RoutePort)
			} else {
				routes[j] = fmt.Sprintf("nats://%s", c.proxies[i][j].Addr())
			}
		}
		args = append(args,
			"--cluster-listen", "0.0.0.0:"+strconv.Itoa(RoutePort),
			"--cluster-advertise", gossipAdvertise,
			"--routes", strings.Join(routes, ","))
	}
	if c.spec.Args != nil {
		args = append(args, c.spec.Args(name)...)
	}
	return args
}

// request is node i's container request.
func (c *Cluster) request(i int) testcontainers.GenericContainerRequest {
	name := c.names[i]
	var files []testcontainers.ContainerFile
	for _, p := range slices.Sorted(maps.Keys(c.spec.Files)) {
		files = append(files, testcontainers.ContainerFile{
			Reader: strings.NewReader(string(c.spec.Files[p])), ContainerFilePath: p, FileMode: 0o644,
		})
	}
	clientPort := strconv.Itoa(ClientPort) + "/tcp"
	httpPort := strconv.Itoa(HTTPPort) + "/tcp"
	return testcontainers.GenericContainerRequest{
		Logger: tcLogger{c.log},
		ContainerRequest: testcontainers.ContainerRequest{
			Image:          c.image.Tag(),
			Cmd:            c.args(i),
			Env:            c.spec.Env,
			Labels:         c.labels,
			Name:           "signalbus-e2e-" + c.run + "-" + name,
			Networks:       []string{c.net.Name},
			NetworkAliases: map[string][]string{c.net.Name: {name}},
			ExposedPorts:   []string{clientPort, httpPort},
			Files:          files,
			HostConfigModifier: func(hc *container.HostConfig) {
				// Mapped on loopback only: nothing outside this host
				// reaches the nodes.
				lo := netip.MustParseAddr("127.0.0.1")
				hc.PortBindings = network.PortMap{
					network.MustParsePort(clientPort): {{HostIP: lo}},
					network.MustParsePort(httpPort):   {{HostIP: lo}},
				}
			},
			// The process serving HTTP, not readiness: a node restarted
			// alone, or into a minority, is not ready until its peers
			// are. Start waits for readiness with WaitReady.
			WaitingFor: wait.ForHTTP("/healthz").WithPort(httpPort).
				WithStartupTimeout(2 * time.Minute).WithPollInterval(100 * time.Millisecond),
			LifecycleHooks: []testcontainers.ContainerLifecycleHooks{{
				PostStarts: []testcontainers.ContainerHook{
					func(ctx context.Context, ctr testcontainers.Container) error { return c.started(ctx, i, ctr) },
				},
			}},
		},
	}
}

// started runs as soon as node i's container has started, before its
// readiness is waited for: it learns the container's pid, address and
// ports, points the proxies to it at its address, and puts the faults in
// force into its namespace.
func (c *Cluster) started(ctx context.Context, i int, ctr testcontainers.Container) error {
	info, err := ctr.Inspect(ctx)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	ep := info.NetworkSettings.Networks[c.net.Name]
	if ep == nil || !ep.IPAddress.IsValid() {
		return fmt.Errorf("no address on network %s", c.net.Name)
	}
	clientURL, err := mappedURL(info, "nats", ClientPort)
	if err != nil {
		return err
	}
	httpURL, err := mappedURL(info, "http", HTTPPort)
	if err != nil {
		return err
	}
	c.mu.Lock()
	n := c.nodes[i]
	moved := n.ip != ep.IPAddress
	n.state, n.pid, n.ip, n.clientURL, n.httpURL = running, info.State.Pid, ep.IPAddress, clientURL, httpURL
	n.starts++
	n.lastChange = time.Now()
	c.mu.Unlock()
	target := netip.AddrPortFrom(ep.IPAddress, RoutePort).String()
	for j := range c.nodes {
		if j != i {
			if err := c.proxies[j][i].SetTarget(target); err != nil {
				return err
			}
		}
	}
	c.log.Info("node started", "node", n.name, "start", n.starts, "pid", info.State.Pid, "ip", ep.IPAddress, "client", clientURL, "http", httpURL)
	if moved {
		return c.applyNet(ctx) // its old address is in its peers' rules
	}
	return c.applyRules(ctx, []int{i})
}

// mappedURL is scheme://127.0.0.1:<host port> for the container port.
func mappedURL(info *container.InspectResponse, scheme string, port int) (string, error) {
	p := network.MustParsePort(strconv.Itoa(port) + "/tcp")
	for _, b := range info.NetworkSettings.Ports[p] {
		if b.HostPort != "" && b.HostPort != "0" {
			return fmt.Sprintf("%s://127.0.0.1:%s", scheme, b.HostPort), nil
		}
	}
	return "", fmt.Errorf("port %d is not mapped", port)
}

// logTail is the end of node n's log, for an error message.
func (c *Cluster) logTail(n *node) string {
	if n.ctr == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc, err := n.ctr.Logs(ctx)
	if err != nil {
		return ""
	}
	defer rc.Close()
	data, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return "\n" + n.name + "'s log ends:\n" + strings.Join(lines, "\n")
}

// Nodes returns n1 … nN.
func (c *Cluster) Nodes() []string { return slices.Clone(c.names) }

func (c *Cluster) index(name string) (int, error) {
	if i := slices.Index(c.names, name); i >= 0 {
		return i, nil
	}
	return -1, fmt.Errorf("%w: %q (the nodes are %s)", chaos.ErrUnknownNode, name, strings.Join(c.names, ", "))
}

// ClientURL is node's NATS client URL on the host's loopback; it changes
// at each start. Empty for an unknown node. NATS clients should be made
// with nats.IgnoreDiscoveredServers: the servers tell them their
// container addresses, which bypass the port mapping.
func (c *Cluster) ClientURL(name string) string {
	i, err := c.index(name)
	if err != nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].clientURL
}

// HTTPURL is the base URL of node's HTTP listener on the host's loopback;
// it changes at each start. Empty for an unknown node.
func (c *Cluster) HTTPURL(name string) string {
	i, err := c.index(name)
	if err != nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].httpURL
}

// Logs returns node's output (stdout and stderr) so far, from every start.
func (c *Cluster) Logs(ctx context.Context, name string) (io.ReadCloser, error) {
	i, err := c.index(name)
	if err != nil {
		return nil, err
	}
	rc, err := c.nodes[i].ctr.Logs(ctx)
	if err != nil {
		return nil, fmt.Errorf("containers: logs of %s: %w", name, err)
	}
	return rc, nil
}

// Record returns node's workload record (Spec.RecordPath) as written so
// far, copied out of its container, running, paused or killed.
func (c *Cluster) Record(ctx context.Context, name string) (io.ReadCloser, error) {
	i, err := c.index(name)
	if err != nil {
		return nil, err
	}
	rc, err := c.nodes[i].ctr.CopyFileFromContainer(ctx, c.spec.RecordPath)
	if err != nil {
		return nil, fmt.Errorf("containers: record %s of %s: %w", c.spec.RecordPath, name, err)
	}
	return rc, nil
}

// Kill sends node SIGKILL and waits until its container has stopped. A
// killed node stays killed; a paused one is killed too.
func (c *Cluster) Kill(ctx context.Context, name string) error {
	i, err := c.index(name)
	if err != nil {
		return err
	}
	n := c.nodes[i]
	n.opMu.Lock()
	defer n.opMu.Unlock()
	return c.kill(ctx, i)
}

func (c *Cluster) kill(ctx context.Context, i int) error {
	n := c.nodes[i]
	c.mu.Lock()
	st := n.state
	c.mu.Unlock()
	if st == killed || st == created {
		return nil
	}
	id := n.ctr.GetContainerID()
	if _, err := c.docker.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		if info, ierr := c.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); ierr != nil || info.Container.State.Running {
			return fmt.Errorf("containers: kill %s: %w", n.name, err)
		}
		// It had stopped by itself already.
	}
	wctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	w := c.docker.ContainerWait(wctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case <-w.Result:
	case err := <-w.Error:
		return fmt.Errorf("containers: kill %s: waiting for it to stop: %w", n.name, err)
	}
	c.mu.Lock()
	n.state, n.pid, n.guarded = killed, 0, false
	n.lastChange = time.Now()
	c.applyProxiesLocked()
	c.mu.Unlock()
	// Refused at once, as a dead process's port is, rather than dialled
	// to an address nobody holds.
	for j := range c.nodes {
		if j != i {
			_ = c.proxies[j][i].SetTarget("")
		}
	}
	c.log.Info("fault", "op", "kill", "node", n.name)
	return nil
}

// Restart starts node's container again, on the writable layer it had, so
// its store in /data is kept; a running node is killed first. It returns
// once the node serves HTTP (its ports are new: see ClientURL): it is not
// ready before a majority of the cluster runs and reaches it, which
// WaitReady waits for.
func (c *Cluster) Restart(ctx context.Context, name string) error {
	i, err := c.index(name)
	if err != nil {
		return err
	}
	n := c.nodes[i]
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if err := c.kill(ctx, i); err != nil {
		return err
	}
	c.log.Info("fault", "op", "restart", "node", n.name)
	if err := n.ctr.Start(ctx); err != nil {
		return fmt.Errorf("containers: restart %s: %w%s", name, err, c.logTail(n))
	}
	return nil
}

// Pause freezes node's processes (the engine's pause): its sockets stay
// open, so its peers and clients see timeouts.
func (c *Cluster) Pause(ctx context.Context, name string) error {
	return c.setPaused(ctx, name, true)
}

// Resume thaws a paused node. Resuming a running node does nothing.
func (c *Cluster) Resume(ctx context.Context, name string) error {
	return c.setPaused(ctx, name, false)
}

func (c *Cluster) setPaused(ctx context.Context, name string, pause bool) error {
	i, err := c.index(name)
	if err != nil {
		return err
	}
	n := c.nodes[i]
	n.opMu.Lock()
	defer n.opMu.Unlock()
	c.mu.Lock()
	st := n.state
	c.mu.Unlock()
	switch {
	case st == killed || st == created:
		return fmt.Errorf("%w: %s is %s", chaos.ErrBadFault, name, st)
	case pause == (st == paused):
		return nil
	}
	id := n.ctr.GetContainerID()
	op, next := "resume", running
	if pause {
		op, next = "pause", paused
		_, err = c.docker.ContainerPause(ctx, id, client.ContainerPauseOptions{})
	} else {
		_, err = c.docker.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
	}
	if err != nil {
		return fmt.Errorf("containers: %s %s: %w", op, name, err)
	}
	c.mu.Lock()
	n.state = next
	n.lastChange = time.Now()
	c.mu.Unlock()
	c.log.Info("fault", "op", op, "node", name)
	return nil
}

// WaitReady waits until every node that is neither killed nor paused
// answers 200 on /readyz (connected, its stream answering in durable
// mode, not partitioned), or ctx ends.
func (c *Cluster) WaitReady(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	for {
		var missing []string
		c.mu.Lock()
		var check []*node
		for _, n := range c.nodes {
			if n.state == running {
				check = append(check, n)
			}
		}
		urls := make([]string, len(check))
		for k, n := range check {
			urls[k] = n.httpURL
		}
		c.mu.Unlock()
		for k, n := range check {
			if err := getOK(ctx, hc, urls[k]+"/readyz"); err != nil {
				missing = append(missing, n.name+": "+err.Error())
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("containers: not ready (%s): %w", strings.Join(missing, "; "), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// getOK GETs url and wants 200.
func getOK(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// Close removes the cluster's containers and network, and its image
// unless it came from Spec.Image, and stops its proxies. It returns ctx.Err() if ctx ends first; calling it again
// does nothing.
func (c *Cluster) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	var errs []error
	for _, n := range c.nodes {
		if n.ctr != nil {
			if err := n.ctr.Terminate(ctx, testcontainers.StopTimeout(0)); err != nil && !notFound(err) {
				errs = append(errs, fmt.Errorf("remove %s: %w", n.name, err))
			}
		}
	}
	if c.net != nil {
		if err := c.net.Remove(ctx); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("remove network: %w", err))
		}
	}
	if c.ownImage {
		if err := c.image.Remove(ctx); err != nil {
			errs = append(errs, fmt.Errorf("remove image: %w", err))
		}
	}
	// Whatever the handles above missed (a container whose creation
	// failed half-way).
	if c.docker != nil {
		if err := sweepRun(ctx, c.run); err != nil {
			errs = append(errs, err)
		}
	}
	if c.proxyCancel != nil {
		c.proxyCancel()
		for _, row := range c.proxies {
			for _, p := range row {
				if p != nil {
					_ = p.Close()
				}
			}
		}
	}
	if c.docker != nil {
		_ = c.docker.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("containers: close: %w", err)
	}
	return ctx.Err()
}

func notFound(err error) bool { return errdefs.IsNotFound(err) }

// tcLogger passes testcontainers' messages to the backend's log.
type tcLogger struct{ log *slog.Logger }

func (l tcLogger) Printf(format string, v ...any) {
	l.log.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)), "from", "testcontainers")
}

var (
	_ chaos.Cluster  = (*Cluster)(nil)
	_ chaos.Recorder = (*Cluster)(nil)
)
