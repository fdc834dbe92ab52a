package natsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultListen is the client listen address used when Options.Listen is empty.
const DefaultListen = "127.0.0.1:4222"

// Ping defaults. nats-server's own default is a PING every 2 minutes with 2
// outstanding before a connection is declared stale, i.e. a dead peer that
// does not close its socket (a black-holed link, a frozen process) is noticed
// after up to 6 minutes. An embedded server in a signalbus cluster must notice
// a dead route in seconds, so the defaults here are one PING a second and a
// connection closed after 3 unanswered ones: a silent peer is dropped after
// about (3+1) × 1 s = 4 s. A PING/PONG pair is a few dozen bytes per
// connection per second, which is nothing on a LAN or loopback. The same
// values apply to client connections and to routes.
const (
	DefaultPingInterval = time.Second
	DefaultMaxPingsOut  = 3
)

// ErrInvalidOptions is wrapped by every error Options.Validate returns.
var ErrInvalidOptions = errors.New("natsserver: invalid options")

// OptionError reports one bad field of Options. It wraps ErrInvalidOptions.
type OptionError struct {
	Field  string // the Options field, e.g. "ClusterName" or "Routes[1]"
	Reason string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("natsserver: invalid options: %s: %s", e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidOptions) true.
func (e *OptionError) Unwrap() error { return ErrInvalidOptions }

func optErr(field, format string, args ...any) error {
	return &OptionError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Options configures an embedded nats-server. The zero value (plus a
// StoreDir when JetStream is on) is a standalone server on DefaultListen.
type Options struct {
	// Name is the server name. Required when clustered (JetStream identifies
	// Raft peers by it, so it must be unique in the cluster and stable across
	// restarts). Standalone, empty means nats-server's generated ID.
	Name string

	// Listen is the client listen address, host:port. Port 0 (e.g. ":0" or
	// "127.0.0.1:0") picks a free port; ClientURL reports the one bound.
	// Empty means DefaultListen. An empty host listens on all interfaces.
	Listen string

	// ClusterName names the route cluster; required with ClusterListen.
	ClusterName string

	// ClusterListen is the route listen address, host:port (port 0 = free
	// port). Empty means a standalone server: no routes.
	ClusterListen string

	// ClusterAdvertise, if set, is the route address this server tells its
	// peers about (nats-server's cluster "advertise"). Peers that learn of
	// this server through another server's gossip dial this address; leave
	// it empty to let them use the address they see. Only with ClusterListen.
	ClusterAdvertise string

	// Routes are the cluster's route URLs, nats://host:port (or
	// nats-route://host:port). This server dials each of them and keeps
	// redialling while it is down. List every server of the cluster, this
	// one included (nats-server recognises and drops a route to itself):
	// on a cluster's first start, nats-server sizes the JetStream meta group
	// by the number of routes (at least 2), so listing only the peers
	// understates it, and a lone clustered JetStream server never elects a
	// leader (run it standalone instead). Only with ClusterListen; required
	// with JetStream.
	Routes []string

	// StoreDir is the JetStream store directory; required when JetStream is on.
	StoreDir string

	// JetStream enables JetStream (clustered when ClusterListen is set).
	JetStream bool

	// SyncAlways makes JetStream fsync every write before acknowledging it
	// (nats-server's "sync_interval: always"). Off (nats-server's default),
	// writes reach the OS promptly but are fsynced only every 2 minutes: a
	// crash of the process alone loses little or nothing, a machine or power
	// failure may lose a replica's latest writes (in a cluster the other
	// replicas usually still hold them). On, every acknowledged write is on
	// disk, at a large throughput cost on most disks.
	SyncAlways bool

	// PingInterval is how often the server PINGs clients and routes; zero
	// means DefaultPingInterval.
	PingInterval time.Duration

	// MaxPingsOut is how many PINGs may go unanswered before the connection
	// is closed as stale; zero means DefaultMaxPingsOut.
	MaxPingsOut int

	// WriteDeadline bounds a blocked write to a client or route before the
	// connection is closed (a slow consumer); zero means nats-server's
	// default (10 s).
	WriteDeadline time.Duration

	// Logger receives the server's log lines: notices and debug lines at
	// debug level, warnings at warn, errors and fatal errors at error. Trace
	// lines are never produced. Nil means no logging.
	Logger *slog.Logger
}

// Validate reports the first invalid field as an *OptionError wrapping
// ErrInvalidOptions. It checks syntax only: whether an address can be bound
// is found out by Start.
func (o Options) Validate() error {
	if strings.ContainsAny(o.Name, " \t\r\n") {
		return optErr("Name", "%q contains white space", o.Name)
	}
	if o.Listen != "" {
		if err := checkHostPort(o.Listen); err != nil {
			return optErr("Listen", "%q: %v", o.Listen, err)
		}
	}
	clustered := o.ClusterListen != ""
	if clustered {
		if err := checkHostPort(o.ClusterListen); err != nil {
			return optErr("ClusterListen", "%q: %v", o.ClusterListen, err)
		}
		if o.ClusterName == "" {
			return optErr("ClusterName", "required with ClusterListen")
		}
		if strings.ContainsAny(o.ClusterName, " \t\r\n") {
			return optErr("ClusterName", "%q contains white space", o.ClusterName)
		}
		if o.Name == "" {
			return optErr("Name", "required with ClusterListen (JetStream and routes identify servers by name)")
		}
		if o.JetStream && len(o.Routes) == 0 {
			// nats-server refuses to start clustered JetStream without them.
			return optErr("Routes", "required with ClusterListen and JetStream")
		}
	} else {
		if o.ClusterName != "" {
			return optErr("ClusterName", "set without ClusterListen")
		}
		if len(o.Routes) > 0 {
			return optErr("Routes", "set without ClusterListen")
		}
		if o.ClusterAdvertise != "" {
			return optErr("ClusterAdvertise", "set without ClusterListen")
		}
	}
	if o.ClusterAdvertise != "" {
		if err := checkHostPort(o.ClusterAdvertise); err != nil {
			return optErr("ClusterAdvertise", "%q: %v", o.ClusterAdvertise, err)
		}
		if _, p, _ := net.SplitHostPort(o.ClusterAdvertise); p == "0" {
			return optErr("ClusterAdvertise", "%q: port 0 cannot be advertised", o.ClusterAdvertise)
		}
	}
	for i, r := range o.Routes {
		if _, err := parseRoute(r); err != nil {
			return optErr(fmt.Sprintf("Routes[%d]", i), "%q: %v", r, err)
		}
	}
	if o.JetStream && o.StoreDir == "" {
		return optErr("StoreDir", "required with JetStream")
	}
	if o.PingInterval < 0 {
		return optErr("PingInterval", "negative (%v)", o.PingInterval)
	}
	if o.MaxPingsOut < 0 {
		return optErr("MaxPingsOut", "negative (%d)", o.MaxPingsOut)
	}
	if o.WriteDeadline < 0 {
		return optErr("WriteDeadline", "negative (%v)", o.WriteDeadline)
	}
	return nil
}

// checkHostPort accepts host:port with a numeric port in 0..65535; the host
// may be empty (all interfaces).
func checkHostPort(hp string) error {
	_, _, err := splitHostPort(hp)
	return err
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number in 0..65535", p)
	}
	if strings.ContainsAny(host, " \t\r\n/") {
		return "", 0, fmt.Errorf("bad host %q", host)
	}
	return host, port, nil
}

func parseRoute(r string) (*url.URL, error) {
	u, err := url.Parse(r)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "nats", "nats-route":
	default:
		return nil, fmt.Errorf("scheme must be nats:// or nats-route://")
	}
	host, port, err := splitHostPort(u.Host)
	if err != nil {
		return nil, err
	}
	if host == "" || port == 0 {
		return nil, fmt.Errorf("need a host and a non-zero port")
	}
	return u, nil
}
