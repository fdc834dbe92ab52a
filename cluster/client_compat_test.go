package cluster

import (
	"slices"
	"testing"

	"github.com/signalbus/signalbus/cluster/client"
)

// The client package restates the node's stream name, subject filters and
// stamp names for clients that do not link the cluster package: they must
// stay the node's.
func TestClientAgreesWithNode(t *testing.T) {
	for _, prefix := range []string{"signals", "app.events", "a-b_c"} {
		if got, want := client.StreamName(prefix), streamName(prefix); got != want {
			t.Errorf("client.StreamName(%q) = %q, node uses %q", prefix, got, want)
		}
		for _, pattern := range []string{"order", "order.created", "order.*", "*.x.*", "order.**", "**", "**.failed", "a.**.b", "a.b.**"} {
			got, gotExact, err := client.SubjectFilters(prefix, pattern)
			want, wantExact := subjectFilters(prefix, pattern)
			if err != nil || !slices.Equal(got, want) || gotExact != wantExact {
				t.Errorf("client.SubjectFilters(%q, %q) = %q, %v, %v; node uses %q, %v", prefix, pattern, got, gotExact, err, want, wantExact)
			}
		}
	}
	if client.ExtensionNode != ExtensionNode || client.ExtensionInstance != ExtensionInstance ||
		client.ExtensionSequence != ExtensionSequence || client.ExtensionFloor != ExtensionFloor {
		t.Error("client's stamp extension names differ from the node's")
	}
}
