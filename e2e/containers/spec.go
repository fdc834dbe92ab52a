package containers

import (
	"fmt"
	"log/slog"
	"path"
	"strings"
)

// Ports inside each node's container.
const (
	ClientPort = 4222 // NATS clients
	RoutePort  = 6222 // NATS routes
	HTTPPort   = 9464 // /metrics, /healthz, /readyz
)

// DefaultRecordPath is where a node's workload record is kept unless
// Spec.RecordPath says otherwise.
const DefaultRecordPath = "/data/record.jsonl"

// Spec describes a cluster to start. The zero Spec is three durable nodes.
type Spec struct {
	// Nodes is the number of nodes, named n1 … nN. Default 3. One node
	// runs a standalone server (no routes).
	Nodes int
	// Mode is the nodes' --mode: "durable" (the default) or "fast".
	Mode string
	// Args, if set, returns extra arguments for a node's command line
	// (after "node" and the flags the backend sets: --name, --listen,
	// --cluster-listen, --cluster-advertise, --routes, --data-dir,
	// --http, --mode, --expected-size; a flag given again wins).
	Args func(name string) []string
	// Env is set in every node's environment (SIGNALBUS_* variables set
	// any flag the command line does not).
	Env map[string]string
	// Files are written into every node's file system before its first
	// start: absolute path in the container → content.
	Files map[string][]byte
	// RecordPath is the file Record returns. Default DefaultRecordPath.
	RecordPath string
	// Image is the node image to run, shared with other clusters; Close
	// leaves it. Nil: Start builds one from Binary and Close removes it.
	Image *Image
	// Binary is the signalbus binary the image is built from, when Image
	// is nil; it must be statically linked. Empty: one is built from the
	// signalbus module found above the working directory, with
	// CGO_ENABLED=0.
	Binary string
	// Logger gets the backend's log: every fault and heal at info level,
	// testcontainers' messages at debug level. Default: discarded.
	Logger *slog.Logger
}

// withDefaults returns spec with its defaults set, or an error naming
// the first bad field.
func (s Spec) withDefaults() (Spec, error) {
	if s.Nodes == 0 {
		s.Nodes = 3
	}
	if s.Nodes < 1 {
		return s, fmt.Errorf("containers: Spec.Nodes %d: want at least 1", s.Nodes)
	}
	switch s.Mode {
	case "":
		s.Mode = "durable"
	case "durable", "fast":
	default:
		return s, fmt.Errorf("containers: Spec.Mode %q: want durable or fast", s.Mode)
	}
	if s.RecordPath == "" {
		s.RecordPath = DefaultRecordPath
	}
	if !path.IsAbs(s.RecordPath) {
		return s, fmt.Errorf("containers: Spec.RecordPath %q: want an absolute path in the container", s.RecordPath)
	}
	for p := range s.Files {
		if !path.IsAbs(p) || strings.HasSuffix(p, "/") {
			return s, fmt.Errorf("containers: Spec.Files %q: want an absolute file path in the container", p)
		}
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// nodeName is the name of node i (from 0): n1, n2, …
func nodeName(i int) string { return fmt.Sprintf("n%d", i+1) }
