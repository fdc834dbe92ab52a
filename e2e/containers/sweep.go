package containers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// Labels on every container, network and image the backend makes.
const (
	// LabelRun is the run of one Cluster (a random id).
	LabelRun = "org.signalbus.e2e"
	// LabelOwner names the process that made it: "<boot id>/<pid>/<start
	// time>", so that a sweep can tell a live owner from a dead one even
	// after the pid is reused.
	LabelOwner = "org.signalbus.e2e.owner"
)

// setupEnv sets what testcontainers needs on this machine, unless the
// environment already says: no reaper (its image cannot be pulled), and
// containers' ports reached on 127.0.0.1 (its guess from the default
// route is not reachable). testcontainers reads both once, at its first
// use, so every entry point of this package calls this first.
var setupEnv = sync.OnceFunc(func() {
	for k, v := range map[string]string{
		"TESTCONTAINERS_RYUK_DISABLED": "true",
		"TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",
	} {
		if _, ok := os.LookupEnv(k); !ok {
			_ = os.Setenv(k, v)
		}
	}
})

// newRunID returns a random id for LabelRun.
func newRunID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// owner is this process's LabelOwner value.
var owner = sync.OnceValue(func() string {
	id, _ := processID(os.Getpid())
	return id
})

// processID identifies a live process across pid reuse: the boot, the
// pid, and the process's start time in clock ticks after boot.
func processID(pid int) (string, error) {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	// The command name, in parentheses, may hold spaces: the fields
	// after the last ')' start at the third, the state; the start time
	// is the 22nd.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	return strings.TrimSpace(string(boot)) + "/" + strconv.Itoa(pid) + "/" + fields[19], nil
}

// ownerAlive reports whether the process a LabelOwner value names still
// runs.
func ownerAlive(id string) bool {
	parts := strings.Split(id, "/")
	if len(parts) != 3 {
		return false
	}
	pid, err := strconv.Atoi(parts[1])
	if err != nil {
		return false
	}
	now, err := processID(pid)
	return err == nil && now == id
}

// labels returns the labels of a run's resources.
func labels(run string) map[string]string {
	return map[string]string{LabelRun: run, LabelOwner: owner()}
}

// Sweep removes every container, network and image this process's
// clusters made and have not removed yet: for a SIGINT handler, when
// Close will not run.
func Sweep(ctx context.Context) error {
	return sweep(ctx, func(l map[string]string) bool { return l[LabelOwner] == owner() })
}

// SweepStale removes every labelled container, network and image whose
// owner process has ended: what an interrupted run left. Start calls it.
// What has no owner label is left alone: a build still in progress.
func SweepStale(ctx context.Context) error {
	return sweep(ctx, func(l map[string]string) bool {
		o, ok := l[LabelOwner]
		return ok && !ownerAlive(o)
	})
}

// Resource is a container, network or image the backend made.
type Resource struct {
	Kind string // "container", "network" or "image"
	ID   string
	Name string // the container's or network's name, the image's first tag
}

func (r Resource) String() string { return r.Kind + " " + r.Name }

// Owner is the LabelOwner value of this process's resources.
func Owner() string { return owner() }

// Leftovers lists the containers, networks and images this process made
// and has not removed: none once every Cluster is closed and every Image
// removed. Tests check it at the end, as goleak does for goroutines.
func Leftovers(ctx context.Context) ([]Resource, error) {
	setupEnv()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, fmt.Errorf("containers: docker client: %w", err)
	}
	defer cli.Close()
	var left []Resource
	err = visit(ctx, cli, func(l map[string]string) bool { return l[LabelOwner] == owner() }, func(r Resource) error {
		left = append(left, r)
		return nil
	})
	return left, err
}

// sweepRun removes what one run made.
func sweepRun(ctx context.Context, run string) error {
	return sweep(ctx, func(l map[string]string) bool { return l[LabelRun] == run })
}

// sweep removes the labelled resources match selects: containers first,
// then networks and images, which they hold.
func sweep(ctx context.Context, match func(labels map[string]string) bool) error {
	setupEnv()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return fmt.Errorf("containers: docker client: %w", err)
	}
	defer cli.Close()
	err = visit(ctx, cli, match, func(r Resource) error {
		var err error
		switch r.Kind {
		case "container":
			_, err = cli.ContainerRemove(ctx, r.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		case "network":
			_, err = cli.NetworkRemove(ctx, r.ID, client.NetworkRemoveOptions{})
		case "image":
			_, err = cli.ImageRemove(ctx, r.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		}
		if err != nil && !notFound(err) {
			return fmt.Errorf("remove %s: %w", r, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("containers: sweep: %w", err)
	}
	return nil
}

// visit calls f with every labelled container, then network, then image
// that match selects, and returns every error joined.
func visit(ctx context.Context, cli *testcontainers.DockerClient, match func(labels map[string]string) bool, f func(Resource) error) error {
	filter := client.Filters{}.Add("label", LabelRun)
	var errs []error
	ctrs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		errs = append(errs, fmt.Errorf("list containers: %w", err))
	} else {
		for _, c := range ctrs.Items {
			if match(c.Labels) {
				name := c.ID
				if len(c.Names) > 0 {
					name = strings.TrimPrefix(c.Names[0], "/")
				}
				errs = append(errs, f(Resource{"container", c.ID, name}))
			}
		}
	}
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		errs = append(errs, fmt.Errorf("list networks: %w", err))
	} else {
		for _, n := range nets.Items {
			if match(n.Labels) {
				errs = append(errs, f(Resource{"network", n.ID, n.Name}))
			}
		}
	}
	// Top-level images only: each label of a build is a layer of its
	// own, and removing the image removes those untagged parents.
	imgs, err := cli.ImageList(ctx, client.ImageListOptions{Filters: filter})
	if err != nil {
		errs = append(errs, fmt.Errorf("list images: %w", err))
	} else {
		for _, im := range imgs.Items {
			if match(im.Labels) {
				name := im.ID
				if len(im.RepoTags) > 0 {
					name = im.RepoTags[0]
				}
				errs = append(errs, f(Resource{"image", im.ID, name}))
			}
		}
	}
	return errors.Join(errs...)
}
