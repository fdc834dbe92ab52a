package wire_test

import (
	"slices"
	"testing"

	"github.com/signalbus/signalbus/cluster/internal/wire"
)

func TestSubjectFilters(t *testing.T) {
	for _, tc := range []struct {
		prefix, pattern string
		want            []string
		exact           bool
	}{
		{"signals", "order.created", []string{"signals.order.created"}, true},
		{"", "order.created", []string{"signals.order.created"}, true},
		{"app.ev", "order.*.x", []string{"app.ev.order.*.x"}, true},
		{"signals", "order.*", []string{"signals.order.*"}, true},
		{"signals", "order.**", []string{"signals.order", "signals.order.>"}, true},
		{"signals", "a.*.**", []string{"signals.a.*", "signals.a.*.>"}, true},
		{"signals", "**", []string{"signals.>"}, true},
		{"signals", "audit.**.failed", []string{"signals.audit.>"}, false},
		{"signals", "**.failed", []string{"signals.>"}, false},
	} {
		got, exact := wire.SubjectFilters(tc.prefix, tc.pattern)
		if !slices.Equal(got, tc.want) || exact != tc.exact {
			t.Errorf("SubjectFilters(%q, %q) = %v, %v; want %v, %v", tc.prefix, tc.pattern, got, exact, tc.want, tc.exact)
		}
	}
}

func TestStreamName(t *testing.T) {
	for prefix, want := range map[string]string{"signals": "SIGNALBUS_signals", "": "SIGNALBUS_signals", "app.events": "SIGNALBUS_app_events", "a-b_c": "SIGNALBUS_a-b_c"} {
		if got := wire.StreamName(prefix); got != want {
			t.Errorf("StreamName(%q) = %q, want %q", prefix, got, want)
		}
	}
}
