package dashboards

import "fmt"

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

// rate sums rate(metric{sel}[$__rate_interval]) by the labels given.
func rate(metric, selector, by string) string {
	return fmt.Sprintf("sum by (%s) (rate(%s%s%s))", by, metric, selector, rateInterval)
}

// quantile is the q-quantile of a histogram over its _bucket series.
func quantile(q float64, histogram, selector, by string) string {
	return fmt.Sprintf("histogram_quantile(%g, sum by (le, %s) (rate(%s_bucket%s%s)))", q, by, histogram, selector, rateInterval)
}

// mean is a histogram's mean over the rate window.
func mean(histogram, selector, by string) string {
	return fmt.Sprintf("%s / %s", rate(histogram+"_sum", selector, by), rate(histogram+"_count", selector, by))
}

// orZero reads a counter that only exists once it has counted something
// (OTel exports an attribute set after its first Add) as zero wherever base,
// a series the same labels always have, exists. Zero is the true value then:
// nothing was counted.
func orZero(expr, base string) string {
	return fmt.Sprintf("(%s or 0 * %s)", expr, base)
}

// runtime joins a process-level metric to target_info so it can be selected
// and labelled by node.
func runtime(expr string) string {
	return fmt.Sprintf(`%s * on (job, instance) group_left (service_instance_id) target_info{service_instance_id=~"$node"}`, expr)
}
