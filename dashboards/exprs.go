package dashboards

import (
	"fmt"
	"strings"
)

// Label selectors. Bus metrics carry the node name as signalbus_bus (the
// bus a node runs is named after it), cluster and NATS metrics as
// signalbus_node. Runtime metrics carry neither, so they are joined to
// target_info on the scrape target to get service_instance_id, which is the
// node name as well.
const (
	busNode  = `signalbus_bus=~"$node"`
	nodeNode = `signalbus_node=~"$node"`
)

// rateInterval is Grafana's rate window, which follows the scrape interval.
const rateInterval = "[$__rate_interval]"

func sel(node string, extra ...string) string {
	s := "{" + node
	for _, e := range extra {
		s += ", " + e
	}
	return s + "}"
}

// grouped is an expression whose series are told apart by the labels in
// by ("a, b"), and by nothing else.
type grouped struct {
	expr, by string
}

// legend names each series by its labels: "{{a}} {{b}}".
func legend(by string) string {
	var parts []string
	for _, l := range strings.Split(by, ", ") {
		parts = append(parts, "{{"+l+"}}")
	}
	return strings.Join(parts, " ")
}

// query is g as a panel query whose legend is its labels.
func (g grouped) query() query { return query{g.expr, legend(g.by)} }

// prefixed is g as a panel query whose legend is its labels after prefix.
func (g grouped) prefixed(prefix string) query { return query{g.expr, prefix + " " + legend(g.by)} }

// rate sums rate(metric{sel}[$__rate_interval]) by the labels given.
func rate(metric, selector, by string) grouped {
	return grouped{fmt.Sprintf("sum by (%s) (rate(%s%s%s))", by, metric, selector, rateInterval), by}
}

// increase sums increase(metric{sel}[window]) by the labels given.
func increase(metric, selector, window, by string) grouped {
	return grouped{fmt.Sprintf("sum by (%s) (increase(%s%s[%s]))", by, metric, selector, window), by}
}

// gauge aggregates a gauge with op (sum, max) by the labels given.
func gauge(op, metric, selector, by string) grouped {
	return grouped{fmt.Sprintf("%s by (%s) (%s%s)", op, by, metric, selector), by}
}

// quantile is the q-quantile of a histogram over its _bucket series.
func quantile(q float64, histogram, selector, by string) grouped {
	return grouped{fmt.Sprintf("histogram_quantile(%g, sum by (le, %s) (rate(%s_bucket%s%s)))", q, by, histogram, selector, rateInterval), by}
}

// percentiles are one query per quantile q of a histogram, legends
// prefixed p50, p90, ….
func percentiles(histogram, selector, by string, qs ...float64) []query {
	out := make([]query, 0, len(qs))
	for _, q := range qs {
		out = append(out, quantile(q, histogram, selector, by).prefixed(fmt.Sprintf("p%g", 100*q)))
	}
	return out
}

// mean is a histogram's mean over the rate window.
func mean(histogram, selector, by string) grouped {
	return grouped{fmt.Sprintf("%s / %s", rate(histogram+"_sum", selector, by).expr, rate(histogram+"_count", selector, by).expr), by}
}

// orZero reads a counter that only exists once it has counted something
// (OTel exports an attribute set after its first Add) as zero wherever base,
// a series that always exists, does. Zero is the true value then: nothing
// was counted. The fill matches on base's labels, which expr's must
// include, so that a group with any real series (of any reason, event, …)
// gets no zero series beside them.
func orZero(expr, base grouped) grouped {
	return grouped{fmt.Sprintf("(%s or on (%s) 0 * %s)", expr.expr, base.by, base.expr), expr.by}
}

// runtime joins a process-level metric to target_info so it can be selected
// and labelled by node.
func runtime(expr string) string {
	return fmt.Sprintf(`%s * on (job, instance) group_left (service_instance_id) target_info{service_instance_id=~"$node"}`, expr)
}
