// Command signalbus is the one binary of the signalbus project: it runs
// cluster nodes, publishes and subscribes as a plain NATS client, and
// demonstrates the bus.
//
// Usage:
//
//	signalbus <command> [arguments]
//
// The commands are:
//
//	node       run a cluster node (embedded NATS, the bus, /metrics, /healthz,
//	           /readyz) until SIGINT or SIGTERM, then shut down cleanly
//	pub        publish signals as a NATS client: --type/--source/--data, or
//	           CloudEvents JSON lines from stdin; durable publishes wait for
//	           the stream's ack and a summary is printed
//	sub        print the signals matching a pattern, one CloudEvent JSON per
//	           line; --all/--since replay the stream, --group shares the load
//	demo       three nodes in one process through an isolation, with the
//	           verdict (lost, duplicated, reordered); --local: the bus alone
//	version    the module version, commit, Go version and embedded nats-server
//
// Run "signalbus help <command>" for a command's flags. For example:
//
//	signalbus node --name n1 --data-dir /tmp/n1 &
//	signalbus sub 'order.**' &
//	signalbus pub --type order.created --source /shop --data '{"id":1}' --count 10
//
// Every flag has an environment variable: SIGNALBUS_ and the flag's name
// upper-cased with '-' as '_' (--cluster-listen is SIGNALBUS_CLUSTER_LISTEN).
// A flag given on the command line wins over its variable; a bad value in a
// variable is a usage error that names the variable. Logs are slog on
// stderr (--log-format text|json, --log-level).
//
// pub and sub are clients, not members: they send no heartbeats and do not
// count towards a node's --expected-size. They speak the wire format
// through package cluster/client. A live sub uses core NATS (it works with
// fast and durable clusters alike, at most once); --all and --since use an
// ordered JetStream consumer on the durable stream.
//
// The layout follows litestream's cmd/litestream: main only turns errors into
// exit codes (0 success or help, 1 failure, 2 a mistake in the command line,
// 130 interrupted); Main.Run dispatches to one command type per file, each
// with its own flag set, so tests run commands in-process with their output
// captured.
package main
