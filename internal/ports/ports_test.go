package ports_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/signalbus/signalbus/internal/ports"
)

func TestUnsharedIsFreeAndBelowTheEphemeralRange(t *testing.T) {
	seen := map[string]bool{}
	for range 10 {
		addr := ports.Unshared()
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		if host != "127.0.0.1" || p < ports.RangeStart || p >= ports.RangeEnd {
			t.Fatalf("Unshared() = %s, want 127.0.0.1 and a port in [%d, %d)", addr, ports.RangeStart, ports.RangeEnd)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("the port Unshared gave cannot be bound: %v", err)
		}
		_ = l.Close()
		seen[addr] = true
	}
	if len(seen) < 2 {
		t.Errorf("ten calls gave %d distinct ports; want them spread over the range", len(seen))
	}
}
