package dashboards_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireTool finds a binary of Debian's prometheus package. Without it the
// test skips, saying so, except in CI (CI set, as `make test` sets it, after
// `make prometheus` installed the package), where it fails.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found (CI is set): install Debian's prometheus package (`make prometheus`)", name)
	}
	t.Skipf("SKIPPED: %s not found, so the shipped Prometheus files and the panel queries are NOT checked against a real Prometheus; `make prometheus` installs it", name)
	return ""
}

func TestPromtoolChecksShippedFiles(t *testing.T) {
	promtool := requireTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "alerts.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// freePorts reserves n distinct loopback ports and releases them for the
// processes the test starts.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// process is a child the test started; stop ends it with SIGTERM (SIGKILL
// after a grace period) and waits.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed once the process has exited
	err  error         // its Wait error, set before done is closed
}

func start(t *testing.T, dir, name string, bin string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *process) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not stop on SIGTERM; killed", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) tail() string {
	data, _ := os.ReadFile(p.log)
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return string(data)
}

// TestRealPrometheus runs Debian's Prometheus against three signalbus node
// processes under signalbus pub load, and waits until every panel query of
// every dashboard returns a non-empty result. It prints each panel's series
// count.
func TestRealPrometheus(t *testing.T) {
	promBin := requireTool(t, "prometheus")
	if testing.Short() {
		t.Skip("-short: the real-Prometheus test starts four processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "signalbus")
	// Built in the root module (its go.mod, not this one's).
	build := exec.Command("go", "build", "-o", bin, "./cmd/signalbus")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build signalbus: %v\n%s", err, out)
	}

	ports := freePorts(t, 10)
	client, routes, httpPorts, promPort := ports[0:3], ports[3:6], ports[6:9], ports[9]
	var nodes []*process
	for i := range 3 {
		var peers []string
		for j := range 3 {
			if j != i {
				peers = append(peers, fmt.Sprintf("nats://127.0.0.1:%d", routes[j]))
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		args := []string{"node",
			"--name", name,
			"--listen", fmt.Sprintf("127.0.0.1:%d", client[i]),
			"--cluster-listen", fmt.Sprintf("127.0.0.1:%d", routes[i]),
			"--routes", strings.Join(peers, ","),
			"--data-dir", filepath.Join(dir, name),
			"--http", fmt.Sprintf("127.0.0.1:%d", httpPorts[i]),
			"--expected-size", "3",
		}
		nodes = append(nodes, start(t, dir, name, bin, append(args, nodeArgs...)...))
	}

	var scrape []string
	for _, p := range httpPorts {
		scrape = append(scrape, fmt.Sprintf("'127.0.0.1:%d'", p))
	}
	alerts, err := filepath.Abs("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ['%s']
scrape_configs:
  - job_name: signalbus
    static_configs:
      - targets: [%s]
`, alerts, strings.Join(scrape, ", "))
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := start(t, dir, "prometheus", promBin,
		"--config.file="+configPath,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort))
	api := fmt.Sprintf("http://127.0.0.1:%d", promPort)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	all := append(nodes, prom)
	failNow := func(format string, args ...any) {
		t.Helper()
		for _, p := range all {
			t.Logf("--- %s log:\n%s", p.name, p.tail())
		}
		t.Fatalf(format, args...)
	}

	// The nodes form their cluster before pub can publish durably.
	for _, p := range httpPorts {
		if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", p), all); err != nil {
			failNow("node on :%d never ready: %v", p, err)
		}
	}
	pub := start(t, dir, "pub", bin, "pub",
		"--nats", fmt.Sprintf("nats://127.0.0.1:%d", client[0]),
		"--type", "order.created", "--source", "/dashboards/prometheus-test",
		"--data", `{"sku":"A-1","qty":1}`,
		"--rate", "20", "--count", "1000000")
	all = append(all, pub)

	if err := waitHTTP(ctx, api+"/-/ready", all); err != nil {
		failNow("prometheus never ready: %v", err)
	}

	queries := targets(t)
	sort.Slice(queries, func(i, j int) bool { return queries[i].String() < queries[j].String() })
	counts := make([]int, len(queries))
	for {
		empty := 0
		for i, q := range queries {
			n, err := seriesCount(ctx, api, substitute(q.expr))
			if err != nil {
				failNow("%s: %v", q, err)
			}
			counts[i] = n
			if n == 0 {
				empty++
			}
		}
		if empty == 0 {
			break
		}
		for _, p := range all {
			if p.exited() {
				failNow("%s exited while %d panel queries were still empty", p.name, empty)
			}
		}
		select {
		case <-ctx.Done():
			for i, q := range queries {
				if counts[i] == 0 {
					t.Errorf("%s: no series: %s", q, substitute(q.expr))
				}
			}
			failNow("%d of %d panel queries still empty", empty, len(queries))
		case <-time.After(time.Second):
		}
	}
	for i, q := range queries {
		t.Logf("%-70s %3d series", q, counts[i])
	}

	// Nodes end cleanly on SIGTERM: exit status 0.
	pub.stop(t)
	for _, n := range nodes {
		n.stop(t)
		if n.err != nil {
			t.Errorf("%s: exit after SIGTERM: %v\n%s", n.name, n.err, n.tail())
		}
	}
}

// nodeArgs are extra flags every test node gets: a subscription of its
// own to the pub client's signals, and a canary publishing through each
// node's bus, so that the publish and delivery panels have a path to show.
var nodeArgs = []string{"--subscribe", "order.**", "--canary-interval", "250ms"}

func waitHTTP(ctx context.Context, url string, procs []*process) error {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		for _, p := range procs {
			if p.exited() {
				return fmt.Errorf("%s exited", p.name)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// seriesCount runs an instant query and counts the series of its result.
func seriesCount(ctx context.Context, api, expr string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/api/v1/query",
		strings.NewReader(url.Values{"query": {expr}}.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return 0, err
	}
	if err := json.Unmarshal(buf.Bytes(), &body); err != nil {
		return 0, fmt.Errorf("query %s: %w: %s", expr, err, buf.String())
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", expr, body.Error)
	}
	return len(body.Data.Result), nil
}
