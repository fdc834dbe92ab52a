// Package globaltest holds the one test that installs the global
// OpenTelemetry providers. It is its own package so that it runs in its own
// test binary: the globals it sets cannot reach any other test.
package globaltest
