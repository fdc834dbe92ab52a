package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/signalbus/signalbus/bus"
)

// Mode chooses the delivery guarantee of a node.
type Mode int

const (
	// Durable stores every signal in a JetStream stream before Publish
	// returns: at-least-once on the wire, deduplicated to effectively once
	// per handler. The default.
	Durable Mode = iota
	// Fast sends over core NATS: at-most-once, no store, no duplicate, no
	// reorder; losses only while a link is down.
	Fast
)

func (m Mode) String() string {
	switch m {
	case Durable:
		return "durable"
	case Fast:
		return "fast"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Encoding chooses how signals travel on the wire.
type Encoding int

const (
	// Binary sends every signal as a NATS message of its own in the
	// CloudEvents NATS binding's binary mode: any NATS client or
	// CloudEvents SDK reads it, and each signal is acknowledged, and
	// redelivered, on its own. The default.
	Binary Encoding = iota
	// ProtobufBatch sends each batch (each run of one type within it) as
	// one NATS message in the CloudEvents protobuf batch format
	// (application/cloudevents-batch+protobuf). It carries several times
	// the signals per second, since NATS and JetStream handle one message
	// per batch instead of one per signal. The costs: a reader must know
	// that format (the CloudEvents SDKs' protobuf format reads each event,
	// but a plain subscriber sees one message per batch); and in durable
	// mode JetStream acknowledges and redelivers a batch as a whole, so a
	// node that stops with part of a batch handled gets the whole batch
	// again after its restart, and its handlers see that part twice (the
	// dedup window does not survive a restart). Nodes of either encoding
	// read both.
	ProtobufBatch
)

func (e Encoding) String() string {
	switch e {
	case Binary:
		return "binary"
	case ProtobufBatch:
		return "protobuf-batch"
	}
	return fmt.Sprintf("Encoding(%d)", int(e))
}

// Config configures a node. Name is required; every other field has a
// default that works on one machine.
type Config struct {
	// Name identifies the node: unique in the cluster and stable across
	// restarts (durable consumers and membership are keyed by it). It is
	// used as it is in NATS subjects, JetStream consumer and server names,
	// store directories and message headers, so it is 1 to MaxNameLength
	// of A-Z, a-z, 0-9, '_' and '-'.
	Name string
	// NATSURL is an external NATS server or cluster (comma-separated
	// URLs). Empty: the node runs an embedded nats-server in-process.
	NATSURL string
	// Listen is the embedded server's client address. Default
	// 127.0.0.1:4222; ":0" (or port 0) picks a free port.
	Listen string
	// ClusterListen is the embedded server's route address; empty runs a
	// standalone server.
	ClusterListen string
	// ClusterAdvertise is the route address the embedded server tells its
	// peers about (nats-server's cluster advertise), host:port; empty: the
	// address they see. Peers that hear of this server through another's
	// route gossip dial it, so set it where that address is not the one
	// they can reach: behind NAT or in a container (the host's address),
	// or when every route must go through proxies (an address no one
	// should dial). Only with ClusterListen.
	ClusterAdvertise string
	// Routes are the embedded server's peers (nats://host:port).
	Routes []string
	// ClusterName names the embedded servers' NATS cluster. Default
	// "signalbus".
	ClusterName string
	// DataDir holds the embedded JetStream store; empty means a temporary
	// directory removed on Close.
	DataDir string
	// Mode is Durable (the default) or Fast.
	Mode Mode
	// Encoding is how signals travel: Binary (the default: one message
	// per signal, readable by any client) or ProtobufBatch (one message
	// per batch: faster; see its documentation for the costs).
	Encoding Encoding
	// Replicas is the stream's replica count in durable mode. Default
	// min(3, ExpectedSize), or 1 when ExpectedSize is not set: give a
	// cluster its ExpectedSize (or Replicas).
	Replicas int
	// DuplicateWindow is how long the stream remembers a Nats-Msg-Id to
	// drop a re-published signal. Default 2 minutes.
	DuplicateWindow time.Duration
	// DedupSize is how many signal ids a node remembers to hand each to
	// its handlers once across redeliveries. Default 100 000.
	DedupSize int
	// OutboxSize bounds the signals PublishAsync may hold while the
	// cluster is unreachable. Default 100 000.
	OutboxSize int
	// BatchSize is the most signals the node sends at once: every publish
	// joins one queue, from which batches go out pipelined (in durable
	// mode, the stream acknowledges a batch's signals together). Default
	// 256. With the Binary encoding each signal is still its own message
	// on the wire; with ProtobufBatch a batch is one message.
	BatchSize int
	// BatchLinger is how long a batch smaller than BatchSize waits for
	// more signals before it is sent. Default 0: a batch goes as soon as
	// the previous one is done, holding whatever was queued meanwhile.
	// A linger trades latency for fewer, fuller batches when many
	// goroutines publish at once. Close sends at once, without lingering.
	BatchLinger time.Duration
	// TracerProvider receives the node's batch spans. Default: the global
	// one. (The bus's own spans follow its BusOptions.)
	TracerProvider trace.TracerProvider
	// ReorderGap is how long a node holds back a publisher's later signals
	// waiting for a missing one (durable mode) before it skips the gap.
	// Default 10 s: twice the consumer's ack wait, so that a delivery lost
	// when a consumer's leader moves is redelivered within it.
	ReorderGap time.Duration
	// ReorderLimit bounds the signals held back; past it the oldest gap is
	// skipped at once. Default 10 000.
	ReorderLimit int
	// NoSync lets the embedded JetStream store acknowledge a write before
	// it is fsynced. By default every write is fsynced first (nats-server's
	// sync_interval "always"): an acknowledged signal survives a power
	// failure of the machine, at a large throughput cost on most disks.
	// With NoSync the store is flushed to the OS on every write but
	// fsynced every 2 minutes: a process crash loses nothing, a machine
	// crash may lose the last writes of a replica (the other replicas of an
	// R3 stream usually still have them).
	NoSync bool
	// ExpectedSize is the number of nodes in a healthy cluster, for
	// partition detection. Default: the largest number seen.
	ExpectedSize int
	// Prefix is the subject prefix: signals travel on <Prefix>.<type>.
	// Default "signals".
	Prefix string
	// DeadLetterSubject is where messages that are not valid CloudEvents
	// are parked, with the reason in a header. Default
	// "signalbus.deadletter".
	DeadLetterSubject string
	// HeartbeatInterval is how often the node announces itself. Default
	// 500 ms.
	HeartbeatInterval time.Duration
	// MissedHeartbeats is how many intervals a member may stay silent
	// before it is marked down. Default 4: a dead node is down within
	// about 2.5 s with the default interval.
	MissedHeartbeats int
	// MembershipSubject prefixes the heartbeat subjects
	// (<MembershipSubject>.<name>). Default "signalbus.members".
	MembershipSubject string
	// MeterProvider receives the cluster metrics. Default: the global one.
	MeterProvider metric.MeterProvider
	// ConnectTimeout bounds each connection Start makes to NATS (one;
	// two in fast mode, where signals have a connection of their own).
	// Default 10 s.
	ConnectTimeout time.Duration
	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger
	// BusOptions are passed to bus.New for the node's bus (WithName is
	// set to Name unless given).
	BusOptions []bus.Option
}

// MaxNameLength is the longest Config.Name: the node's name is part of
// directory and consumer names, which file systems bound.
const MaxNameLength = 64

func isNameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}

// ErrInvalidConfig is wrapped by every *ConfigError.
var ErrInvalidConfig = errors.New("invalid cluster config")

// ConfigError names the Config field that is wrong, and why.
type ConfigError struct {
	Field string
	Value any
	Err   error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%v: %s %q %v", ErrInvalidConfig, e.Field, fmt.Sprint(e.Value), e.Err)
}

// Unwrap returns both ErrInvalidConfig and the cause.
func (e *ConfigError) Unwrap() []error { return []error{ErrInvalidConfig, e.Err} }

// Validate reports the first field of c that cannot work, as a
// *ConfigError. It does not apply defaults.
func (c Config) Validate() error {
	bad := func(field string, value any, format string, args ...any) error {
		return &ConfigError{Field: field, Value: value, Err: fmt.Errorf(format, args...)}
	}
	if c.Name == "" {
		return bad("Name", c.Name, "is required")
	}
	if len(c.Name) > MaxNameLength {
		return bad("Name", c.Name, "is %d bytes long, over %d (it names directories and JetStream consumers)", len(c.Name), MaxNameLength)
	}
	if i := strings.IndexFunc(c.Name, func(r rune) bool { return !isNameChar(r) }); i >= 0 {
		return bad("Name", c.Name, "has %q at byte %d: only A-Z, a-z, 0-9, '_' and '-' (it is used in NATS subjects, names and headers)", []rune(c.Name[i:])[0], i)
	}
	if c.Mode != Durable && c.Mode != Fast {
		return bad("Mode", c.Mode, "is neither Durable nor Fast")
	}
	if c.Encoding != Binary && c.Encoding != ProtobufBatch {
		return bad("Encoding", c.Encoding, "is neither Binary nor ProtobufBatch")
	}
	if c.NATSURL != "" {
		for _, u := range strings.Split(c.NATSURL, ",") {
			if _, err := url.Parse(strings.TrimSpace(u)); err != nil || strings.TrimSpace(u) == "" {
				return bad("NATSURL", u, "is not a URL")
			}
		}
		if c.Listen != "" || c.ClusterListen != "" || c.ClusterAdvertise != "" || len(c.Routes) > 0 || c.DataDir != "" {
			return bad("NATSURL", c.NATSURL, "is set, so the node runs no server: leave Listen, ClusterListen, ClusterAdvertise, Routes and DataDir empty")
		}
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return bad("Listen", c.Listen, "is not host:port: %w", err)
		}
	}
	if c.ClusterListen != "" {
		if _, _, err := net.SplitHostPort(c.ClusterListen); err != nil {
			return bad("ClusterListen", c.ClusterListen, "is not host:port: %w", err)
		}
	}
	if c.ClusterAdvertise != "" {
		if c.ClusterListen == "" {
			return bad("ClusterAdvertise", c.ClusterAdvertise, "needs ClusterListen: a standalone server has no routes to advertise")
		}
		host, port, err := net.SplitHostPort(c.ClusterAdvertise)
		if err != nil {
			return bad("ClusterAdvertise", c.ClusterAdvertise, "is not host:port: %w", err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || host == "" {
			return bad("ClusterAdvertise", c.ClusterAdvertise, "needs a host and a port in 1…65535 (peers dial it)")
		}
	}
	if len(c.Routes) > 0 && c.ClusterListen == "" {
		return bad("Routes", c.Routes, "need ClusterListen: a standalone server has no routes")
	}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "nats-route") {
			return bad("Routes", r, "is not a nats://host:port URL")
		}
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return bad("Replicas", c.Replicas, "must be between 1 and 5 (0: default)")
	}
	if c.ExpectedSize < 0 {
		return bad("ExpectedSize", c.ExpectedSize, "is negative")
	}
	if c.Prefix != "" {
		if err := bus.ValidatePattern(c.Prefix); err != nil || strings.Contains(c.Prefix, "*") {
			return bad("Prefix", c.Prefix, "must be dot-separated segments of [A-Za-z0-9_-]")
		}
	}
	if c.DeadLetterSubject != "" && strings.ContainsAny(c.DeadLetterSubject, " \t\r\n*>") {
		return bad("DeadLetterSubject", c.DeadLetterSubject, "is not a literal NATS subject")
	}
	// Counts and durations where 0 means "the default" and only a
	// negative value is wrong, in field order.
	for _, f := range []struct {
		name  string
		value int64
		show  any
	}{
		{"DuplicateWindow", int64(c.DuplicateWindow), c.DuplicateWindow},
		{"OutboxSize", int64(c.OutboxSize), c.OutboxSize},
		{"BatchSize", int64(c.BatchSize), c.BatchSize},
		{"BatchLinger", int64(c.BatchLinger), c.BatchLinger},
		{"ReorderGap", int64(c.ReorderGap), c.ReorderGap},
		{"ReorderLimit", int64(c.ReorderLimit), c.ReorderLimit},
		{"DedupSize", int64(c.DedupSize), c.DedupSize},
		{"HeartbeatInterval", int64(c.HeartbeatInterval), c.HeartbeatInterval},
		{"MissedHeartbeats", int64(c.MissedHeartbeats), c.MissedHeartbeats},
	} {
		if f.value < 0 {
			return bad(f.name, f.show, "is negative")
		}
	}
	if c.MembershipSubject != "" && strings.ContainsAny(c.MembershipSubject, " \t\r\n*>") {
		return bad("MembershipSubject", c.MembershipSubject, "is not a literal NATS subject")
	}
	if c.ConnectTimeout < 0 {
		return bad("ConnectTimeout", c.ConnectTimeout, "is negative")
	}
	return nil
}

// withDefaults returns c with every empty field set to its default.
func (c Config) withDefaults() Config {
	if c.NATSURL == "" && c.Listen == "" {
		c.Listen = "127.0.0.1:4222"
	}
	if c.ClusterName == "" {
		c.ClusterName = "signalbus"
	}
	if c.Prefix == "" {
		c.Prefix = "signals"
	}
	if c.DeadLetterSubject == "" {
		c.DeadLetterSubject = "signalbus.deadletter"
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.Replicas == 0 {
		c.Replicas = max(1, min(3, c.ExpectedSize))
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
	if c.DedupSize == 0 {
		c.DedupSize = 100_000
	}
	if c.OutboxSize == 0 {
		c.OutboxSize = 100_000
	}
	if c.BatchSize == 0 {
		c.BatchSize = 256
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.ReorderGap == 0 {
		c.ReorderGap = 2 * ackWait
	}
	if c.ReorderLimit == 0 {
		c.ReorderLimit = 10_000
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 500 * time.Millisecond
	}
	if c.MissedHeartbeats == 0 {
		c.MissedHeartbeats = 4
	}
	if c.MembershipSubject == "" {
		c.MembershipSubject = "signalbus.members"
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
