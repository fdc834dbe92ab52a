// Package inprocess is the in-process backend of chaos.Cluster: embedded
// signalbus nodes in this process, each connection they have with the
// outside (routes, NATS clients, HTTP) through a fault proxy, so that the
// scenarios of make e2e also run under go test, without Docker, in
// seconds.
//
// What it cannot show: a pause freezes the node's connections and its
// App, not its goroutines; a kill drops its connections and what it had
// not sent, but its store is closed cleanly. The container backend shows
// both for real.
package inprocess
