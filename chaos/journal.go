package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Event is one fault or heal a Journal passed on.
type Event struct {
	At    time.Time     `json:"at"`
	Took  time.Duration `json:"took"` // how long the call took
	Op    string        `json:"op"`   // "kill", "partition", "heal", …
	Nodes []string      `json:"nodes,omitempty"`
	Desc  string        `json:"desc"` // as it reads in a log: "isolate n1"
	Err   string        `json:"error,omitempty"`
}

// Window is the time a fault was in place: from its injection to what
// undid it (Heal for a network fault, Resume for a pause, Restart for a
// kill). A window still open when Windows is called ends at the zero
// time.
type Window struct {
	Fault string    `json:"fault"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Journal is a Cluster that passes every call on to another and records
// each fault and heal, with its time, in its log and in its events.
type Journal struct {
	Cluster
	logger *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	events  []Event
	windows []Window
	open    map[string]int // window index by what undoes it: "net", "pause n1", "kill n1"
}

// NewJournal wraps c. A nil logger logs nothing.
func NewJournal(c Cluster, logger *slog.Logger) *Journal {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Journal{Cluster: c, logger: logger, now: time.Now, open: map[string]int{}}
}

// Events returns every call recorded so far, in order.
func (j *Journal) Events() []Event {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.events)
}

// Windows returns the fault windows so far, in the order they opened.
// Network faults injected before a Heal share one window: the links are
// faulted from the first of them to the Heal.
func (j *Journal) Windows() []Window {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.windows)
}

// Down returns the nodes a fault left killed or paused: what a recovery
// restarts and resumes.
func (j *Journal) Down() (killed, paused []string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for key := range j.open {
		if node, ok := strings.CutPrefix(key, "kill "); ok {
			killed = append(killed, node)
		} else if node, ok := strings.CutPrefix(key, "pause "); ok {
			paused = append(paused, node)
		}
	}
	slices.Sort(killed)
	slices.Sort(paused)
	return killed, paused
}

// do runs call and records it. opens names the window it opens ("" for
// none), closes the one it closes.
func (j *Journal) do(op string, nodes []string, desc, opens, closes string, call func() error) error {
	start := j.now()
	err := call()
	took := j.now().Sub(start)
	e := Event{At: start, Took: took, Op: op, Nodes: nodes, Desc: desc}
	j.mu.Lock()
	if err != nil {
		e.Err = err.Error()
	} else {
		if closes != "" {
			if i, ok := j.open[closes]; ok {
				j.windows[i].End = start.Add(took)
				delete(j.open, closes)
			}
		}
		if opens != "" {
			if _, ok := j.open[opens]; !ok {
				j.open[opens] = len(j.windows)
				j.windows = append(j.windows, Window{Fault: desc, Start: start})
			} else if opens == "net" {
				i := j.open[opens]
				j.windows[i].Fault += ", " + desc
			}
		}
	}
	j.events = append(j.events, e)
	j.mu.Unlock()
	if err != nil {
		j.logger.Error("fault failed", "fault", desc, "error", err)
	} else {
		j.logger.Info("fault", "fault", desc, "took", took.Round(time.Millisecond))
	}
	return err
}

// Kill records Cluster.Kill and passes it on.
func (j *Journal) Kill(ctx context.Context, node string) error {
	return j.do("kill", []string{node}, "kill "+node, "kill "+node, "", func() error { return j.Cluster.Kill(ctx, node) })
}

// Restart records Cluster.Restart and passes it on; it closes the node's
// kill window (a restart of a running node opens none: its kill and
// start are the one call).
func (j *Journal) Restart(ctx context.Context, node string) error {
	return j.do("restart", []string{node}, "restart "+node, "", "kill "+node, func() error { return j.Cluster.Restart(ctx, node) })
}

// Pause records Cluster.Pause and passes it on.
func (j *Journal) Pause(ctx context.Context, node string) error {
	return j.do("pause", []string{node}, "pause "+node, "pause "+node, "", func() error { return j.Cluster.Pause(ctx, node) })
}

// Resume records Cluster.Resume and passes it on.
func (j *Journal) Resume(ctx context.Context, node string) error {
	return j.do("resume", []string{node}, "resume "+node, "", "pause "+node, func() error { return j.Cluster.Resume(ctx, node) })
}

// Partition records Cluster.Partition and passes it on.
func (j *Journal) Partition(ctx context.Context, groups ...[]string) error {
	parts := make([]string, len(groups))
	var nodes []string
	for i, g := range groups {
		parts[i] = strings.Join(g, ",")
		nodes = append(nodes, g...)
	}
	desc := "partition " + strings.Join(parts, " | ")
	return j.do("partition", nodes, desc, "net", "", func() error { return j.Cluster.Partition(ctx, groups...) })
}

// Isolate records Cluster.Isolate and passes it on.
func (j *Journal) Isolate(ctx context.Context, node string) error {
	return j.do("isolate", []string{node}, "isolate "+node, "net", "", func() error { return j.Cluster.Isolate(ctx, node) })
}

// Bridge records Cluster.Bridge and passes it on.
func (j *Journal) Bridge(ctx context.Context, a, bridge, b string) error {
	return j.do("bridge", []string{a, bridge, b}, fmt.Sprintf("bridge %s–%s–%s", a, bridge, b), "net", "",
		func() error { return j.Cluster.Bridge(ctx, a, bridge, b) })
}

// Heal records Cluster.Heal and passes it on.
func (j *Journal) Heal(ctx context.Context) error {
	return j.do("heal", nil, "heal", "", "net", func() error { return j.Cluster.Heal(ctx) })
}

// Slow records Cluster.Slow and passes it on.
func (j *Journal) Slow(ctx context.Context, from, to string, latency time.Duration) error {
	return j.do("slow", []string{from, to}, fmt.Sprintf("slow %s–%s by %v", from, to, latency), "net", "",
		func() error { return j.Cluster.Slow(ctx, from, to, latency) })
}

// BlackHole records Cluster.BlackHole and passes it on.
func (j *Journal) BlackHole(ctx context.Context, from, to string) error {
	return j.do("blackhole", []string{from, to}, fmt.Sprintf("black-hole %s–%s", from, to), "net", "",
		func() error { return j.Cluster.BlackHole(ctx, from, to) })
}
