// Package chaos injects faults into a running cluster of signalbus nodes:
// kill, restart, pause and resume a node; partition, isolate, bridge,
// slow or black-hole the links between nodes; heal. One interface,
// Cluster, has two backends: chaos/inprocess (embedded nodes in this
// process, every connection through a fault proxy: fast, for go test)
// and the container backend of the e2e module (real processes in Docker
// containers, iptables rules in their network namespaces: what make e2e
// runs). Both pass the same conformance suite, chaos/chaostest, so a
// scenario written against Cluster means the same on each.
//
// Journal wraps a Cluster and records every fault and heal with its time,
// so that a checker can judge what happened inside and outside each
// fault's window.
package chaos
