package containers

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/signalbus/signalbus/chaos"
)

func TestSpecDefaults(t *testing.T) {
	s, err := Spec{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if s.Nodes != 3 || s.Mode != "durable" || s.RecordPath != DefaultRecordPath || s.Logger == nil {
		t.Errorf("defaults: %+v", s)
	}
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{Nodes: -1}, "Spec.Nodes"},
		{Spec{Mode: "slow"}, "Spec.Mode"},
		{Spec{RecordPath: "record.jsonl"}, "Spec.RecordPath"},
		{Spec{Files: map[string][]byte{"data/x": nil}}, "Spec.Files"},
	} {
		if _, err := tc.spec.withDefaults(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.spec, err, tc.want)
		}
	}
}

func TestModulePath(t *testing.T) {
	for in, want := range map[string]string{
		"module github.com/signalbus/signalbus\n\ngo 1.26\n": rootModule,
		"// x\nmodule \"example.com/m\"\n":                   "example.com/m",
		"go 1.26\n":                                          "",
	} {
		if got := modulePath([]byte(in)); got != want {
			t.Errorf("modulePath(%q) = %q, want %q", in, got, want)
		}
	}
	root, err := findRootModule()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root + "/cmd/signalbus"); err != nil {
		t.Errorf("findRootModule = %s, which has no cmd/signalbus: %v", root, err)
	}
}

func TestCheckStatic(t *testing.T) {
	exe, err := os.Executable() // a test binary with -race links libc
	if err != nil {
		t.Skip(err)
	}
	if err := checkStatic(exe); err == nil && raceEnabled {
		t.Errorf("checkStatic(%s) of a -race binary: no error", exe)
	}
	if err := checkStatic("containers_internal_test.go"); err == nil {
		t.Error("checkStatic of a text file: no error")
	}
}

func TestOwner(t *testing.T) {
	if !ownerAlive(owner()) {
		t.Errorf("this process (%s) is not alive", owner())
	}
	parts := strings.Split(owner(), "/")
	if len(parts) != 3 {
		t.Fatalf("owner %q", owner())
	}
	for _, id := range []string{"", "x", parts[0] + "/" + parts[1] + "/1", "other-boot/" + parts[1] + "/" + parts[2], parts[0] + "/999999999/1"} {
		if ownerAlive(id) {
			t.Errorf("ownerAlive(%q): want false", id)
		}
	}
}

// TestBadInput checks what is refused before any container is touched.
func TestBadInput(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	c := &Cluster{names: names, links: chaos.NewLinks(names)}
	ctx := t.Context()
	for name, err := range map[string]error{
		"Kill":      c.Kill(ctx, "nope"),
		"Restart":   c.Restart(ctx, "nope"),
		"Pause":     c.Pause(ctx, "nope"),
		"Resume":    c.Resume(ctx, "nope"),
		"Isolate":   c.Isolate(ctx, "nope"),
		"Partition": c.Partition(ctx, []string{"n1"}, []string{"nope"}),
		"Bridge":    c.Bridge(ctx, "n1", "nope", "n2"),
		"Slow":      c.Slow(ctx, "nope", "n1", time.Millisecond),
		"BlackHole": c.BlackHole(ctx, "n1", "nope"),
	} {
		if !errors.Is(err, chaos.ErrUnknownNode) || !strings.Contains(err.Error(), "nope") {
			t.Errorf("%s of an unknown node: %v, want chaos.ErrUnknownNode naming it", name, err)
		}
	}
	if _, err := c.Record(ctx, "nope"); !errors.Is(err, chaos.ErrUnknownNode) {
		t.Errorf("Record of an unknown node: %v", err)
	}
	for name, err := range map[string]error{
		"BlackHole to itself":  c.BlackHole(ctx, "n1", "n1"),
		"Slow to itself":       c.Slow(ctx, "n1", "n1", time.Millisecond),
		"Slow, negative":       c.Slow(ctx, "n1", "n2", -time.Second),
		"Bridge of two":        c.Bridge(ctx, "n1", "n1", "n2"),
		"Partition, twice one": c.Partition(ctx, []string{"n1"}, []string{"n1", "n2"}),
	} {
		if !errors.Is(err, chaos.ErrBadFault) {
			t.Errorf("%s: %v, want chaos.ErrBadFault", name, err)
		}
	}
	if c.ClientURL("nope") != "" || c.HTTPURL("nope") != "" {
		t.Error("an unknown node has URLs")
	}
}
