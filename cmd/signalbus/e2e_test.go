package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/chaos/scenario"
	"github.com/signalbus/signalbus/loadtest"
)

// TestNodeRunsTheE2EAgent: with --e2e-record the node runs the chaos
// agent: on the harness's order it publishes through the node, and its
// record reads back as a history in which every acked signal was
// delivered to the node's own recording handler.
func TestNodeRunsTheE2EAgent(t *testing.T) {
	record := filepath.Join(t.TempDir(), "record.jsonl")
	natsURL, httpAddr := startNode(t, "--e2e-record", record, "--e2e-rate", "100")
	waitReady(t, httpAddr)
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	order, _ := json.Marshal(scenario.Order{Until: time.Now().Add(500 * time.Millisecond)})
	reply, err := nc.Request(scenario.ControlSubject("n1"), order, 10*time.Second)
	if err != nil || string(reply.Data) != "ok" {
		t.Fatalf("order: %v %q", err, reply.Data)
	}
	bad, err := nc.Request(scenario.ControlSubject("n1"), []byte(`{}`), 10*time.Second)
	if err != nil || string(bad.Data) == "ok" {
		t.Errorf("an order without a time: %v %q, want it refused", err, bad.Data)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(record)
		if err != nil {
			t.Fatal(err)
		}
		h, err := loadtest.ReadHistory(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		p := h.Progress()
		if p.Acked > 10 && h.Missing() == 0 && p.Attempted == p.Acked {
			v := h.Check()
			if !v.OK() || v.Lost != 0 || v.Duplicated != 0 {
				t.Errorf("verdict %s", v)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %+v, %d deliveries owed", p, h.Missing())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
