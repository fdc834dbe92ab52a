package readmetest

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/signalbus/signalbus/telemetry/catalog"
)

// metricName matches a backticked name of a metric family a node exports.
var metricName = regexp.MustCompile("`((?:messaging|signalbus|jetstream|gnatsd)_[a-z0-9_]+)")

// TestOperationsListsEveryMetric keeps docs/operations.md's metrics
// reference in step with telemetry/catalog, the table the scrape and
// dashboard tests check a live node against: every family is documented,
// and every family the page names (label names aside) exists.
func TestOperationsListsEveryMetric(t *testing.T) {
	md, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, m := range metricName.FindAllStringSubmatch(string(md), -1) {
		named[m[1]] = true
	}
	for _, m := range catalog.Metrics {
		if m.Prometheus == "target_info" {
			continue
		}
		if !named[m.Prometheus] {
			t.Errorf("docs/operations.md does not document %s (%s)", m.Prometheus, m.Help)
		}
	}
	labels := map[string]bool{}
	for _, m := range catalog.Metrics {
		for _, l := range m.Labels {
			labels[l] = true
		}
	}
	for name := range named {
		if labels[name] {
			continue
		}
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if _, ok := catalog.Lookup(base); !ok && !strings.HasSuffix(name, "_") {
			t.Errorf("docs/operations.md names %s, which a node does not export (not in telemetry/catalog)", name)
		}
	}
}
