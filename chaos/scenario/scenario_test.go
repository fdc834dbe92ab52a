package scenario_test

import (
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signalbus/signalbus/chaos/scenario"
)

var all = flag.Bool("chaos.all", false, "run every scenario, not only the short set")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestScenarioNamesAreUniqueAndDescribed(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range scenario.All {
		if seen[s.Name] || s.Name == "" || s.Does == "" || s.Faults == nil {
			t.Errorf("scenario %+v: a name must be unique, and Does and Faults set", s.Name)
		}
		seen[s.Name] = true
		if got, ok := scenario.Lookup(s.Name); !ok || got.Name != s.Name {
			t.Errorf("Lookup(%q) = %v, %v", s.Name, got.Name, ok)
		}
	}
	if _, ok := scenario.Lookup("nope"); ok {
		t.Error("Lookup of an unknown name found one")
	}
}

// TestScenariosInProcess runs the short set of scenarios (all with
// -chaos.all) on the in-process backend, and fails on any verdict that
// breaks its mode's invariants.
func TestScenariosInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the scenarios take about 40 s each")
	}
	var logger *slog.Logger
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	for _, s := range scenario.All {
		if !s.Short && !*all {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
			defer cancel()
			res, err := scenario.Run(ctx, s, scenario.InProcess(t.TempDir(), logger), scenario.Options{Logger: logger})
			if err != nil {
				t.Fatal(err)
			}
			out, _ := json.MarshalIndent(res.Verdict, "", "  ")
			t.Logf("%s: %s\nfaults: %v", s.Name, res.Verdict, res.Windows)
			if !res.OK() {
				t.Errorf("%s failed: %s\n%s", s.Name, res.Err, strings.TrimSpace(string(out)))
			}
		})
	}
}
