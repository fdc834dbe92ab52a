package loadtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// verdictJSON is a verdict as the e2e output has it, for comparing two.
func verdictJSON(t testing.TB, v Verdict) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// twoNodes plays a run of two nodes that record to a file each, with
// the harness's faults in a third: n1 publishes, times out once and goes
// on as n1/2; n2's subscriber misses one signal.
func twoNodes(t testing.TB) (files [3]*bytes.Buffer, merged *History) {
	t.Helper()
	for i := range files {
		files[i] = &bytes.Buffer{}
	}
	// Both records of an event read the same time; tick moves it on.
	now := epoch
	clock := func() time.Time { return now }
	tick := func() time.Time { now = now.Add(time.Millisecond); return now }
	merged = NewHistory(WithClock(clock)) // the same run, recorded in one History
	n1 := NewHistory(WithClock(clock), WithNode("n1"), WithRecord(files[0]))
	n2 := NewHistory(WithClock(clock), WithNode("n2"), WithRecord(files[1]))
	harness := NewRecorder(files[2])

	s1, _ := n1.Subscriber("s1", "order.**")
	s2, _ := n2.Subscriber("s2", "order.*")
	m1, _ := merged.SubscriberOn("n1", "s1", "order.**")
	m2, _ := merged.SubscriberOn("n2", "s2", "order.*")

	p, mp := n1.Publisher("n1"), merged.PublisherOn("n1", "n1")
	start := tick()
	for i := range 6 {
		tick()
		sig := bus.Signal{ID: fmt.Sprintf("x%d", i), Type: "order.created"}
		op, mop := p.Attempt(&sig), mp.Attempt(&sig)
		tick()
		switch i {
		case 2:
			p, mp = op.Info(errors.New("publish: context deadline exceeded")), mop.Info(errors.New("publish: context deadline exceeded"))
		case 4:
			op.Fail(bus.ErrInvalidSignal)
			mop.Fail(bus.ErrInvalidSignal)
		default:
			op.Ack()
			mop.Ack()
		}
	}
	end := tick()
	if err := harness.Fault("isolate n2", start, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := harness.Fault("isolate n2", start, end); err != nil {
		t.Fatal(err)
	}
	if err := merged.AddFault(Fault{Name: "isolate n2", Start: start, End: end}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"x0", "x1", "x2", "x3", "x5"} { // x4 failed: never sent
		at := tick()
		s1.DeliverAt(id, at)
		m1.DeliverAt(id, at)
	}
	for _, id := range []string{"x0", "x2", "x5", "x5"} { // x1 and x3 lost, x5 twice
		at := tick()
		s2.DeliverAt(id, at)
		m2.DeliverAt(id, at)
	}
	for _, h := range []*History{n1, n2} {
		if err := h.RecordErr(); err != nil {
			t.Fatal(err)
		}
	}
	return files, merged
}

func TestRecordRoundTrip(t *testing.T) {
	files, merged := twoNodes(t)
	h, err := ReadHistory(files[2], files[0], files[1])
	if err != nil {
		t.Fatal(err)
	}
	got, want := h.Check(), merged.Check()
	if g, w := verdictJSON(t, got), verdictJSON(t, want); g != w {
		t.Fatalf("read back:\n%s\nrecorded:\n%s", g, w)
	}
	// The run itself, so that the round trip is not trivially of nothing.
	if got.Attempted != 6 || got.Acked != 4 || got.Info != 1 || got.Failed != 1 || got.Lost != 2 || got.LostOnNode != 2 ||
		got.Duplicated != 1 || len(got.Publishers) != 2 || got.Publishers[1].Name != "n1/2" || len(got.Faults) != 1 || got.Faults[0].End.IsZero() {
		t.Errorf("verdict %v", got)
	}

	// WriteTo keeps the merged run as one file that reads back the same.
	var one bytes.Buffer
	if _, err := h.WriteTo(&one); err != nil {
		t.Fatal(err)
	}
	again, err := ReadHistory(&one)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := verdictJSON(t, again.Check()), verdictJSON(t, want); g != w {
		t.Fatalf("written and read again:\n%s\nrecorded:\n%s", g, w)
	}
}

// TestRecordFormat pins the fields of each record, as the harness and
// other tools read them.
func TestRecordFormat(t *testing.T) {
	files, _ := twoNodes(t)
	want := map[string][]string{
		"open":      {"op", "t"},
		"subscribe": {"node", "op", "pattern", "subscriber", "t"},
		"invoke":    {"id", "n", "node", "op", "publisher", "t", "type"},
		"ok":        {"id", "n", "node", "op", "publisher", "t"},
		"info":      {"error", "id", "n", "node", "op", "publisher", "t"},
		"fail":      {"error", "id", "n", "node", "op", "publisher", "t"},
		"deliver":   {"id", "node", "op", "subscriber", "t"},
		"fault":     {"end", "name", "op", "start"},
	}
	seen := map[string]bool{}
	var infos []map[string]any
	for i, f := range files {
		text := f.String()
		if !strings.HasPrefix(text, "\n{\"op\":\"open\"") || !strings.HasSuffix(text, "}\n") {
			t.Errorf("file %d does not open with a newline and an open record, or does not end a line: %q", i, text)
		}
		for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("file %d: %q: %v", i, line, err)
			}
			op := m["op"].(string)
			var keys []string
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if op == "fault" && m["end"] == nil {
				continue // the fault's first line, while it lasts
			}
			if w := want[op]; strings.Join(keys, ",") != strings.Join(w, ",") {
				t.Errorf("%s record has %v, want %v: %s", op, keys, w, line)
			}
			for _, k := range []string{"t", "start", "end"} {
				if s, ok := m[k].(string); ok {
					if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
						t.Errorf("%s: %v", k, err)
					}
				}
			}
			if op == "info" {
				infos = append(infos, m)
			}
			seen[op] = true
		}
	}
	for op := range want {
		if !seen[op] {
			t.Errorf("no %s record written", op)
		}
	}
	if len(infos) != 1 || infos[0]["publisher"] != "n1" || infos[0]["n"] != 3.0 || infos[0]["node"] != "n1" || infos[0]["id"] != "x2" {
		t.Errorf("info records %v", infos)
	}
}

func TestReadHistoryTorn(t *testing.T) {
	files, merged := twoNodes(t)
	want := verdictJSON(t, merged.Check())
	node1 := files[0].String()
	invoke := `{"op":"invoke","publisher":"n1/2","n":9,"id":"late","type":"order.created","node":"n1","t":"2026-01-01T00:00:01Z"}` + "\n"

	t.Run("last line", func(t *testing.T) {
		for _, cut := range []int{1, 10, len(invoke) - 2} {
			h, err := ReadHistory(strings.NewReader(node1+invoke[:cut]), strings.NewReader(files[1].String()), strings.NewReader(files[2].String()))
			if err != nil {
				t.Fatalf("cut at %d: %v", cut, err)
			}
			v := h.Check()
			if v.TornLines != 1 || h.TornLines() != 1 {
				t.Errorf("cut at %d: torn lines %d", cut, v.TornLines)
			}
			v.TornLines = 0
			if got := verdictJSON(t, v); got != want {
				t.Errorf("cut at %d: a torn line changed the verdict:\n%s", cut, got)
			}
		}
	})

	t.Run("then a restart appends", func(t *testing.T) {
		var buf bytes.Buffer
		buf.WriteString(node1 + invoke[:20])
		// The node restarts with a publisher name of its own and
		// appends to the same file.
		h2 := NewHistory(WithNode("n1"), WithRecord(&buf), WithClock(func() time.Time { return ms(5000) }))
		h2.Publisher("n1.r2").Attempt(&bus.Signal{ID: "after", Type: "order.created"}).Ack()
		h, err := ReadHistory(&buf, files[1], files[2])
		if err != nil {
			t.Fatal(err)
		}
		v := h.Check()
		if v.TornLines != 1 || v.Attempted != 7 || v.Publishers[len(v.Publishers)-1].Name != "n1.r2" {
			t.Errorf("verdict %v, publishers %+v", v, v.Publishers)
		}
	})
}

func TestReadHistoryErrors(t *testing.T) {
	sub := `{"op":"subscribe","subscriber":"s1","node":"n1","pattern":"order.**","t":"2026-01-01T00:00:00Z"}`
	inv := `{"op":"invoke","publisher":"p","n":1,"id":"x1","type":"order.created","node":"n1","t":"2026-01-01T00:00:01Z"}`
	ok := `{"op":"ok","publisher":"p","n":1,"id":"x1","node":"n1","t":"2026-01-01T00:00:02Z"}`
	open := `{"op":"open","t":"2026-01-01T00:00:00Z"}`
	cases := []struct {
		name   string
		files  []string
		reader int
		line   int
		want   string
	}{
		{"not JSON", []string{sub, inv + "\nhello\n" + ok}, 1, 2, "invalid character"},
		{"cut short mid-file", []string{sub + "\n" + inv[:30] + "\n" + ok + "\n"}, 0, 2, "cut short"},
		{"cut short, whole last line", []string{sub + "\n" + inv[:30] + "\n"}, 0, 2, "cut short"},
		{"cut short, then no open record", []string{inv[:30] + "\n" + inv}, 0, 1, "cut short"},
		{"more after the record", []string{inv + " {}"}, 0, 1, "more after"},
		{"an array", []string{"[1]"}, 0, 1, "cannot unmarshal"},
		{"null", []string{"null"}, 0, 1, "no op"},
		{"unknown op", []string{`{"op":"dequeue","t":"2026-01-01T00:00:00Z"}`}, 0, 1, `unknown op "dequeue"`},
		{"invoke without n", []string{`{"op":"invoke","publisher":"p","id":"x","t":"2026-01-01T00:00:00Z"}`}, 0, 1, `"invoke" record without n`},
		{"ok without publisher", []string{`{"op":"ok","n":1,"id":"x","t":"2026-01-01T00:00:00Z"}`}, 0, 1, `"ok" record without publisher`},
		{"deliver without id", []string{`{"op":"deliver","subscriber":"s","t":"2026-01-01T00:00:00Z"}`}, 0, 1, `"deliver" record without id`},
		{"no time", []string{`{"op":"deliver","subscriber":"s","id":"x"}`}, 0, 1, `"deliver" record without t`},
		{"bad time", []string{`{"op":"deliver","subscriber":"s","id":"x","t":"yesterday"}`}, 0, 1, "parsing time"},
		{"negative n", []string{`{"op":"invoke","publisher":"p","n":-1,"id":"x","t":"2026-01-01T00:00:00Z"}`}, 0, 1, "cannot unmarshal"},
		{"bad pattern", []string{`{"op":"subscribe","subscriber":"s","pattern":"a..b","t":"2026-01-01T00:00:00Z"}`}, 0, 1, `subscriber "s"`},
		{"fault without start", []string{`{"op":"fault","name":"cut"}`}, 0, 1, "no start"},
		{"fault ending before it starts", []string{`{"op":"fault","name":"cut","start":"2026-01-01T00:00:01Z","end":"2026-01-01T00:00:00Z"}`}, 0, 1, "before its start"},
		{"outcome never attempted", []string{sub, ok}, 1, 1, "never attempted"},
		{"outcome of another publisher", []string{inv, strings.Replace(ok, `"publisher":"p"`, `"publisher":"q"`, 1)}, 1, 1, "attempted as p#1"},
		{"delivery to nobody", []string{inv, `{"op":"deliver","subscriber":"s9","node":"n1","id":"x1","t":"2026-01-01T00:00:03Z"}`}, 1, 1, `subscriber "s9", never subscribed`},
		{"delivery on another node", []string{sub, `{"op":"deliver","subscriber":"s1","node":"n2","id":"x1","t":"2026-01-01T00:00:03Z"}`}, 1, 1, `on node "n2", subscribed on node "n1"`},
		{"a subscriber with two patterns", []string{sub, strings.Replace(sub, "order.**", "order.*", 1)}, 1, 1, `wants "order.*"`},
		{"a counter given twice", []string{inv, strings.Replace(inv, `"x1"`, `"x2"`, 1)}, 1, 1, "a restarted process must take a new publisher name"},
		{"an id from two publishers", []string{inv, strings.Replace(strings.Replace(inv, `"p"`, `"q"`, 1), `:01Z`, `:02Z`, 1)}, 1, 1, "already as p#1"},
		{"a publisher on two nodes", []string{inv, strings.Replace(strings.Replace(inv, `"n1"`, `"n2"`, 1), `"x1"`, `"x2"`, 1)}, 1, 1, `already on node "n1"`},
		{"the second file's torn line is no excuse for the first's", []string{inv[:30] + "\n", open}, 0, 1, "cut short"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rs []io.Reader
			for _, f := range tc.files {
				rs = append(rs, strings.NewReader(f))
			}
			h, err := ReadHistory(rs...)
			var re *RecordError
			if !errors.As(err, &re) {
				t.Fatalf("ReadHistory = %v, %v; want a *RecordError", h, err)
			}
			if re.Reader != tc.reader || re.Line != tc.line || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q (reader %d line %d); want reader %d line %d, %q", err, re.Reader, re.Line, tc.reader, tc.line, tc.want)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("reader %d line %d", tc.reader, tc.line)) {
				t.Errorf("error %q does not name the reader and line", err)
			}
		})
	}
}

func TestReadHistoryTolerates(t *testing.T) {
	inv := `{"op":"invoke","publisher":"p","n":1,"id":"x1","type":"order.created","node":"n1","t":"2026-01-01T00:00:01Z"}`
	cases := []struct {
		name  string
		files []string
		torn  int
	}{
		{"nothing", nil, 0},
		{"empty files", []string{"", "\n\n"}, 0},
		{"CRLF and blank lines", []string{"\r\n" + inv + "\r\n\r\n"}, 0},
		{"no final newline", []string{inv}, 0},
		{"the same invoke twice", []string{inv + "\n" + inv}, 0},
		{"a resubscription after a restart", []string{
			`{"op":"subscribe","subscriber":"s","node":"n1","pattern":"**","t":"2026-01-01T00:00:00Z"}` + "\n" +
				`{"op":"subscribe","subscriber":"s","node":"n1","pattern":"**","t":"2026-01-01T00:00:09Z"}`}, 0},
		{"unknown fields", []string{strings.Replace(inv, `"op"`, `"future":1,"op"`, 1)}, 0},
		{"a torn line in each file", []string{inv + "\n{\"op\":\"ok\",\"pub", "{\"op\""}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rs []io.Reader
			for _, f := range tc.files {
				rs = append(rs, strings.NewReader(f))
			}
			h, err := ReadHistory(rs...)
			if err != nil {
				t.Fatal(err)
			}
			if h.TornLines() != tc.torn {
				t.Errorf("torn lines %d, want %d", h.TornLines(), tc.torn)
			}
		})
	}
}

// A read error is reported with its reader.
func TestReadHistoryReadError(t *testing.T) {
	boom := errors.New("disk gone")
	_, err := ReadHistory(strings.NewReader(""), io.MultiReader(strings.NewReader("{\"op\":"), iotestErr{boom}))
	var re *RecordError
	if !errors.As(err, &re) || re.Reader != 1 || !errors.Is(err, boom) {
		t.Errorf("ReadHistory = %v", err)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

func TestRecorder(t *testing.T) {
	var buf bytes.Buffer
	r := NewRecorder(&buf)
	if err := r.Write(Record{Op: "invoke"}); !errors.Is(err, ErrBadRecord) {
		t.Errorf("an invalid record: %v", err)
	}
	if buf.Len() != 0 || r.Err() != nil {
		t.Errorf("an invalid record was written (%q) or kept as the error (%v)", buf.String(), r.Err())
	}

	// One Write call per record: each reaches the file whole.
	cw := &callWriter{}
	r = NewRecorder(cw)
	for i := range 3 {
		if err := r.Write(Record{Op: RecordDeliver, Subscriber: "s", ID: fmt.Sprint(i), T: epoch}); err != nil {
			t.Fatal(err)
		}
	}
	if len(cw.calls) != 3 || !strings.HasPrefix(cw.calls[0], "\n{\"op\":\"open\"") || strings.Count(cw.calls[0], "\n") != 3 ||
		cw.calls[1] != `{"op":"deliver","subscriber":"s","id":"1","t":"2026-01-01T00:00:00Z"}`+"\n" {
		t.Errorf("writes %q", cw.calls)
	}

	// After a write error it writes nothing more.
	boom := errors.New("disk full")
	fw := &failWriter{after: 1, err: boom}
	h := NewHistory(WithRecord(fw))
	s, _ := h.Subscriber("s", "**")
	s.Deliver(bus.Signal{ID: "x"})
	s.Deliver(bus.Signal{ID: "y"})
	if err := h.RecordErr(); !errors.Is(err, boom) || fw.writes != 2 {
		t.Errorf("RecordErr = %v after %d writes", err, fw.writes)
	}
	if (&History{}).RecordErr() != nil {
		t.Error("a History that records nothing has a record error")
	}
}

type callWriter struct{ calls []string }

func (c *callWriter) Write(p []byte) (int, error) {
	c.calls = append(c.calls, string(p))
	return len(p), nil
}

type failWriter struct {
	after, writes int
	err           error
}

func (f *failWriter) Write(p []byte) (int, error) {
	f.writes++
	if f.writes > f.after {
		return 0, f.err
	}
	return len(p), nil
}

// TestRecordConcurrent records from many goroutines into one file, as a
// node does: every line is whole. Run with -race.
func TestRecordConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n1.jsonl")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHistory(WithNode("n1"), WithRecord(f))
	s, _ := h.Subscriber("s", "**")
	const pubs, per = 4, 200
	var wg sync.WaitGroup
	for i := range pubs {
		wg.Go(func() {
			p := h.Publisher(fmt.Sprintf("p%d", i))
			for range per {
				sig := bus.Signal{Type: "t"}
				p.Attempt(&sig).Ack()
				s.Deliver(sig)
			}
		})
	}
	wg.Wait()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.RecordErr(); err != nil {
		t.Fatal(err)
	}
	rf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	back, err := ReadHistory(rf)
	if err != nil {
		t.Fatal(err)
	}
	v := back.Check()
	if v.Attempted != pubs*per || v.Acked != pubs*per || v.Read != pubs*per || !v.OK() || v.TornLines != 0 {
		t.Errorf("verdict %v", v)
	}
}

// FuzzReadHistory reads two files of any bytes: it must return a
// History or a *RecordError, never panic; a History it returns must
// check, and write out (WriteTo) as records that read back to the same
// verdict.
func FuzzReadHistory(f *testing.F) {
	files, _ := twoNodes(f)
	f.Add(files[0].Bytes(), files[1].Bytes())
	f.Add(files[1].Bytes(), files[2].Bytes())
	f.Add(append(files[0].Bytes(), `{"op":"ok","pub`...), files[2].Bytes())
	f.Add([]byte(`{"op":"invoke","publisher":"p","n":1,"id":"x1","t":"2026-01-01T00:00:01Z"}`), []byte(`{"op":"fault","name":"cut","start":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte("{\"op\":\"in\n{\"op\":\"open\",\"t\":\"2026-01-01T00:00:00Z\"}\n"), []byte("\r\n\n"))
	f.Add([]byte(`{"op":"subscribe","subscriber":"s","pattern":"a.**.b","t":"2026-01-01T00:00:00Z"}`+"\n"+`{"op":"deliver","subscriber":"s","id":"?","t":"2026-01-01T00:00:00Z"}`), []byte(nil))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		h, err := ReadHistory(bytes.NewReader(a), bytes.NewReader(b))
		if err != nil {
			var re *RecordError
			if !errors.As(err, &re) || re.Reader < 0 || re.Reader > 1 || re.Line < 1 {
				t.Fatalf("ReadHistory error %v is not a *RecordError naming a line", err)
			}
			return
		}
		v := h.Check(FastMode(time.Second))
		var out bytes.Buffer
		if _, err := h.WriteTo(&out); err != nil {
			t.Fatalf("WriteTo: %v", err)
		}
		again, err := ReadHistory(&out)
		if err != nil {
			t.Fatalf("reading back what WriteTo wrote: %v\n%s", err, out.String())
		}
		w := again.Check(FastMode(time.Second))
		v.TornLines = 0
		if g, w := verdictJSON(t, w), verdictJSON(t, v); g != w {
			t.Fatalf("read back:\n%s\nfirst read:\n%s", g, w)
		}
	})
}
