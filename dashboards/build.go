package dashboards

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The two variables every dashboard defines and every panel uses. The
// datasource is a variable rather than a ${DS_…} import placeholder because
// file provisioning does not resolve those.
const (
	DatasourceVar = "datasource"
	NodeVar       = "node"
)

// Board is one generated dashboard and the file it is committed as.
type Board struct {
	File      string // e.g. "overview.json", relative to the dashboards directory
	Dashboard dashboard.Dashboard
}

// JSON is the dashboard as committed: indented, keys in a fixed order, a
// trailing newline. The same Board always gives the same bytes, which is what
// lets a test compare it with the committed file.
func (b Board) JSON() ([]byte, error) {
	data, err := json.MarshalIndent(b.Dashboard, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", b.File, err)
	}
	return append(data, '\n'), nil
}

// All builds every dashboard, in a fixed order.
func All() ([]Board, error) {
	specs := boards()
	out := make([]Board, 0, len(specs))
	for _, s := range specs {
		d, err := s.build()
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", s.uid, err)
		}
		out = append(out, Board{File: s.file, Dashboard: d})
	}
	return out, nil
}

type panelKind int

const (
	timeSeries panelKind = iota
	statPanel
	stateTimeline
)

// query is one PromQL target of a panel.
type query struct {
	expr   string
	legend string
}

// panel is what a dashboard needs to say about one panel; build turns it
// into the SDK's builders with the defaults every panel shares.
type panel struct {
	title  string
	desc   string
	kind   panelKind
	unit   string
	w, h   uint32
	min    *float64
	stack  bool                 // stacked: only for one query, whose series are disjoint parts of a whole
	states map[string]stateText // stateTimeline: value → text and colour
	q      []query
}

type stateText struct{ text, color string }

type row struct {
	title  string
	panels []panel
}

type board struct {
	uid, title, file, desc string
	tags                   []string
	rows                   []row
}

func datasourceRef() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${" + DatasourceVar + "}")}
}

func (b board) build() (dashboard.Dashboard, error) {
	db := dashboard.NewDashboardBuilder(b.title).
		Uid(b.uid).
		Description(b.desc).
		Tags(append([]string{"signalbus"}, b.tags...)).
		Editable().
		Refresh("10s").
		Time("now-30m", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder(DatasourceVar).
			Label("Data source").
			Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder(NodeVar).
			Label("Node").
			Description("signalbus node names, from the signalbus_node label of signalbus_cluster_members").
			Datasource(datasourceRef()).
			Query(dashboard.StringOrMap{String: cog.ToPtr("label_values(signalbus_cluster_members, signalbus_node)")}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).
			IncludeAll(true).
			AllValue(".*"))
	id := uint32(0)
	for _, r := range b.rows {
		id++
		db.WithRow(dashboard.NewRowBuilder(r.title).Id(id))
		for _, p := range r.panels {
			if p.stack && len(p.q) != 1 {
				return dashboard.Dashboard{}, fmt.Errorf("panel %q: stacked with %d queries: a stack adds up its series, so they must be the disjoint parts of one query", p.title, len(p.q))
			}
			id++
			db.WithPanel(p.builder(id))
		}
	}
	return db.Build()
}

func (p panel) targets() []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], 0, len(p.q))
	for i, q := range p.q {
		t := prometheus.NewDataqueryBuilder().
			Datasource(datasourceRef()).
			RefId(string(rune('A' + i))).
			Expr(q.expr).
			Range()
		if q.legend != "" {
			t.LegendFormat(q.legend)
		}
		out = append(out, t)
	}
	return out
}

func (p panel) builder(id uint32) cog.Builder[dashboard.Panel] {
	w, h := p.w, p.h
	if w == 0 {
		w = 12
	}
	if h == 0 {
		h = 8
	}
	switch p.kind {
	case statPanel:
		b := stat.NewPanelBuilder().Id(id).Title(p.title).Description(p.desc).
			Datasource(datasourceRef()).Span(w).Height(h).Unit(p.unit).
			Targets(p.targets()).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
			GraphMode(common.BigValueGraphModeArea)
		if p.min != nil {
			b.Min(*p.min)
		}
		return b
	case stateTimeline:
		opts := map[string]dashboard.ValueMappingResult{}
		for v, s := range p.states {
			opts[v] = dashboard.ValueMappingResult{Text: cog.ToPtr(s.text), Color: cog.ToPtr(s.color)}
		}
		return statetimeline.NewPanelBuilder().Id(id).Title(p.title).Description(p.desc).
			Datasource(datasourceRef()).Span(w).Height(h).Unit(p.unit).
			Targets(p.targets()).
			Mappings([]dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}})
	}
	b := timeseries.NewPanelBuilder().Id(id).Title(p.title).Description(p.desc).
		Datasource(datasourceRef()).Span(w).Height(h).Unit(p.unit).
		Targets(p.targets()).
		FillOpacity(10).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true))
	if p.min != nil {
		b.Min(*p.min)
	}
	if p.stack {
		b.Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))
	}
	return b
}
