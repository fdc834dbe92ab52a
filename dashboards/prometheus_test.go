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
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// TestRealPrometheus runs Debian's Prometheus, with the shipped
// prometheus.yml and alerts.yml, against three signalbus node processes
// under signalbus pub load. It drives the events a quiet cluster does not
// have: a node stops and starts again (membership transitions), and a
// signal id is stored twice (dedup hits). It waits until every panel query
// of every dashboard returns a non-empty result, the panels of those events
// show real series, no zero fill stands beside a real series of its group,
// and every alerting rule evaluates. It prints each panel's series count,
// and for a zero-filled one how many series are real and how many are the
// zero fill.
func TestRealPrometheus(t *testing.T) {
	promBin := requireTool(t, "prometheus")
	if testing.Short() {
		t.Skip("-short: the real-Prometheus test starts five processes")
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
	startNode := func(i int, logName string) *process {
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
		return start(t, dir, logName, bin, append(args, nodeArgs...)...)
	}
	var nodes []*process
	for i := range 3 {
		nodes = append(nodes, startNode(i, fmt.Sprintf("n%d", i+1)))
	}

	var scrape []string
	for _, p := range httpPorts {
		scrape = append(scrape, fmt.Sprintf("127.0.0.1:%d", p))
	}
	configPath := renderShippedConfig(t, dir, scrape)
	prom := start(t, dir, "prometheus", promBin,
		"--config.file="+configPath,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort))
	api := fmt.Sprintf("http://127.0.0.1:%d", promPort)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	all := func() []*process { return append(slices.Clone(nodes), prom) }
	var pub *process
	failNow := func(format string, args ...any) {
		t.Helper()
		procs := all()
		if pub != nil {
			procs = append(procs, pub)
		}
		for _, p := range procs {
			t.Logf("--- %s log:\n%s", p.name, p.tail())
		}
		t.Fatalf(format, args...)
	}
	waitReady := func(i int) {
		t.Helper()
		if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPorts[i]), all()); err != nil {
			failNow("n%d never ready: %v", i+1, err)
		}
	}

	// The nodes form their cluster before pub can publish durably.
	for i := range nodes {
		waitReady(i)
	}
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", client[0])
	pub = start(t, dir, "pub", bin, "pub",
		"--nats", natsURL,
		"--type", "order.created", "--source", "/dashboards/prometheus-test",
		"--data", `{"sku":"A-1","qty":1}`,
		"--rate", "20", "--count", "1000000")
	if err := waitHTTP(ctx, api+"/-/ready", append(all(), pub)); err != nil {
		failNow("prometheus never ready: %v", err)
	}

	// Transitions: n3 leaves (n1 and n2 count node_down) and comes back
	// (node_up on every node, n3 a new process).
	nodes[2].stop(t)
	if nodes[2].err != nil {
		failNow("n3: exit after SIGTERM: %v", nodes[2].err)
	}
	if err := waitSeries(ctx, api, `signalbus_cluster_transitions_total{event="node_down"}`, 2); err != nil {
		failNow("n1 and n2 never counted n3 down: %v", err)
	}
	nodes[2] = startNode(2, "n3-restarted")
	waitReady(2)

	// Dedup hits: the stream drops an id it stored within its duplicate
	// window before any node sees it, so the second copy of an id reaches
	// the nodes only once that window has passed. The test shortens the
	// window (nodes create the stream and never update it) and publishes
	// the same id with signalbus pub until the stream stores it again.
	if err := shortenDuplicateWindow(ctx, natsURL); err != nil {
		failNow("%v", err)
	}
	if err := publishTwice(ctx, bin, natsURL); err != nil {
		failNow("%v", err)
	}

	queries := targets(t)
	sort.Slice(queries, func(i, j int) bool { return queries[i].String() < queries[j].String() })
	fills := make([][]zeroFill, len(queries))
	for i, q := range queries {
		f, err := zeroFills(q.expr)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		fills[i] = f
	}
	var results []panelResult
	for {
		at := time.Now()
		var problems []string
		results = results[:0]
		for i, q := range queries {
			r, err := evaluate(ctx, api, q, fills[i], at)
			if err != nil {
				failNow("%s: %v", q, err)
			}
			results = append(results, r)
			problems = append(problems, r.problems()...)
		}
		rules, err := ruleProblems(ctx, api)
		if err != nil {
			failNow("rules: %v", err)
		}
		problems = append(problems, rules...)
		if len(problems) == 0 {
			break
		}
		for _, p := range append(all(), pub) {
			if p.exited() {
				failNow("%s exited while: %s", p.name, strings.Join(problems, "; "))
			}
		}
		select {
		case <-ctx.Done():
			for _, p := range problems {
				t.Error(p)
			}
			failNow("%d problems left", len(problems))
		case <-time.After(time.Second):
		}
	}
	for _, r := range results {
		t.Log(r)
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

// mustBeReal are the zero-filled panels whose events the test drives, so
// that each must show real series.
var mustBeReal = map[string]bool{
	"Transitions":                    true,
	"Dedup hits":                     true,
	"Duplicates per signal consumed": true,
}

// renderShippedConfig writes the shipped prometheus.yml into dir with the
// test's scrape targets for the three documented ones and a 1 s scrape and
// evaluation interval for the 15 s one (so that the 5 s rate window the
// tests substitute spans several scrapes), and alerts.yml beside it, where
// the config's relative rule_files entry finds it. Every substitution must
// match exactly once: a test that could not render the shipped file would
// prove nothing about it.
func renderShippedConfig(t *testing.T, dir string, targets []string) string {
	t.Helper()
	shipped, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	config := string(shipped)
	subs := [][2]string{
		{"scrape_interval: 15s", "scrape_interval: 1s"},
		{"evaluation_interval: 15s", "evaluation_interval: 1s"},
		{"- alerts.yml\n", "- alerts.yml\n"},
	}
	for i, target := range targets {
		subs = append(subs, [2]string{fmt.Sprintf("- 127.0.0.1:%d\n", 9464+i), "- " + target + "\n"})
	}
	for _, s := range subs {
		if n := strings.Count(config, s[0]); n != 1 {
			t.Fatalf("shipped prometheus.yml has %q %d times, want once: update renderShippedConfig", s[0], n)
		}
		config = strings.Replace(config, s[0], s[1], 1)
	}
	alerts, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), alerts, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// shortenDuplicateWindow sets the duplicate window of the signal stream
// to 100 ms.
func shortenDuplicateWindow(ctx context.Context, natsURL string) error {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return fmt.Errorf("connect %s: %w", natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var names []string
	for name := range js.StreamNames(ctx).Name() {
		names = append(names, name)
	}
	if len(names) != 1 {
		return fmt.Errorf("streams %v: want the one signal stream", names)
	}
	s, err := js.Stream(ctx, names[0])
	if err != nil {
		return fmt.Errorf("stream %s: %w", names[0], err)
	}
	cfg := s.CachedInfo().Config
	cfg.Duplicates = 100 * time.Millisecond
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("stream %s: duplicate window: %w", names[0], err)
	}
	return nil
}

// publishTwice publishes one signal id with signalbus pub until the
// stream has stored it twice, which it reports as acked and not a
// duplicate.
func publishTwice(ctx context.Context, bin, natsURL string) error {
	line := `{"specversion":"1.0","id":"dashboards-duplicate","type":"order.created","source":"/dashboards/prometheus-test","datacontenttype":"application/json","data":{"sku":"A-1","qty":1}}` + "\n"
	stored := 0
	for stored < 2 {
		cmd := exec.CommandContext(ctx, bin, "pub", "--nats", natsURL)
		cmd.Stdin = strings.NewReader(line)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("pub of a duplicate: %w\n%s%s", err, out, stderr.Bytes())
		}
		switch {
		case strings.Contains(string(out), " acked=1 duplicate=0 "):
			stored++
		case !strings.Contains(string(out), " acked=1 duplicate=1 "):
			return fmt.Errorf("pub of a duplicate: unexpected summary %q", out)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the stream never stored the id a second time: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// waitSeries waits until expr has at least n series.
func waitSeries(ctx context.Context, api, expr string, n int) error {
	for {
		got, err := instant(ctx, api, expr, time.Now())
		if err != nil {
			return err
		}
		if len(got) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %d series, want %d: %w", expr, len(got), n, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// panelResult is what one panel query gave at one instant.
type panelResult struct {
	q      target
	series int
	fills  []fillResult
}

// fillResult splits the series of one zero fill into the real ones and
// the zero ones; beside lists the zero series whose group has a real one.
type fillResult struct {
	real, zero int
	beside     []string
	masked     int // real series the or lost
}

func (r panelResult) String() string {
	s := fmt.Sprintf("%-70s %3d series", r.q, r.series)
	for _, f := range r.fills {
		s += fmt.Sprintf(", %d real + %d zero-fill", f.real, f.zero)
	}
	return s
}

func (r panelResult) problems() []string {
	var out []string
	if r.series == 0 {
		out = append(out, fmt.Sprintf("%s: no series: %s", r.q, substitute(r.q.expr)))
	}
	for _, f := range r.fills {
		if len(f.beside) > 0 {
			out = append(out, fmt.Sprintf("%s: zero fill beside a real series of its group: %v", r.q, f.beside))
		}
		if f.masked > 0 {
			out = append(out, fmt.Sprintf("%s: %d real series missing from the filled result", r.q, f.masked))
		}
		if mustBeReal[r.q.panel] && f.real == 0 {
			out = append(out, fmt.Sprintf("%s: only the zero fill, no real series yet", r.q))
		}
	}
	return out
}

// evaluate runs a panel query and each of its zero fills (the whole or,
// and its real side alone) at one instant.
func evaluate(ctx context.Context, api string, q target, fills []zeroFill, at time.Time) (panelResult, error) {
	series, err := instant(ctx, api, substitute(q.expr), at)
	if err != nil {
		return panelResult{}, err
	}
	r := panelResult{q: q, series: len(series)}
	for _, f := range fills {
		filled, err := instant(ctx, api, f.expr, at)
		if err != nil {
			return panelResult{}, err
		}
		real, err := instant(ctx, api, f.real, at)
		if err != nil {
			return panelResult{}, err
		}
		realSeries, realGroups := map[string]bool{}, map[string]bool{}
		for _, m := range real {
			realSeries[key(m, nil)] = true
			realGroups[key(m, f.on)] = true
		}
		var fr fillResult
		seen := 0
		for _, m := range filled {
			if realSeries[key(m, nil)] {
				fr.real++
				seen++
				continue
			}
			fr.zero++
			if realGroups[key(m, f.on)] {
				fr.beside = append(fr.beside, key(m, nil))
			}
		}
		fr.masked = len(realSeries) - seen
		r.fills = append(r.fills, fr)
	}
	return r, nil
}

// key is a series' labels, or only those named in only, as one string.
func key(m map[string]string, only []string) string {
	var parts []string
	for k, v := range m {
		if only == nil || slices.Contains(only, k) {
			parts = append(parts, k+"="+strconv.Quote(v))
		}
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ", ") + "}"
}

// ruleProblems are the loaded alerting rules that have not evaluated
// cleanly, or a problem saying none are loaded.
func ruleProblems(ctx context.Context, api string) ([]string, error) {
	var data struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := get(ctx, api+"/api/v1/rules", &data); err != nil {
		return nil, err
	}
	var out []string
	n := 0
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				out = append(out, fmt.Sprintf("alerts.yml: rule %s: health %q %s", r.Name, r.Health, r.LastError))
			}
		}
	}
	if n == 0 {
		out = append(out, "alerts.yml: no rules loaded")
	}
	return out, nil
}

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

// instant runs an instant query at a time and returns the labels of each
// series of its result.
func instant(ctx context.Context, api, expr string, at time.Time) ([]map[string]string, error) {
	var data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
		} `json:"result"`
	}
	form := url.Values{"query": {expr}, "time": {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)}}
	if err := post(ctx, api+"/api/v1/query", form, &data); err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	out := make([]map[string]string, 0, len(data.Result))
	for _, r := range data.Result {
		out = append(out, r.Metric)
	}
	return out, nil
}

func post(ctx context.Context, u string, form url.Values, data any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(req, data)
}

func get(ctx context.Context, u string, data any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	return do(req, data)
}

// do sends a Prometheus API request and decodes the data of its answer.
func do(req *http.Request, data any) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return err
	}
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(buf.Bytes(), &body); err != nil {
		return fmt.Errorf("%w: %s", err, buf.String())
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s", resp.Status, body.Error)
	}
	return json.Unmarshal(body.Data, data)
}
