package containers_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"

	"github.com/signalbus/signalbus/e2e/containers"
)

// TestSweepStale: what a dead process left is swept, what a live one
// holds is not.
func TestSweepStale(t *testing.T) {
	requireDocker(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() }) // after the networks' clean-ups
	mk := func(name, owner string) string {
		res, err := cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Labels: map[string]string{containers.LabelRun: "sweeptest", containers.LabelOwner: owner},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = cli.NetworkRemove(context.Background(), res.ID, client.NetworkRemoveOptions{}) })
		return res.ID
	}
	dead := mk("signalbus-e2e-sweeptest-dead", "no-such-boot/1/1")
	live := mk("signalbus-e2e-sweeptest-live", containers.Owner())
	if err := containers.SweepStale(ctx); err != nil {
		t.Fatal(err)
	}
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: client.Filters{}.Add("label", containers.LabelRun+"=sweeptest")})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, n := range nets.Items {
		ids = append(ids, n.ID)
	}
	if slices.Contains(ids, dead) || !slices.Contains(ids, live) {
		t.Errorf("after SweepStale, networks %v; want %s gone and %s kept", ids, dead, live)
	}
	left, err := containers.Leftovers(ctx)
	if err != nil || !slices.ContainsFunc(left, func(r containers.Resource) bool { return r.ID == live }) {
		t.Errorf("Leftovers = %v, %v; want the live network among them", left, err)
	}
}
