package wire

import (
	"slices"
	"strings"
)

// The extension attributes a node stamps on every signal it sends: the
// publishing node and its per-node sequence number, from which receivers
// detect gaps (fast mode) and restore order (durable mode). The cluster
// and client packages export them under the same names.
const (
	ExtensionNode     = "sbnode"
	ExtensionInstance = "sbinst"  // one run of the node: its sequence restarts at 1 with a new instance
	ExtensionSequence = "sbseq"   // the signal's place in its node's sequence
	ExtensionFloor    = "sbfloor" // durable mode: every lower sequence number is already stored
)

// StampNames are the names of every extension a node stamps, in the order
// above.
var StampNames = []string{ExtensionNode, ExtensionInstance, ExtensionSequence, ExtensionFloor}

// StreamName returns the JetStream stream a durable cluster with this
// subject prefix stores its signals in: "SIGNALBUS_" and the prefix with
// its dots as underscores, since stream names cannot hold dots. An empty
// prefix means DefaultPrefix.
func StreamName(prefix string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return "SIGNALBUS_" + strings.ReplaceAll(prefix, ".", "_")
}

// SubjectFilters maps a valid subscription pattern (bus pattern syntax)
// to the NATS subject filters under prefix that select at least the types
// it matches, and reports whether they select exactly those. "*" stays
// "*"; a trailing "**" becomes ">" plus the bare prefix ("order.**"
// matches "order" itself, which "order.>" does not); a "**" anywhere else
// widens the filter to ">" from there, and the reader filters the rest
// with the pattern itself. An empty prefix means DefaultPrefix.
func SubjectFilters(prefix, pattern string) (filters []string, exact bool) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	segs := strings.Split(pattern, ".")
	i := slices.Index(segs, "**")
	switch {
	case i < 0:
		return []string{prefix + "." + pattern}, true
	case i == 0:
		return []string{prefix + ".>"}, len(segs) == 1
	}
	base := prefix + "." + strings.Join(segs[:i], ".")
	if i == len(segs)-1 {
		return []string{base, base + ".>"}, true
	}
	return []string{base + ".>"}, false
}
