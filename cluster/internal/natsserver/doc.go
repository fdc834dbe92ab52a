// Package natsserver runs a nats-server in-process: the embedded server a
// signalbus node starts when it is given no external NATS URL.
//
// It wraps github.com/nats-io/nats-server/v2/server the way nats-server's own
// test helpers do (NewServer, Start on a goroutine, ReadyForConnections), with
// three differences that matter when the server lives inside an application:
// it never installs signal handlers (NoSigs), its log lines go to a
// *slog.Logger or nowhere (never to stderr, and a "fatal" line never exits the
// process), and its ping timers default to seconds rather than minutes so a
// dead route or client is noticed quickly (see DefaultPingInterval).
//
// JetStream's own Raft timers (election timeout 4–9 s, heartbeat 1 s, lost
// quorum after 10 s) are package variables of nats-server, not options, and
// are left at their defaults: a stream or meta leader that disappears is
// replaced after roughly 4 to 10 s.
package natsserver
