package cluster

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		cfg   Config
		field string // "" = valid
		want  string
	}{
		{"minimal", Config{Name: "n1"}, "", ""},
		{"embedded cluster", Config{Name: "n1", Listen: ":0", ClusterListen: "127.0.0.1:0", Routes: []string{"nats://127.0.0.1:6222"}, Mode: Fast}, "", ""},
		{"external", Config{Name: "n1", NATSURL: "nats://a:4222,nats://b:4222"}, "", ""},
		{"no name", Config{}, "Name", "is required"},
		{"dotted name", Config{Name: "n.1"}, "Name", `has '.' at byte 1`},
		{"name with a space", Config{Name: "node 1"}, "Name", `has ' ' at byte 4`},
		{"name with a percent sign", Config{Name: "n%41"}, "Name", `has '%' at byte 1`},
		{"name with a slash", Config{Name: "a/b"}, "Name", `has '/' at byte 1`},
		{"name with a wildcard", Config{Name: "n>"}, "Name", `has '>' at byte 1`},
		{"non-ASCII name", Config{Name: "nœud"}, "Name", `has 'œ' at byte 1`},
		{"longest name", Config{Name: strings.Repeat("n", MaxNameLength)}, "", ""},
		{"name too long", Config{Name: strings.Repeat("n", MaxNameLength+1)}, "Name", "65 bytes long, over 64"},
		{"name with every kind of character", Config{Name: "Node_07-eu"}, "", ""},
		{"mode", Config{Name: "n1", Mode: Mode(7)}, "Mode", "neither Durable nor Fast"},
		{"encoding", Config{Name: "n1", Encoding: Encoding(3)}, "Encoding", "neither Binary nor ProtobufBatch"},
		{"batch encoding", Config{Name: "n1", Encoding: ProtobufBatch}, "", ""},
		{"external with server fields", Config{Name: "n1", NATSURL: "nats://a:4222", Listen: ":4222"}, "NATSURL", "runs no server"},
		{"listen", Config{Name: "n1", Listen: "4222"}, "Listen", "host:port"},
		{"cluster listen", Config{Name: "n1", ClusterListen: "x"}, "ClusterListen", "host:port"},
		{"cluster advertise", Config{Name: "n1", ClusterListen: "127.0.0.1:0", ClusterAdvertise: "10.0.0.7:6222"}, "", ""},
		{"cluster advertise by name", Config{Name: "n1", ClusterListen: ":6222", ClusterAdvertise: "node-1.internal:6222"}, "", ""},
		{"cluster advertise without cluster", Config{Name: "n1", ClusterAdvertise: "10.0.0.7:6222"}, "ClusterAdvertise", "needs ClusterListen"},
		{"cluster advertise not host:port", Config{Name: "n1", ClusterListen: ":6222", ClusterAdvertise: "10.0.0.7"}, "ClusterAdvertise", "host:port"},
		{"cluster advertise port 0", Config{Name: "n1", ClusterListen: ":6222", ClusterAdvertise: "10.0.0.7:0"}, "ClusterAdvertise", "port in 1…65535"},
		{"cluster advertise without host", Config{Name: "n1", ClusterListen: ":6222", ClusterAdvertise: ":6222"}, "ClusterAdvertise", "needs a host"},
		{"cluster advertise port not a number", Config{Name: "n1", ClusterListen: ":6222", ClusterAdvertise: "h:x"}, "ClusterAdvertise", "port in 1…65535"},
		{"external with cluster advertise", Config{Name: "n1", NATSURL: "nats://a:4222", ClusterAdvertise: "h:6222"}, "NATSURL", "runs no server"},
		{"routes without cluster", Config{Name: "n1", Routes: []string{"nats://a:6222"}}, "Routes", "need ClusterListen"},
		{"bad route", Config{Name: "n1", ClusterListen: ":6222", Routes: []string{"http://a:6222"}}, "Routes", "nats://host:port"},
		{"replicas", Config{Name: "n1", Replicas: 9}, "Replicas", "between 1 and 5"},
		{"expected size", Config{Name: "n1", ExpectedSize: -1}, "ExpectedSize", "negative"},
		{"prefix", Config{Name: "n1", Prefix: "a.*"}, "Prefix", "segments"},
		{"dead letter subject", Config{Name: "n1", DeadLetterSubject: "dl.>"}, "DeadLetterSubject", "literal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want a *ConfigError wrapping ErrInvalidConfig", err)
			}
			if ce.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v (field %s), want field %s and %q", err, ce.Field, tc.field, tc.want)
			}
		})
	}
}

// TestClusterAdvertise checks that the embedded server advertises
// Config.ClusterAdvertise to its peers: the INFO a route connection gets
// first names it as the address to dial.
func TestClusterAdvertise(t *testing.T) {
	n := startNode(t, Config{Name: "n1", Mode: Fast, ClusterListen: "127.0.0.1:0", ClusterAdvertise: "localhost:1"})
	if got := n.server.Options().ClusterAdvertise; got != "localhost:1" {
		t.Errorf("embedded server's ClusterAdvertise = %q, want localhost:1", got)
	}
	addr := strings.TrimPrefix(n.server.ClusterURL(), "nats://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	info, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("read the route INFO: %v", err)
	}
	if !strings.HasPrefix(info, "INFO ") || !strings.Contains(info, `"nats-route://localhost:1/"`) {
		t.Errorf("route INFO does not advertise localhost:1:\n%s", info)
	}
}
