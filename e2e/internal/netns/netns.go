// Package netns injects packet drops into the network namespace of a
// process from outside it, with iptables run through nsenter, and reads
// the process's TCP connections from /proc. It is how the container
// backend partitions nodes: DROP rules, not refused connections or a
// missing interface, so peers see timeouts as in a real partition.
//
// Every rule lives in one chain of the filter table, Chain, jumped to from
// INPUT and OUTPUT: Apply replaces the chain's rules at once
// (iptables-restore --noflush), so healing is an empty rule set and no
// other rule in the namespace is touched.
//
// It needs root, nsenter (util-linux) and iptables on the host, and the
// process to be visible in this pid namespace (a local Docker engine).
package netns

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Chain is the filter chain holding every rule this package installs.
const Chain = "SIGNALBUS-E2E"

// Drop is one kind of packet to drop in a namespace.
type Drop struct {
	// Peer drops every packet to and from this address (incoming with it
	// as source, outgoing with it as destination).
	Peer netip.Addr
	// Port, with Peer, narrows the drop to TCP with Peer:Port as the
	// other end (outgoing to Peer port Port, incoming from Peer port
	// Port): one proxied link among several through the same host.
	Port uint16
}

// Rules renders drops as an iptables-restore input that replaces Chain's
// rules (and creates Chain if it is missing). No drops: an empty chain.
func Rules(drops []Drop) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*filter\n:%s - [0:0]\n", Chain)
	for _, d := range drops {
		if !d.Peer.IsValid() {
			continue
		}
		host := d.Peer.String() + "/" + strconv.Itoa(d.Peer.BitLen())
		if d.Port == 0 {
			fmt.Fprintf(&b, "-A %s -s %s -j DROP\n", Chain, host)
			fmt.Fprintf(&b, "-A %s -d %s -j DROP\n", Chain, host)
			continue
		}
		fmt.Fprintf(&b, "-A %s -s %s -p tcp -m tcp --sport %d -j DROP\n", Chain, host, d.Port)
		fmt.Fprintf(&b, "-A %s -d %s -p tcp -m tcp --dport %d -j DROP\n", Chain, host, d.Port)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Apply replaces the drops in the network namespace of pid with drops,
// and makes sure INPUT and OUTPUT jump to Chain. It is atomic per
// namespace: the old rules hold until the new ones are in.
func Apply(ctx context.Context, pid int, drops []Drop) error {
	if err := visible(pid); err != nil {
		return err
	}
	if err := run(ctx, pid, Rules(drops), "iptables-restore", "--noflush"); err != nil {
		return err
	}
	for _, hook := range []string{"INPUT", "OUTPUT"} {
		if run(ctx, pid, "", "iptables", "-C", hook, "-j", Chain) == nil {
			continue
		}
		if err := run(ctx, pid, "", "iptables", "-I", hook, "1", "-j", Chain); err != nil {
			return err
		}
	}
	return nil
}

// visible checks that pid is a process this host can enter.
func visible(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("netns: no process (pid %d)", pid)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil {
		return fmt.Errorf("netns: pid %d is not visible here (is the Docker engine remote?): %w", pid, err)
	}
	return nil
}

// run runs tool with args in pid's network namespace, stdin as its input.
func run(ctx context.Context, pid int, stdin, tool string, args ...string) error {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("netns: nsenter (util-linux) is needed to reach a container's namespace: %w", err)
	}
	path, err := lookTool(tool)
	if err != nil {
		return err
	}
	full := append([]string{"-t", strconv.Itoa(pid), "-n", path}, args...)
	cmd := exec.CommandContext(ctx, nsenter, full...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("netns: %s %s in pid %d's namespace: %w: %s", tool, strings.Join(args, " "), pid, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// lookTool finds an iptables tool on PATH or in /usr/sbin and /sbin,
// which a non-login PATH may lack.
func lookTool(tool string) (string, error) {
	if p, err := exec.LookPath(tool); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := dir + "/" + tool
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("netns: %s not found: partitions need iptables on the Docker host", tool)
}

// Conn is one established TCP connection, IPv4.
type Conn struct {
	Local, Remote netip.AddrPort
}

// Established returns the established IPv4 TCP connections of pid's
// network namespace, read from /proc/<pid>/net/tcp.
func Established(pid int) ([]Conn, error) {
	if err := visible(pid); err != nil {
		return nil, err
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	defer f.Close()
	return parseTCP(f)
}

// tcpEstablished is TCP_ESTABLISHED in /proc/net/tcp's st column.
const tcpEstablished = "01"

func parseTCP(r io.Reader) ([]Conn, error) {
	var conns []Conn
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != tcpEstablished {
			continue
		}
		local, err := parseAddr(f[1])
		if err != nil {
			return nil, err
		}
		remote, err := parseAddr(f[2])
		if err != nil {
			return nil, err
		}
		conns = append(conns, Conn{Local: local, Remote: remote})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	return conns, nil
}

// parseAddr parses /proc/net/tcp's "0100007F:1F90": the IPv4 address as
// a 32-bit word in host (little-endian) order, the port big-endian.
func parseAddr(s string) (netip.AddrPort, error) {
	ip, port, ok := strings.Cut(s, ":")
	b, err := hex.DecodeString(ip)
	if !ok || err != nil || len(b) != 4 {
		return netip.AddrPort{}, fmt.Errorf("netns: bad address %q in /proc/net/tcp", s)
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, errors.Join(fmt.Errorf("netns: bad port in %q", s), err)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]}), uint16(p)), nil
}
