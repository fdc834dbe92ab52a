// Package dashboards generates the Grafana dashboards that ship with
// signalbus, and holds the Prometheus files that go with them.
//
// The dashboards are Go code built with the Grafana Foundation SDK, so a
// test can walk every panel: its grid position, its unit, its datasource and
// each PromQL expression, which must parse and name only metrics a node
// exports. The committed JSON (dashboards/*.json) is what Grafana loads;
// `go generate ./...` (or `make dashboards`) rewrites it, and a test fails
// when the two differ.
//
// This is a module of its own, so that the SDK and the Prometheus parser its
// tests use stay out of the library's requirements.
//
//	boards, err := dashboards.All()
//	for _, b := range boards {
//		data, _ := b.JSON() // what dashboards/<b.File> holds
//	}
package dashboards

//go:generate go run ./cmd/gen -dir .
