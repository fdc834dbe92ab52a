package catalog

import (
	"strings"
	"testing"
)

func TestTableIsConsistent(t *testing.T) {
	seen := map[string]bool{}
	for _, list := range [][]Metric{Metrics, Runtime} {
		for _, m := range list {
			if seen[m.Prometheus] {
				t.Errorf("%s listed twice", m.Prometheus)
			}
			seen[m.Prometheus] = true
			switch m.Type {
			case Counter:
				if !strings.HasSuffix(m.Prometheus, "_total") {
					t.Errorf("counter %s does not end in _total", m.Prometheus)
				}
			case Gauge, Histogram, Summary:
			default:
				t.Errorf("%s: type %q", m.Prometheus, m.Type)
			}
			if m.Unit == "s" && !strings.HasSuffix(m.Prometheus, "_seconds") {
				t.Errorf("%s: unit s but no _seconds suffix", m.Prometheus)
			}
			if m.Unit == "1" {
				t.Errorf("%s: unit 1 (the exporter would add _ratio)", m.Prometheus)
			}
			if m.Help == "" {
				t.Errorf("%s: no help", m.Prometheus)
			}
			if got, ok := Lookup(m.Prometheus); !ok || got.Prometheus != m.Prometheus {
				t.Errorf("Lookup(%q) = %v, %v", m.Prometheus, got, ok)
			}
		}
	}
	if _, ok := Lookup("no_such_metric"); ok {
		t.Error("Lookup found a metric that is not listed")
	}
}
