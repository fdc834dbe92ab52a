// Package catalog is the table of every metric a signalbus node exports,
// under the names a Prometheus scrape of its /metrics shows.
//
// It is the one place those names are written down: the telemetry scrape
// test checks a live node against it and the dashboards are generated
// from it, so a renamed instrument breaks a test instead of a panel. It
// depends on the standard library only, so that the dashboards module can
// import it without pulling the SDK.
package catalog
