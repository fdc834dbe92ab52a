package main

import (
	"context"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// seedWithDeadLetters makes the order stream ship a poison order within its
// first hundred signals, so even a short run dead-letters one.
const seedWithDeadLetters = "15"

var (
	liveLineRE  = regexp.MustCompile(`(?m)^t=\S+\s+published=(\d+) delivered=(\d+) retries=(\d+) deadletters=(\d+) p99_delivery=\S+ queue_max=\d+$`)
	typeCountRE = regexp.MustCompile(`(order\.\w+)=(\d+)`)
)

// totals is the end-of-run report of the demo, parsed.
type totals struct {
	published, delivered, retries, deadLetters, replayed int64
	byType                                               map[string]int64 // published, by type
	bySub                                                map[string]int64 // delivered, by subscription
	counted                                              map[string]int64 // seen by the analytics handler
}

// number returns the first integer after label at the start of a line.
func number(t *testing.T, out, label string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(label) + `\s+(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q line in the report:\n%s", label, out)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

func parseTotals(t *testing.T, out string) totals {
	t.Helper()
	_, report, ok := strings.Cut(out, "\ntotals after ")
	if !ok {
		t.Fatalf("no totals in the output:\n%s", out)
	}
	report, _, _ = strings.Cut(report, "\nspans:")
	tot := totals{
		published:   number(t, report, "published"),
		delivered:   number(t, report, "delivered"),
		retries:     number(t, report, "retries"),
		deadLetters: number(t, report, "dead letters"),
		replayed:    number(t, report, "replayed"),
		byType:      map[string]int64{},
		bySub:       map[string]int64{},
		counted:     map[string]int64{},
	}
	for _, sub := range []string{"analytics", "billing", "audit", "shipping"} {
		tot.bySub[sub] = number(t, report, sub)
	}
	pubLine := regexp.MustCompile(`(?m)^\s+published .*$`).FindString(report)
	for _, m := range typeCountRE.FindAllStringSubmatch(pubLine, -1) {
		tot.byType[m[1]], _ = strconv.ParseInt(m[2], 10, 64)
	}
	countLine := regexp.MustCompile(`(?m)^\s+analytics .*$`).FindString(report)
	for _, m := range regexp.MustCompile(`(\w+)=(\d+)`).FindAllStringSubmatch(countLine, -1) {
		tot.counted["order."+m[1]], _ = strconv.ParseInt(m[2], 10, 64)
	}
	return tot
}

func TestDemo(t *testing.T) {
	start := time.Now()
	out, stderr, err := run(t, t.Context(), "demo", "--local", "-duration", "1s", "-rate", "500", "-seed", seedWithDeadLetters)
	if err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("a 1s demo took %v", took)
	}

	live := liveLineRE.FindAllStringSubmatch(out, -1)
	if len(live) == 0 {
		t.Fatalf("no per-second line in the output:\n%s", out)
	}
	tot := parseTotals(t, out)
	if lastLive, _ := strconv.ParseInt(live[len(live)-1][1], 10, 64); lastLive == 0 || lastLive > tot.published {
		t.Errorf("last live line published=%d; total published %d", lastLive, tot.published)
	}

	// About rate × duration, give or take the pacing.
	if tot.published < 250 || tot.published > 600 {
		t.Errorf("published %d signals in 1s at 500/s", tot.published)
	}
	var byType int64
	for typ, n := range tot.byType {
		byType += n
		if tot.counted[typ] != n {
			t.Errorf("analytics counted %d %s signals, %d published", tot.counted[typ], typ, n)
		}
	}
	if len(tot.byType) != len(orderTypes) || byType != tot.published {
		t.Errorf("published %d, by type %v", tot.published, tot.byType)
	}
	// Who should have seen what: order.* and order.** everything, the
	// others their one type.
	want := map[string]int64{
		"analytics": tot.published,
		"audit":     tot.published,
		"billing":   tot.byType[typePaid],
		"shipping":  tot.byType[typeShipped],
	}
	var delivered int64
	for sub, n := range want {
		delivered += n
		if tot.bySub[sub] != n {
			t.Errorf("%s was delivered %d signals, want %d", sub, tot.bySub[sub], n)
		}
	}
	if tot.delivered != delivered {
		t.Errorf("delivered %d in all, want %d", tot.delivered, delivered)
	}
	if tot.retries == 0 || tot.deadLetters == 0 {
		t.Errorf("retries %d, dead letters %d; the flaky handler should produce both", tot.retries, tot.deadLetters)
	}
	// Only shipping has a dead-letter handler.
	if tot.deadLetters > tot.bySub["shipping"] {
		t.Errorf("%d dead letters out of %d shipping deliveries", tot.deadLetters, tot.bySub["shipping"])
	}
	if !regexp.MustCompile(`(?m)^\s+ord-\d+\s+signal \S+\s+attempts=\d\s+\S`).MatchString(out) {
		t.Errorf("no dead-letter example in the report:\n%s", out)
	}
	// 500 signals fit the history: the replay finds every cancelled order.
	if tot.published <= historySize && tot.replayed != tot.byType[typeCancelled] {
		t.Errorf("replayed %d cancelled orders, %d published", tot.replayed, tot.byType[typeCancelled])
	}

	_, spans, ok := strings.Cut(out, "\nspans:")
	if !ok {
		t.Fatalf("no spans section:\n%s", out)
	}
	for _, s := range []string{`"Name": "send order.`, `"Name": "process order.`, `"Code": "Error"`, `"Key": "error.type"`} {
		if !strings.Contains(spans, s) {
			t.Errorf("spans section lacks %s:\n%s", s, spans)
		}
	}
	if n := strings.Count(spans, `"SpanContext"`); n < 3 || n > 4 {
		t.Errorf("%d spans exported, want 3 or 4", n)
	}
}

func TestDemoQuietShort(t *testing.T) {
	// Shorter than a second: the live line comes at the end.
	out, _, err := run(t, t.Context(), "demo", "-local", "-duration", "300ms", "-rate", "1000", "-quiet")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(liveLineRE.FindAllString(out, -1)); n != 1 {
		t.Errorf("%d live lines, want 1:\n%s", n, out)
	}
	if strings.Contains(out, "spans:") || strings.Contains(out, `"SpanContext"`) {
		t.Errorf("-quiet printed spans:\n%s", out)
	}
	if tot := parseTotals(t, out); tot.published == 0 || tot.bySub["analytics"] != tot.published {
		t.Errorf("published %d, analytics delivered %d", tot.published, tot.bySub["analytics"])
	}
}

func TestDemoInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	out, _, err := run(t, ctx, "demo", "--local=true", "-duration", "1m", "-rate", "1000", "-quiet")
	if err != nil {
		t.Fatal(err)
	}
	// Not a timing bound: a demo that ignored the interrupt would run
	// its whole minute.
	if took := time.Since(start); took > 50*time.Second {
		t.Errorf("interrupted demo took %v to return: it ran on past the interrupt", took)
	}
	if !strings.Contains(out, "interrupted at t=") {
		t.Errorf("no interruption notice:\n%s", out)
	}
	if tot := parseTotals(t, out); tot.bySub["audit"] != tot.published {
		t.Errorf("published %d, audit delivered %d: the bus did not drain", tot.published, tot.bySub["audit"])
	}
}

func TestQuantile(t *testing.T) {
	bounds := []float64{1, 2, 4}
	cases := []struct {
		name   string
		q      float64
		counts []uint64
		want   float64
		wantOK bool
	}{
		{"empty", 0.99, []uint64{0, 0, 0, 0}, 0, false},
		{"wrong length", 0.5, []uint64{1, 2}, 0, false},
		{"first bucket from zero", 0.5, []uint64{10, 0, 0, 0}, 0.5, true},
		{"interpolated", 0.75, []uint64{0, 0, 4, 0}, 3.5, true},
		{"across buckets", 0.5, []uint64{2, 2, 0, 0}, 1, true},
		{"p99 in the tail", 0.99, []uint64{98, 0, 2, 0}, 3, true},
		{"overflow gives the last bound", 0.99, []uint64{1, 0, 0, 99}, 4, true},
		{"skips empty buckets", 1, []uint64{3, 0, 0, 0}, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := quantile(tc.q, bounds, tc.counts)
			if ok != tc.wantOK || math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("quantile(%v, %v) = %v, %v; want %v, %v", tc.q, tc.counts, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestShopIsDeterministic(t *testing.T) {
	a, b := newShop(7), newShop(7)
	for i := range 1000 {
		ta, oa := a.next()
		tb, ob := b.next()
		if ta != tb || oa != ob {
			t.Fatalf("signal %d: %s %+v, then %s %+v", i, ta, oa, tb, ob)
		}
	}
}
