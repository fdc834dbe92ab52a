package natsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// pollInterval paces the readiness polls of Start and JetStreamReady.
const pollInterval = 25 * time.Millisecond

// Server is a running embedded nats-server.
type Server struct {
	opts       Options
	ns         *server.Server
	log        *logBridge
	clientURL  string
	clusterURL string

	started      chan struct{} // closed when ns.Start has returned
	shutdownOnce sync.Once
	shutdownDone chan struct{} // closed when the server has fully shut down
}

// Start starts an embedded nats-server and returns once it accepts client
// (and, when clustered, route) connections. It does not wait for routes to
// peers or for a JetStream leader: servers of a cluster can be started
// concurrently and in any order (see JetStreamReady). If the server cannot
// listen, or is not ready before ctx ends, Start shuts it down and returns an
// error. (nats-server cannot be shut down in the middle of its own start-up,
// which includes recovering the JetStream store, so a Start whose ctx ends
// during that phase returns when it is over.)
func Start(ctx context.Context, o Options) (*Server, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("natsserver: start %q: %w", o.Name, context.Cause(ctx))
	}
	sopts, err := o.serverOptions()
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: new server %q: %w", o.Name, err)
	}
	// Always install a logger, even without o.Logger: it is how a failure
	// inside ns.Start (which reports it through Fatalf) reaches us.
	lb := newLogBridge(o.Logger, o.Name)
	ns.SetLoggerV2(lb, lb.debugEnabled(), false, false)

	s := &Server{
		opts:         o,
		ns:           ns,
		log:          lb,
		started:      make(chan struct{}),
		shutdownDone: make(chan struct{}),
	}
	go func() {
		defer close(s.started)
		ns.Start()
	}()
	if err := s.waitReady(ctx); err != nil {
		s.shutdownNow()
		return nil, fmt.Errorf("natsserver: start %q: %w", o.Name, err)
	}
	s.clientURL = addrURL("nats", ns.Addr())
	if o.ClusterListen != "" {
		if ca := ns.ClusterAddr(); ca != nil {
			s.clusterURL = addrURL("nats", ca)
		}
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context) error {
	select {
	case <-s.started:
	case <-ctx.Done():
		return fmt.Errorf("not started: %w", context.Cause(ctx))
	}
	for {
		if msg := s.log.fatal(); msg != "" {
			return errors.New(msg)
		}
		if s.ns.ReadyForConnections(2 * pollInterval) {
			break
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("not ready for connections: %w", context.Cause(ctx))
		}
	}
	if msg := s.log.fatal(); msg != "" {
		return errors.New(msg)
	}
	if s.opts.JetStream && !s.ns.JetStreamEnabled() {
		return errors.New("JetStream did not start")
	}
	return nil
}

func (o Options) serverOptions() (*server.Options, error) {
	listen := o.Listen
	if listen == "" {
		listen = DefaultListen
	}
	host, port, err := splitHostPort(listen)
	if err != nil {
		return nil, optErr("Listen", "%q: %v", listen, err)
	}
	sopts := &server.Options{
		ServerName: o.Name,
		Host:       host,
		Port:       freePort(port),
		// Never take the process's signals, never log on our own.
		NoSigs:                 true,
		NoLog:                  true,
		DisableJetStreamBanner: true,
		PingInterval:           o.PingInterval,
		MaxPingsOut:            o.MaxPingsOut,
		WriteDeadline:          o.WriteDeadline,
		JetStream:              o.JetStream,
		StoreDir:               o.StoreDir,
		SyncAlways:             o.SyncAlways,
	}
	if sopts.PingInterval == 0 {
		sopts.PingInterval = DefaultPingInterval
	}
	if sopts.MaxPingsOut == 0 {
		sopts.MaxPingsOut = DefaultMaxPingsOut
	}
	if o.ClusterListen != "" {
		chost, cport, err := splitHostPort(o.ClusterListen)
		if err != nil {
			return nil, optErr("ClusterListen", "%q: %v", o.ClusterListen, err)
		}
		sopts.Cluster = server.ClusterOpts{
			Name:          o.ClusterName,
			Host:          chost,
			Port:          freePort(cport),
			Advertise:     o.ClusterAdvertise,
			PingInterval:  sopts.PingInterval,
			MaxPingsOut:   sopts.MaxPingsOut,
			WriteDeadline: o.WriteDeadline,
		}
		routes := make([]*url.URL, 0, len(o.Routes))
		for i, r := range o.Routes {
			u, err := parseRoute(r)
			if err != nil {
				return nil, optErr(fmt.Sprintf("Routes[%d]", i), "%q: %v", r, err)
			}
			routes = append(routes, u)
		}
		sopts.Routes = routes
	}
	return sopts, nil
}

// freePort maps our "port 0 = any free port" onto nats-server's convention,
// where 0 means the default port and -1 (RANDOM_PORT) a free one.
func freePort(p int) int {
	if p == 0 {
		return server.RANDOM_PORT
	}
	return p
}

// addrURL turns a bound address into a URL a peer on this host can dial: an
// unspecified host (0.0.0.0, ::) becomes 127.0.0.1.
func addrURL(scheme string, a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil {
		return ""
	}
	host := ta.IP.String()
	if ta.IP == nil || ta.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(ta.Port))
}

// ClientURL is the client URL actually bound, e.g. nats://127.0.0.1:41234.
func (s *Server) ClientURL() string { return s.clientURL }

// ClusterURL is the route URL actually bound, for peers' Routes; "" when
// standalone.
func (s *Server) ClusterURL() string { return s.clusterURL }

// Name is the server name (nats-server's generated ID when none was given).
func (s *Server) Name() string { return s.ns.Name() }

// Options returns the options the server was started with.
func (s *Server) Options() Options { return s.opts }

// Raw is the underlying nats-server, for tests and monitoring (NumRoutes,
// Routez, Jsz, Healthz, ...). Do not Shutdown it directly; use Shutdown.
func (s *Server) Raw() *server.Server { return s.ns }

// Running reports whether the server is running (false once Shutdown began).
func (s *Server) Running() bool { return s.ns.Running() }

// JetStreamReady waits until JetStream can serve requests: enabled and, when
// clustered, this server is in contact with a meta leader and current with
// it (nats-server's /healthz?js-meta-only=true). In a fresh cluster that
// takes one Raft election, a few seconds; it never happens on the minority
// side of a partition. It returns an error when ctx ends first.
func (s *Server) JetStreamReady(ctx context.Context) error {
	if !s.opts.JetStream {
		return fmt.Errorf("natsserver: %s: JetStream is not enabled", s.opts.Name)
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		hs := s.ns.Healthz(&server.HealthzOptions{JSMetaOnly: true})
		if hs.StatusCode == 200 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsserver: %s: JetStream not ready (%s): %w", s.Name(), hs.Error, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// Shutdown stops the server (closing its clients and routes, stepping down
// its Raft leaderships) and waits until it has fully stopped, or until ctx
// ends: then it returns ctx's error and the shutdown carries on in the
// background. It is safe to call more than once and concurrently.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownAsync()
	select {
	case <-s.shutdownDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("natsserver: shutdown %s: %w", s.opts.Name, context.Cause(ctx))
	}
}

func (s *Server) shutdownAsync() {
	s.shutdownOnce.Do(func() {
		go func() {
			defer close(s.shutdownDone)
			// nats-server's Shutdown is not safe to run concurrently with
			// Start (the race detector finds them touching the same
			// fields), so a shutdown waits for Start to return first.
			<-s.started
			s.shutdownJetStream()
			s.ns.Shutdown()
			s.ns.WaitForShutdown()
		}()
	})
}

// shutdownJetStream takes JetStream down before the rest of the server,
// while the server (its system account above all) is still fully up.
//
// ns.Shutdown alone tears the system account's internal client down
// (shutdownEventing) before it stops JetStream's meta-group applier
// (shutdownJetStream). A stream or consumer Raft group that the applier
// creates in between opens its WAL file store, then fails to start
// ("system account not setup"), and nats-server v2.15.2 never stops that
// store (createRaftGroup drops it on the error): its state-flush goroutine
// and its reference on the process-wide access-time ticker (server/ats)
// stay for the life of the process. ns.ShutdownJetStream stops the applier
// first, then the streams, then every Raft group, so no group is created
// without a system account.
//
// ns.Shutdown would first hand over the leaderships this server holds;
// ShutdownJetStream hands over only the meta group's (waiting up to 2 s
// for it), so stream and consumer leaderships are handed over here first.
func (s *Server) shutdownJetStream() {
	if !s.ns.JetStreamEnabled() {
		return
	}
	if s.ns.JetStreamIsClustered() {
		if jsz, err := s.ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true}); err == nil {
			me := s.ns.Name()
			for _, acc := range jsz.AccountDetails {
				for _, st := range acc.Streams {
					if st.Cluster != nil && st.Cluster.Leader == me {
						_ = s.ns.JetStreamStepdownStream(acc.Name, st.Name)
					}
					for _, c := range st.Consumer {
						if c != nil && c.Cluster != nil && c.Cluster.Leader == me {
							_ = s.ns.JetStreamStepdownConsumer(acc.Name, st.Name, c.Name)
						}
					}
				}
			}
		}
	}
	_ = s.ns.ShutdownJetStream()
}

// Stopped is closed once the server has fully shut down, after Shutdown
// was called: Shutdown may return at its ctx's end before that.
func (s *Server) Stopped() <-chan struct{} { return s.shutdownDone }

func (s *Server) shutdownNow() {
	s.shutdownAsync()
	<-s.shutdownDone
}
