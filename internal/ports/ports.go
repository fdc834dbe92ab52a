// Package ports picks loopback ports for servers that tests start, stop
// and start again on the same port.
//
// A port from the kernel's ephemeral range (ip_local_port_range, by
// default 32768–60999), which is what listening on port 0 gives, can be
// taken by any outgoing connection's local end as soon as its listener
// closes: a client reconnecting, a route redialling. A server restarted
// on it then fails with "address already in use". Below that range the
// kernel hands out no ports by itself, so a port there stays free until
// someone binds it explicitly.
package ports

import (
	"math/rand/v2"
	"net"
	"strconv"
)

// Range is where Unshared picks: below the default ephemeral range.
const (
	RangeStart = 20000
	RangeEnd   = 32000 // exclusive
)

// Unshared returns "127.0.0.1:<port>" for a port in [RangeStart, RangeEnd)
// that was free when checked, or "127.0.0.1:0" (any free port) if none of
// its tries was. The port is not held: bind it soon, and be ready to pick
// again if someone else did first.
func Unshared() string {
	for range 20 {
		addr := "127.0.0.1:" + strconv.Itoa(RangeStart+rand.IntN(RangeEnd-RangeStart))
		if l, err := net.Listen("tcp", addr); err == nil {
			_ = l.Close()
			return addr
		}
	}
	return "127.0.0.1:0"
}
