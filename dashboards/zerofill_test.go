package dashboards_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// zeroFill is one `real or on (labels) 0 * base` of a panel query, as
// PromQL text with the variables substituted.
type zeroFill struct {
	expr, real string
	on         []string
}

// zeroFills finds every `or` of a query. Each must be a zero fill that
// cannot stand beside a real series: matched on (labels), its right side
// 0 times a vector of exactly those labels, its left side a vector that has
// them all.
func zeroFills(expr string) ([]zeroFill, error) {
	text := substitute(expr)
	e, err := parser.NewParser(parser.Options{}).ParseExpr(text)
	if err != nil {
		return nil, err
	}
	var out []zeroFill
	var errs []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		be, ok := n.(*parser.BinaryExpr)
		if !ok || be.Op != parser.LOR {
			return nil
		}
		where := slice(text, be)
		vm := be.VectorMatching
		if vm == nil || !vm.On || len(vm.MatchingLabels) == 0 {
			errs = append(errs, fmt.Sprintf("%s: a zero fill must match `or on (<the grouping labels>)`", where))
			return nil
		}
		fill, ok := be.RHS.(*parser.BinaryExpr)
		if !ok || fill.Op != parser.MUL || !isZero(fill.LHS) {
			errs = append(errs, fmt.Sprintf("%s: the right side of or is not 0 * <base>", where))
			return nil
		}
		on := sorted(vm.MatchingLabels)
		base, err := outputLabels(fill.RHS)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", where, err))
			return nil
		}
		if !slices.Equal(base, on) {
			errs = append(errs, fmt.Sprintf("%s: the fill has labels %v but matches on %v: it would stand beside a real series of its group", where, base, on))
		}
		real, err := outputLabels(be.LHS)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", where, err))
			return nil
		}
		for _, l := range on {
			if !slices.Contains(real, l) {
				errs = append(errs, fmt.Sprintf("%s: matches on %s, which the real side (labels %v) does not have", where, l, real))
			}
		}
		out = append(out, zeroFill{expr: where, real: slice(text, be.LHS), on: on})
		return nil
	})
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}

func isZero(e parser.Expr) bool {
	lit, ok := unparen(e).(*parser.NumberLiteral)
	return ok && lit.Val == 0
}

func slice(text string, n parser.Node) string {
	r := n.PositionRange()
	return text[r.Start:r.End]
}

func unparen(e parser.Expr) parser.Expr {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}

func sorted(l []string) []string {
	l = slices.Clone(l)
	slices.Sort(l)
	return slices.Compact(l)
}

// outputLabels are the labels of the series an expression gives, for the
// shapes the zero fills use; any other shape is an error.
func outputLabels(e parser.Expr) ([]string, error) {
	switch e := unparen(e).(type) {
	case *parser.AggregateExpr:
		if e.Without || e.Param != nil {
			break
		}
		return sorted(e.Grouping), nil
	case *parser.BinaryExpr:
		switch {
		case e.LHS.Type() == parser.ValueTypeScalar:
			return outputLabels(e.RHS)
		case e.RHS.Type() == parser.ValueTypeScalar:
			return outputLabels(e.LHS)
		case e.VectorMatching != nil && e.VectorMatching.On && e.VectorMatching.Card == parser.CardOneToOne && !e.Op.IsSetOperator():
			return sorted(e.VectorMatching.MatchingLabels), nil
		}
	}
	return nil, fmt.Errorf("cannot tell the labels of %s", e)
}

// TestZeroFillsMatchOnTheirGroups: every `or` of every panel query is a
// zero fill matched on the labels of its fill, so that with a by-label
// aggregation (reason, event) a group with a real series shows no zero
// series beside it.
func TestZeroFillsMatchOnTheirGroups(t *testing.T) {
	n := 0
	for _, q := range targets(t) {
		fills, err := zeroFills(q.expr)
		if err != nil {
			t.Errorf("%s: %v", q, err)
		}
		n += len(fills)
	}
	if n == 0 {
		t.Error("no zero fill found in any panel query")
	}
}
