package dashboards_test

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/signalbus/signalbus/dashboards"
	"github.com/signalbus/signalbus/telemetry/catalog"
)

func TestCommittedJSONIsGenerated(t *testing.T) {
	boards, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(boards) != 8 {
		t.Errorf("%d dashboards, want 8", len(boards))
	}
	for _, b := range boards {
		want, err := b.JSON()
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(b.File)
		if err != nil {
			t.Fatalf("%v (run `go generate` in dashboards/)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the generator writes: run `make dashboards` and commit", b.File)
		}
	}
}

func TestStructure(t *testing.T) {
	uids := map[string]string{}
	for file, b := range committed(t) {
		if b.UID == "" || len(b.UID) > 40 {
			t.Errorf("%s: uid %q: want 1 to 40 characters", file, b.UID)
		}
		if other, dup := uids[b.UID]; dup {
			t.Errorf("%s: uid %q also used by %s", file, b.UID, other)
		}
		uids[b.UID] = file

		vars := map[string]string{}
		for _, v := range b.Templating.List {
			vars[v.Name] = v.Type
		}
		if vars[dashboards.DatasourceVar] != "datasource" {
			t.Errorf("%s: no datasource variable named %q", file, dashboards.DatasourceVar)
		}
		if vars[dashboards.NodeVar] != "query" {
			t.Errorf("%s: no query variable named %q", file, dashboards.NodeVar)
		}

		ids := map[int]string{}
		var cells []jsonPanel
		for _, p := range b.Panels {
			where := file + ": panel " + p.Title
			if p.ID <= 0 {
				t.Errorf("%s: id %d", where, p.ID)
			}
			if other, dup := ids[p.ID]; dup {
				t.Errorf("%s: id %d also used by %s", where, p.ID, other)
			}
			ids[p.ID] = p.Title
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("%s: gridPos %+v leaves the 24 columns", where, g)
			}
			for _, c := range cells {
				o := c.GridPos
				if g.X < o.X+o.W && o.X < g.X+g.W && g.Y < o.Y+o.H && o.Y < g.Y+g.H {
					t.Errorf("%s: gridPos %+v overlaps %s %+v", where, g, c.Title, o)
				}
			}
			cells = append(cells, p)
			if p.Type == "row" {
				continue
			}
			if p.FieldConfig.Defaults.Unit == "" {
				t.Errorf("%s: no unit", where)
			}
			checkDatasource(t, where, p.Datasource)
			if len(p.Targets) == 0 {
				t.Errorf("%s: no query", where)
			}
			// A stack adds its series up: several queries (a total and
			// one of its parts) would count the same thing twice.
			if m := p.FieldConfig.Defaults.Custom.Stacking.Mode; m != "" && m != "none" && len(p.Targets) != 1 {
				t.Errorf("%s: stacked (%s) with %d queries; a stacked panel has one query whose series are disjoint parts", where, m, len(p.Targets))
			}
			refIDs := map[string]bool{}
			for _, q := range p.Targets {
				if q.RefID == "" || refIDs[q.RefID] {
					t.Errorf("%s: refId %q empty or repeated", where, q.RefID)
				}
				refIDs[q.RefID] = true
				checkDatasource(t, where+" "+q.RefID, q.Datasource)
				checkVariables(t, where+" "+q.RefID, q.Expr, vars)
			}
		}
	}
}

func checkDatasource(t *testing.T, where string, ds map[string]any) {
	t.Helper()
	if ds["type"] != "prometheus" || ds["uid"] != "${"+dashboards.DatasourceVar+"}" {
		t.Errorf("%s: datasource %v, want the prometheus ${%s} variable", where, ds, dashboards.DatasourceVar)
	}
}

var (
	variableRef  = regexp.MustCompile(`\$\{?([A-Za-z_]\w*)`)
	grafanaBuilt = map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	bucketRead   = regexp.MustCompile(`_bucket[{[]`)
	rateWindow   = regexp.MustCompile(`\brate\([^\[]*\[([^\]]*)\]`)
)

// checkVariables: the node variable selects every query's series, every
// variable used is defined, and every rate window is $__rate_interval.
func checkVariables(t *testing.T, where, expr string, vars map[string]string) {
	t.Helper()
	if !strings.Contains(expr, `"$`+dashboards.NodeVar+`"`) {
		t.Errorf("%s: %s does not select by $%s", where, expr, dashboards.NodeVar)
	}
	for _, m := range variableRef.FindAllStringSubmatch(expr, -1) {
		if _, ok := vars[m[1]]; !ok && !grafanaBuilt[m[1]] {
			t.Errorf("%s: variable $%s is not defined", where, m[1])
		}
	}
	for _, m := range rateWindow.FindAllStringSubmatch(expr, -1) {
		if m[1] != "$__rate_interval" {
			t.Errorf("%s: rate window [%s], want [$__rate_interval]", where, m[1])
		}
	}
}

func TestExpressionsParse(t *testing.T) {
	all := targets(t)
	if len(all) == 0 {
		t.Fatal("no queries")
	}
	for _, q := range all {
		if _, err := parse(q.expr); err != nil {
			t.Errorf("%s: %s: %v", q, q.expr, err)
		}
	}
}

// TestMetricNamesInCatalog: every metric an expression selects is one the
// catalog lists, and percentiles read histograms through _bucket.
func TestMetricNamesInCatalog(t *testing.T) {
	for _, q := range targets(t) {
		e, err := parse(q.expr)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for _, name := range metricNames(t, e) {
			if _, ok := lookup(name); !ok {
				t.Errorf("%s: metric %s is not in telemetry/catalog", q, name)
			}
		}
		if strings.Contains(q.expr, "histogram_quantile(") && !bucketRead.MatchString(q.expr) {
			t.Errorf("%s: histogram_quantile not over _bucket: %s", q, q.expr)
		}
	}
}

// lookup finds name in the catalog, a histogram's series by its base name.
func lookup(name string) (catalog.Metric, bool) {
	if m, ok := catalog.Lookup(name); ok {
		return m, m.Type != catalog.Histogram
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if m, ok := catalog.Lookup(base); ok && (m.Type == catalog.Histogram || m.Type == catalog.Summary && suffix != "_bucket") {
				return m, true
			}
		}
	}
	return catalog.Metric{}, false
}
