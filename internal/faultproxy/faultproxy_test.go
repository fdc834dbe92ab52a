package faultproxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signalbus/signalbus/internal/faultproxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer echoes every connection until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				_, _ = io.Copy(c, c)
				_ = c.Close()
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(t.Context(), "127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes msg and reads len(msg) bytes back within 5 s.
func roundTrip(c net.Conn, msg string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

func mustEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	got, err := roundTrip(c, msg)
	if err != nil || got != msg {
		t.Fatalf("echo %q: got %q, %v", msg, got, err)
	}
}

// expectClosed asserts the connection is (or is about to be) closed by the
// far end: a read ends in EOF or a reset, not in a timeout.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("x")) // may fail already; the read tells
	// Data already in flight may still arrive; what matters is how it ends.
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		err = io.EOF // io.Copy reports EOF as success
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read timed out; want EOF or reset: %v", err)
	}
}

// expectSilence asserts nothing arrives on c within d.
func expectSilence(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	n, err := c.Read(make([]byte, 64))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a black-holed connection = %d bytes, %v; want a timeout", n, err)
	}
}

func TestForward(t *testing.T) {
	t.Parallel()
	p := newProxy(t, echoServer(t))
	if p.Mode() != "normal" {
		t.Fatalf("Mode() = %q, want normal", p.Mode())
	}
	c := dial(t, p.Addr())
	mustEcho(t, c, "hello")
	big := bytes.Repeat([]byte("0123456789"), 100_000) // 1 MB, many chunks
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	errc := make(chan error, 1)
	go func() { _, err := c.Write(big); errc <- err }()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read 1 MB back: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("1 MB came back altered")
	}
	// The proxy counts a chunk once its write returned, which can be just
	// after the client read it: the counters settle a moment later.
	want := int64(len("hello") + len(big))
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := p.Stats()
		if st.Accepted == 1 && st.Active == 1 && st.BytesToTarget == want && st.BytesFromTarget == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stats() = %+v, want 1 accepted, 1 active, %d bytes each way", st, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCut(t *testing.T) {
	t.Parallel()
	p := newProxy(t, echoServer(t))
	live := dial(t, p.Addr())
	mustEcho(t, live, "before")

	p.Cut()
	if p.Mode() != "cut" {
		t.Fatalf("Mode() = %q, want cut", p.Mode())
	}
	expectClosed(t, live)

	// New connections are accepted and closed at once.
	for range 3 {
		expectClosed(t, dial(t, p.Addr()))
	}
	if st := p.Stats(); st.Refused != 3 || st.Active != 0 {
		t.Fatalf("Stats() after cut = %+v, want 3 refused, 0 active", st)
	}

	p.Restore()
	mustEcho(t, dial(t, p.Addr()), "after")
}

func TestBlackhole(t *testing.T) {
	t.Parallel()
	p := newProxy(t, echoServer(t))
	live := dial(t, p.Addr())
	mustEcho(t, live, "before")

	p.Blackhole()
	if p.Mode() != "blackhole" {
		t.Fatalf("Mode() = %q, want blackhole", p.Mode())
	}
	// The connection stays open but nothing comes back.
	if _, err := live.Write([]byte("lost")); err != nil {
		t.Fatalf("write to a black-holed connection: %v", err)
	}
	expectSilence(t, live, 300*time.Millisecond)

	// A new connection is accepted, but nothing flows either.
	fresh := dial(t, p.Addr())
	if _, err := fresh.Write([]byte("void")); err != nil {
		t.Fatal(err)
	}
	expectSilence(t, fresh, 300*time.Millisecond)

	// The proxy counts what it dropped. The write of "void" may still be on
	// its way into the proxy, so poll.
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().BytesDropped < int64(len("lost")+len("void")) {
		if time.Now().After(deadline) {
			t.Fatalf("Stats() = %+v, want >= 8 bytes dropped", p.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Restore resumes the surviving connections, but dropped bytes stay
	// dropped: the echo of "lost" never comes, only what is sent now.
	p.Restore()
	mustEcho(t, live, "again")
	mustEcho(t, fresh, "fresh")
}

func TestLatency(t *testing.T) {
	t.Parallel()
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	mustEcho(t, c, "warm-up")

	const d = 50 * time.Millisecond
	p.SetLatency(d)
	start := time.Now()
	mustEcho(t, c, "slow")
	// Each direction delays by d, so an echo takes at least 2d. No upper
	// bound: a loaded machine may take longer, and that is not a failure.
	if rtt := time.Since(start); rtt < 2*d {
		t.Fatalf("round trip with latency %v took %v, want >= %v", d, rtt, 2*d)
	}

	// Order is preserved across many small chunks in flight.
	var want bytes.Buffer
	for i := range 200 {
		fmt.Fprintf(&want, "<%d>", i)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		for i := range 200 {
			if _, err := fmt.Fprintf(c, "<%d>", i); err != nil {
				return
			}
		}
	}()
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("order not preserved under latency:\n got %s\nwant %s", got, want.Bytes())
	}

	p.SetLatency(0)
	mustEcho(t, c, "fast")
}

func TestHalfClose(t *testing.T) {
	t.Parallel()
	p := newProxy(t, echoServer(t))
	p.SetLatency(20 * time.Millisecond) // EOF must wait behind queued data
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "last words" {
		t.Fatalf("after half-close read %q, %v; want the echo then EOF", got, err)
	}
}

func TestTargetDown(t *testing.T) {
	t.Parallel()
	// A target nobody listens on: the proxy accepts, fails to dial, closes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := newProxy(t, dead)
	expectClosed(t, dial(t, p.Addr()))
	if st := p.Stats(); st.DialFailures != 1 {
		t.Fatalf("Stats() = %+v, want 1 dial failure", st)
	}

	// SetTarget redirects new connections; an empty target refuses them.
	if err := p.SetTarget(echoServer(t)); err != nil {
		t.Fatal(err)
	}
	mustEcho(t, dial(t, p.Addr()), "redirected")
	if err := p.SetTarget(""); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, dial(t, p.Addr()))
	if err := p.SetTarget("no-port"); err == nil {
		t.Fatal("SetTarget(no-port) succeeded")
	}
	if _, err := faultproxy.New(t.Context(), "127.0.0.1:0", "no-port"); err == nil {
		t.Fatal("New with a bad target succeeded")
	}
	if _, err := faultproxy.New(t.Context(), "256.0.0.1:0", dead); err == nil {
		t.Fatal("New with a bad listen address succeeded")
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	p, err := faultproxy.New(t.Context(), "127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	p.SetLatency(time.Hour) // goroutines parked on a long delay must end too
	var conns []net.Conn
	for range 3 {
		c := dial(t, p.Addr())
		_, _ = c.Write([]byte("parked"))
		conns = append(conns, c)
	}
	// Wait until all three are linked before closing.
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().Active != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("Stats() = %+v, want 3 active", p.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, c := range conns {
		expectClosed(t, c)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("dial after Close succeeded")
	}
}

func TestContextEndsProxy(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	p, err := faultproxy.New(ctx, "127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	mustEcho(t, c, "alive")
	cancel()
	expectClosed(t, c)
	if err := p.Close(); err != nil {
		t.Fatalf("Close after ctx end: %v", err)
	}
}

func TestBlackholeHidesClose(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := newProxy(t, ln.Addr().String())
	client := dial(t, p.Addr())
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	p.Blackhole()
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	// Through a black hole, the far side hears nothing: not even the close.
	expectSilence(t, srv, 300*time.Millisecond)
	// Restore delivers it.
	p.Restore()
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := srv.Read(make([]byte, 8)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after Restore = %d bytes, %v; want EOF", n, err)
	}
}
