package scenario

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signalbus/signalbus/chaos"
	"github.com/signalbus/signalbus/cluster"
	"github.com/signalbus/signalbus/cluster/client"
)

// Scenario is one chaos experiment: a cluster, load on every node, and a
// schedule of faults between a quiet period and the recovery.
type Scenario struct {
	// Name is what make e2e SCENARIO=name selects.
	Name string
	// Does says what the scenario does and what it proves.
	Does string
	// Mode of the cluster; durable unless set.
	Mode cluster.Mode
	// NoSync runs the store without fsync (JetStream's sync_interval
	// default); otherwise every write is synced.
	NoSync bool
	// DuplicateWindow, if set, is the stream's duplicate window.
	DuplicateWindow time.Duration
	// SlowConsumer, if set, is how long the handler on the last node
	// takes per signal.
	SlowConsumer time.Duration
	// Short marks the scenarios go test runs by default.
	Short bool
	// Faults runs the fault phase. It returns with every fault it
	// injected still in place or undone, as it likes: the recovery
	// that follows resumes, restarts and heals whatever is left.
	Faults func(ctx context.Context, f *Faults) error
}

// Faults is what a scenario's fault phase acts through: the cluster (a
// chaos.Journal, so every fault is recorded) and what it needs to pick
// its victims.
type Faults struct {
	chaos.Cluster
	// Rand is seeded per run, and logged, so a run can be repeated.
	Rand *rand.Rand
	// Prefix is the cluster's subject prefix, for the stream's name.
	Prefix string
}

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hold injects a fault, keeps it for d, and undoes it.
func hold(ctx context.Context, d time.Duration, inject, undo func() error) error {
	if err := inject(); err != nil {
		return err
	}
	if err := Sleep(ctx, d); err != nil {
		return err
	}
	return undo()
}

// Leader returns the node leading the durable stream, asked of the nodes
// in turn until one answers (a cut-off node may not).
func (f *Faults) Leader(ctx context.Context) (string, error) {
	var errs []error
	for _, node := range f.Nodes() {
		leader, err := f.leaderFrom(ctx, node)
		if err == nil {
			return leader, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", node, err))
	}
	return "", fmt.Errorf("scenario: no node names the stream leader: %w", errors.Join(errs...))
}

func (f *Faults) leaderFrom(ctx context.Context, node string) (string, error) {
	nc, err := nats.Connect(f.ClientURL(node), nats.Timeout(2*time.Second), nats.NoReconnect())
	if err != nil {
		return "", err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, client.StreamName(f.Prefix))
	if err != nil {
		return "", err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", errors.New("the stream has no leader")
	}
	return info.Cluster.Leader, nil
}

// Follower returns a node that does not lead the stream.
func (f *Faults) Follower(ctx context.Context) (string, error) {
	leader, err := f.Leader(ctx)
	if err != nil {
		return "", err
	}
	others := slices.DeleteFunc(f.Nodes(), func(n string) bool { return n == leader })
	return others[f.Rand.IntN(len(others))], nil
}

// Others returns the nodes but these.
func (f *Faults) Others(nodes ...string) []string {
	return slices.DeleteFunc(f.Nodes(), func(n string) bool { return slices.Contains(nodes, n) })
}

// electionTimeout is longer than a JetStream Raft group takes to elect a
// new leader when its leader stops answering.
const electionTimeout = 10 * time.Second

// All lists every scenario, in the order make e2e runs them.
var All = []Scenario{
	{
		Name:  "baseline",
		Does:  "load with no fault: the checker's and the cluster's floor; nothing may be lost, duplicated or reordered",
		Short: true,
		Faults: func(ctx context.Context, f *Faults) error {
			return Sleep(ctx, 10*time.Second)
		},
	},
	{
		Name: "kill-follower",
		Does: "SIGKILL a stream follower, restart it on its store: acked signals survive, the restarted node catches up",
		// Not in the short set: the killed node's handler may see again
		// what it handled and had not acked (guarantees.md's at-least-once
		// across a crash), which the checker does not yet tell from
		// other duplicates.
		Faults: func(ctx context.Context, f *Faults) error {
			victim, err := f.Follower(ctx)
			if err != nil {
				return err
			}
			return hold(ctx, 8*time.Second,
				func() error { return f.Kill(ctx, victim) },
				func() error { return f.Restart(ctx, victim) })
		},
	},
	{
		Name: "kill-leader",
		Does: "SIGKILL the stream leader, restart it: a new leader is elected, nothing acked is lost",
		Faults: func(ctx context.Context, f *Faults) error {
			victim, err := f.Leader(ctx)
			if err != nil {
				return err
			}
			return hold(ctx, electionTimeout,
				func() error { return f.Kill(ctx, victim) },
				func() error { return f.Restart(ctx, victim) })
		},
	},
	{
		Name:  "isolate-leader",
		Does:  "cut the stream leader off past its step-down: the majority elects another and goes on; the old leader acks nothing alone",
		Short: true,
		Faults: func(ctx context.Context, f *Faults) error {
			victim, err := f.Leader(ctx)
			if err != nil {
				return err
			}
			return hold(ctx, electionTimeout+5*time.Second,
				func() error { return f.Isolate(ctx, victim) },
				func() error { return f.Heal(ctx) })
		},
	},
	{
		Name: "isolate-follower",
		Does: "cut a follower off: the majority goes on, the follower's publishes wait in its outbox and land after the heal",
		Faults: func(ctx context.Context, f *Faults) error {
			victim, err := f.Follower(ctx)
			if err != nil {
				return err
			}
			return hold(ctx, 12*time.Second,
				func() error { return f.Isolate(ctx, victim) },
				func() error { return f.Heal(ctx) })
		},
	},
	{
		Name: "bridge",
		Does: "cut n1 from n3 while n2 sees both (Jepsen's bridge): two overlapping majorities, one leader",
		Faults: func(ctx context.Context, f *Faults) error {
			n := f.Nodes()
			return hold(ctx, 12*time.Second,
				func() error { return f.Bridge(ctx, n[0], n[1], n[2]) },
				func() error { return f.Heal(ctx) })
		},
	},
	{
		Name: "flapping",
		Does: "random halves every few seconds: elections under churn; nothing acked is lost",
		Faults: func(ctx context.Context, f *Faults) error {
			for range 5 {
				n := f.Nodes()
				f.Rand.Shuffle(len(n), func(i, j int) { n[i], n[j] = n[j], n[i] })
				cut := 1 + f.Rand.IntN(len(n)-1)
				if err := f.Partition(ctx, n[:cut], n[cut:]); err != nil {
					return err
				}
				if err := Sleep(ctx, 3*time.Second); err != nil {
					return err
				}
				if err := f.Heal(ctx); err != nil {
					return err
				}
				if err := Sleep(ctx, time.Second); err != nil {
					return err
				}
			}
			return nil
		},
	},
	{
		Name: "pause-leader",
		Does: "freeze the stream leader past the election timeout, then let it run: it wakes as a deposed leader and must not ack alone",
		Faults: func(ctx context.Context, f *Faults) error {
			victim, err := f.Leader(ctx)
			if err != nil {
				return err
			}
			return hold(ctx, electionTimeout+2*time.Second,
				func() error { return f.Pause(ctx, victim) },
				func() error { return f.Resume(ctx, victim) })
		},
	},
	{
		Name: "kill-all",
		Does: "SIGKILL every node, restart all: what was acked is on the stores (synced on every write)",
		Faults: func(ctx context.Context, f *Faults) error {
			return killAll(ctx, f)
		},
	},
	{
		Name:   "kill-all-nosync",
		Does:   "kill-all with the store not synced: a process kill keeps the page cache, so this shows no loss it would show on power loss (see docs/e2e.md)",
		NoSync: true,
		Faults: func(ctx context.Context, f *Faults) error {
			return killAll(ctx, f)
		},
	},
	{
		Name:         "slow-link",
		Does:         "200 ms on one route and a slow handler on another node: publishes and deliveries slow down, nothing is lost or reordered",
		SlowConsumer: 5 * time.Millisecond,
		Faults: func(ctx context.Context, f *Faults) error {
			n := f.Nodes()
			return hold(ctx, 12*time.Second,
				func() error { return f.Slow(ctx, n[0], n[1], 200*time.Millisecond) },
				func() error { return f.Heal(ctx) })
		},
	},
	{
		Name:            "cut-past-dedup",
		Does:            "cut a publishing node off longer than the stream's duplicate window: a retry whose first try was stored can be stored again; the duplicates the window cannot catch are reported, not hidden",
		DuplicateWindow: 5 * time.Second,
		Faults: func(ctx context.Context, f *Faults) error {
			victim, err := f.Follower(ctx)
			if err != nil {
				return err
			}
			return hold(ctx, 12*time.Second,
				func() error { return f.Isolate(ctx, victim) },
				func() error { return f.Heal(ctx) })
		},
	},
	{
		Name:  "fast-partition",
		Does:  "fast mode, one node isolated: losses only inside the fault window, never a duplicate or a reorder",
		Mode:  cluster.Fast,
		Short: true,
		Faults: func(ctx context.Context, f *Faults) error {
			victim := f.Nodes()[f.Rand.IntN(len(f.Nodes()))]
			return hold(ctx, 8*time.Second,
				func() error { return f.Isolate(ctx, victim) },
				func() error { return f.Heal(ctx) })
		},
	},
	{
		Name: "rolling-restart",
		Does: "restart every node in turn, as an upgrade does: no acked signal is lost",
		Faults: func(ctx context.Context, f *Faults) error {
			for _, n := range f.Nodes() {
				if err := f.Restart(ctx, n); err != nil {
					return err
				}
				if err := Sleep(ctx, 5*time.Second); err != nil {
					return err
				}
			}
			return nil
		},
	},
	{
		Name: "pause-kill",
		Does: "Jepsen's NATS pause-kill: pause a minority, kill another node, resume so a new majority forms, restart",
		Faults: func(ctx context.Context, f *Faults) error {
			n := f.Nodes()
			f.Rand.Shuffle(len(n), func(i, j int) { n[i], n[j] = n[j], n[i] })
			paused, killed := n[0], n[1]
			if err := f.Pause(ctx, paused); err != nil {
				return err
			}
			if err := Sleep(ctx, 3*time.Second); err != nil {
				return err
			}
			if err := f.Kill(ctx, killed); err != nil {
				return err
			}
			if err := Sleep(ctx, 3*time.Second); err != nil {
				return err
			}
			if err := f.Resume(ctx, paused); err != nil {
				return err
			}
			if err := Sleep(ctx, electionTimeout); err != nil {
				return err
			}
			return f.Restart(ctx, killed)
		},
	},
}

func killAll(ctx context.Context, f *Faults) error {
	for _, n := range f.Nodes() {
		if err := f.Kill(ctx, n); err != nil {
			return err
		}
	}
	if err := Sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	for _, n := range f.Nodes() {
		if err := f.Restart(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// Lookup returns the scenario of that name.
func Lookup(name string) (Scenario, bool) {
	i := slices.IndexFunc(All, func(s Scenario) bool { return s.Name == name })
	if i < 0 {
		return Scenario{}, false
	}
	return All[i], true
}
