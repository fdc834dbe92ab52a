package netns

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		drops []Drop
		want  string
	}{
		{"none", nil, "*filter\n:SIGNALBUS-E2E - [0:0]\nCOMMIT\n"},
		{"peer", []Drop{{Peer: netip.MustParseAddr("172.18.0.3")}},
			"*filter\n:SIGNALBUS-E2E - [0:0]\n" +
				"-A SIGNALBUS-E2E -s 172.18.0.3/32 -j DROP\n" +
				"-A SIGNALBUS-E2E -d 172.18.0.3/32 -j DROP\nCOMMIT\n"},
		{"proxied link", []Drop{{Peer: netip.MustParseAddr("172.18.0.1"), Port: 40001}},
			"*filter\n:SIGNALBUS-E2E - [0:0]\n" +
				"-A SIGNALBUS-E2E -s 172.18.0.1/32 -p tcp -m tcp --sport 40001 -j DROP\n" +
				"-A SIGNALBUS-E2E -d 172.18.0.1/32 -p tcp -m tcp --dport 40001 -j DROP\nCOMMIT\n"},
		{"unknown address skipped", []Drop{{}}, "*filter\n:SIGNALBUS-E2E - [0:0]\nCOMMIT\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Rules(tc.drops); got != tc.want {
				t.Errorf("Rules(%v) =\n%s\nwant\n%s", tc.drops, got, tc.want)
			}
		})
	}
}

func TestParseTCP(t *testing.T) {
	const table = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:184E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 030012AC:184E 010012AC:9C41 01 00000000:00000000 02:000A7F8E 00000000     0        0 2 2 0000000000000000 20 4 30 10 -1
`
	conns, err := parseTCP(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	want := Conn{Local: netip.MustParseAddrPort("172.18.0.3:6222"), Remote: netip.MustParseAddrPort("172.18.0.1:40001")}
	if len(conns) != 1 || conns[0] != want {
		t.Errorf("parseTCP = %v, want only the established %v", conns, want)
	}
	if _, err := parseTCP(strings.NewReader("header\n 1: zz:1 00000000:0000 01\n")); err == nil {
		t.Error("parseTCP of a garbled address: no error")
	}
}

func TestApplyNoProcess(t *testing.T) {
	if err := Apply(t.Context(), 0, nil); err == nil || !strings.Contains(err.Error(), "no process") {
		t.Errorf("Apply(pid 0) = %v, want an error naming the missing process", err)
	}
}
