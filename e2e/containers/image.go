package containers

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// rootModule is the module whose ./cmd/signalbus is built when
// Spec.Binary is empty.
const rootModule = "github.com/signalbus/signalbus"

// dockerfile builds the node image. A scratch image has no mkdir, so
// /data comes from an empty directory of the build context.
const dockerfile = `FROM scratch
COPY signalbus /signalbus
COPY data/ /data/
ENTRYPOINT ["/signalbus"]
CMD ["node"]
`

// buildContext fills dir with the image's build context: the Dockerfile,
// the signalbus binary (spec's, or one built now) and an empty data/.
func buildContext(ctx context.Context, dir, binary string) error {
	dst := filepath.Join(dir, "signalbus")
	if binary == "" {
		root, err := findRootModule()
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", dst, "./cmd/signalbus")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("containers: go build ./cmd/signalbus in %s: %w: %s", root, err, strings.TrimSpace(out.String()))
		}
	} else if err := copyFile(dst, binary); err != nil {
		return fmt.Errorf("containers: Spec.Binary: %w", err)
	}
	if err := checkStatic(dst); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		return fmt.Errorf("containers: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return fmt.Errorf("containers: %w", err)
	}
	return nil
}

// findRootModule walks up from the working directory to the directory
// whose go.mod declares rootModule.
func findRootModule() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("containers: %w", err)
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(data) == rootModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("containers: no %s module above the working directory: set Spec.Binary", rootModule)
		}
		dir = parent
	}
}

// modulePath returns the path of go.mod's module line.
func modulePath(gomod []byte) string {
	for line := range strings.Lines(string(gomod)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// checkStatic refuses a binary that needs a dynamic loader: a scratch
// image has none, and the container would exit at once with "no such
// file or directory".
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("containers: %s is not a Linux binary: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("containers: %s is dynamically linked: build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// Image is a node image, which clusters may share (Spec.Image) so that it
// is built once for many.
type Image struct {
	tag string
	run string // its LabelRun
}

// BuildImage builds a node image from binary, a static signalbus binary
// (empty: one built from the module, as for Spec.Binary). The caller
// removes it with Remove once no cluster uses it.
func BuildImage(ctx context.Context, binary string) (*Image, error) {
	setupEnv()
	dir, err := os.MkdirTemp("", "signalbus-e2e-")
	if err != nil {
		return nil, fmt.Errorf("containers: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := buildContext(ctx, dir, binary); err != nil {
		return nil, err
	}
	run := newRunID()
	tag, err := buildImage(ctx, dir, labels(run), io.Discard)
	if err != nil {
		// A build that failed half-way may have left layers.
		return nil, errors.Join(err, sweepRun(context.WithoutCancel(ctx), run))
	}
	return &Image{tag: tag, run: run}, nil
}

// Tag is the image's reference, signalbus-e2e:<id>.
func (im *Image) Tag() string { return im.tag }

// Remove removes the image. Its clusters must be closed first.
func (im *Image) Remove(ctx context.Context) error {
	return sweepRun(ctx, im.run)
}

// buildImage builds the node image from dir, tagged signalbus-e2e:<run>
// and labelled, and returns its tag.
func buildImage(ctx context.Context, dir string, labels map[string]string, logw io.Writer) (string, error) {
	prov, err := testcontainers.NewDockerProvider()
	if err != nil {
		return "", fmt.Errorf("containers: docker provider: %w", err)
	}
	defer prov.Close()
	req := &testcontainers.ContainerRequest{
		FromDockerfile: testcontainers.FromDockerfile{
			Context:        dir,
			Repo:           "signalbus-e2e",
			Tag:            labels[LabelRun],
			BuildLogWriter: logw,
			BuildOptionsModifier: func(o *client.ImageBuildOptions) {
				o.Labels = labels
			},
		},
		Labels: labels,
	}
	tag, err := prov.BuildImage(ctx, req)
	if err != nil {
		return "", fmt.Errorf("containers: build the node image: %w", err)
	}
	if tag == "" {
		return "", errors.New("containers: build the node image: no tag")
	}
	return tag, nil
}
