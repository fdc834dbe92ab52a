package scenario

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/signalbus/signalbus/chaos/inprocess"
	"github.com/signalbus/signalbus/cluster"
)

// InProcess starts scenarios on the in-process backend, each in a new
// folder under dir, nodes logging to logger (nil: discarded).
func InProcess(dir string, logger *slog.Logger) Start {
	return func(ctx context.Context, spec Spec) (Backend, error) {
		runDir, err := os.MkdirTemp(dir, spec.Scenario.Name+"-")
		if err != nil {
			return nil, fmt.Errorf("scenario: %w", err)
		}
		s := spec.Scenario
		c, err := inprocess.Start(ctx, inprocess.Config{
			Mode:       s.Mode,
			Dir:        runDir,
			RecordFile: "record.jsonl",
			Logger:     logger,
			Configure: func(name string, cfg *cluster.Config) {
				cfg.NoSync = s.NoSync
				if s.DuplicateWindow > 0 {
					cfg.DuplicateWindow = s.DuplicateWindow
				}
			},
			Start: func(ctx context.Context, c *inprocess.Cluster, name string, _ int, n *cluster.Node) (inprocess.App, error) {
				nodes := c.Nodes()
				last := nodes[len(nodes)-1]
				ac := spec.Agent
				ac.Node, ac.Record, ac.Logger = name, c.RecordPath(name), logger
				if name != last {
					ac.SlowHandler = 0
				}
				return StartAgent(ctx, n, ac)
			},
		})
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}
