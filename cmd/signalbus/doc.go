// Command signalbus is the one binary of the signalbus project. It runs an
// in-process demonstration of the bus today; the cluster commands (node,
// pub, sub, load) join it as they are built.
//
// Usage:
//
//	signalbus <command> [arguments]
//
// The commands are:
//
//	demo       publish a stream of order signals through an in-process bus
//	           and show its metrics, retries, dead letters, replay and spans
//	version    print the version of the binary
//
// Run "signalbus help <command>" for a command's flags. For example:
//
//	signalbus demo -rate 5000 -duration 10s -seed 7
//
// The layout follows litestream's cmd/litestream: main only turns errors into
// exit codes (0 success or help, 1 failure, 2 a mistake in the command line,
// 130 interrupted); Main.Run dispatches to one command type per file, each
// with its own flag set, so tests run commands in-process with their output
// captured.
package main
