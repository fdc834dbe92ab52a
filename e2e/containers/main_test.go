package containers_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signalbus/signalbus/e2e/containers"
)

// TestMain fails the run if a goroutine, or a container, network or image
// this process made, outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if shared.used {
		// Only the shared image may be left; Sweep, which a SIGINT
		// handler calls, removes it.
		left, err := containers.Leftovers(ctx)
		left = slices.DeleteFunc(left, func(r containers.Resource) bool {
			return shared.img != nil && r.Kind == "image" && r.Name == shared.img.Tag()
		})
		if err != nil || len(left) > 0 {
			fmt.Fprintf(os.Stderr, "left behind: %v %v\n", left, err)
			code = 1
		}
		if err := containers.Sweep(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
		if left, err := containers.Leftovers(ctx); err != nil || len(left) > 0 {
			fmt.Fprintf(os.Stderr, "left behind after Sweep: %v %v\n", left, err)
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// shared is the node image the tests' clusters share, built once.
var shared struct {
	once sync.Once
	used bool
	img  *containers.Image
	err  error
}

func image(t *testing.T) *containers.Image {
	t.Helper()
	shared.once.Do(func() {
		shared.used = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		shared.img, shared.err = containers.BuildImage(ctx, "")
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.img
}
