package dashboards_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/signalbus/signalbus/dashboards"
)

// jsonBoard is the part of a committed dashboard the tests read, decoded
// from the JSON Grafana loads rather than from the SDK's types.
type jsonBoard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []jsonPanel `json:"panels"`
}

type jsonPanel struct {
	ID          int                      `json:"id"`
	Type        string                   `json:"type"`
	Title       string                   `json:"title"`
	GridPos     struct{ H, W, X, Y int } `json:"gridPos"`
	Datasource  map[string]any           `json:"datasource"`
	FieldConfig struct {
		Defaults struct {
			Unit   string `json:"unit"`
			Custom struct {
				Stacking struct {
					Mode string `json:"mode"`
				} `json:"stacking"`
			} `json:"custom"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource map[string]any `json:"datasource"`
	} `json:"targets"`
}

// target is one panel query, for the tests that run over all of them.
type target struct {
	board, panel, refID, expr string
}

func (t target) String() string { return fmt.Sprintf("%s / %s / %s", t.board, t.panel, t.refID) }

// committed reads every dashboard file All names, as committed.
func committed(t *testing.T) map[string]jsonBoard {
	t.Helper()
	boards, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]jsonBoard)
	for _, b := range boards {
		data, err := os.ReadFile(b.File)
		if err != nil {
			t.Fatalf("%v (run `go generate` in dashboards/)", err)
		}
		var jb jsonBoard
		if err := json.Unmarshal(data, &jb); err != nil {
			t.Fatalf("%s: %v", b.File, err)
		}
		out[b.File] = jb
	}
	return out
}

func targets(t *testing.T) []target {
	t.Helper()
	var out []target
	for _, b := range committed(t) {
		for _, p := range b.Panels {
			for _, q := range p.Targets {
				out = append(out, target{b.Title, p.Title, q.RefID, q.Expr})
			}
		}
	}
	return out
}

// Grafana's variables as the tests substitute them. $__rate_interval must
// span at least two scrapes of the real-Prometheus test (1 s apart).
var substitutions = strings.NewReplacer(
	"$__rate_interval", "5s",
	"$__interval", "5s",
	"$__range", "5m",
	"${node}", ".*",
	"$node", ".*",
)

func substitute(expr string) string { return substitutions.Replace(expr) }

func parse(expr string) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(substitute(expr))
}

// metricNames are the metric names an expression selects, histogram series
// (_bucket, _sum, _count) reported under the name as scraped.
func metricNames(t *testing.T, e parser.Expr) []string {
	t.Helper()
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				t.Errorf("selector %s has no metric name", vs)
			}
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}
