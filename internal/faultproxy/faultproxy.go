// Package faultproxy is a small TCP proxy for injecting network faults
// between two endpoints on loopback: cut a link, black-hole it, slow it
// down, and restore it.
//
// A Proxy listens on one address and forwards every accepted connection to a
// target address, bytes flowing both ways through it. Faults apply to the
// proxy as a whole, to live connections and to new ones alike:
//
//   - Cut closes every connection and, until Restore, accepts new ones only to
//     close them at once: the peers see EOF or a reset, as when a process dies
//     or a firewall rejects.
//   - Blackhole keeps connections open but silently drops every byte in both
//     directions; new connections are accepted (and dialled through to the
//     target) but nothing flows: the peers see silence, as in a network
//     partition, and only their own timeouts (pings, deadlines) end it.
//     When one side closes its connection meanwhile, the other side is not
//     told until Restore (or until it closes too).
//     Restore lets bytes flow again on the connections that survived, but
//     what was dropped stays dropped: each side has lost a stretch of the
//     other's stream, which a framed protocol such as NATS usually detects
//     as garbage and answers by closing the connection.
//   - SetLatency delays every forwarded chunk by a fixed duration, preserving
//     order and without limiting throughput (the delay is a pipeline, not a
//     sleep per read).
//
// Every goroutine a Proxy starts ends by Close.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// dialTimeout bounds the dial to the target for each accepted connection.
const dialTimeout = 5 * time.Second

// chunkSize is the read buffer per direction; queueLen is how many chunks a
// delayed direction holds in flight before the reader waits.
const (
	chunkSize = 32 << 10
	queueLen  = 256
)

type mode int

const (
	modeNormal mode = iota
	modeCut
	modeBlackhole
)

func (m mode) String() string {
	switch m {
	case modeCut:
		return "cut"
	case modeBlackhole:
		return "blackhole"
	default:
		return "normal"
	}
}

// Stats counts what went through a Proxy since New.
type Stats struct {
	Accepted        int64 // connections accepted (including refused and failed ones)
	Refused         int64 // accepted while cut, closed at once
	DialFailures    int64 // accepted, but the target could not be dialled
	Active          int   // connections currently open through the proxy
	BytesToTarget   int64 // bytes forwarded from clients to the target
	BytesFromTarget int64 // bytes forwarded from the target to clients
	BytesDropped    int64 // bytes dropped while black-holed, both directions
}

// Proxy is a fault-injecting TCP proxy. Its methods are safe for concurrent
// use.
type Proxy struct {
	ln              net.Listener
	ctx             context.Context // ends when the proxy closes
	cancel          context.CancelFunc
	stop            func() bool   // stops the AfterFunc watching the parent ctx
	ctxShutdownDone chan struct{} // closed when that AfterFunc has run
	stopOnce        sync.Once
	wg              sync.WaitGroup

	mu      sync.Mutex
	target  string
	mode    mode
	changed chan struct{} // closed and replaced at every mode change
	latency time.Duration
	links   map[*link]struct{}
	closed  bool

	accepted, refused, dialFailures atomic.Int64
	toTarget, fromTarget, dropped   atomic.Int64
}

// New listens on listen ("127.0.0.1:0" picks a free port) and forwards each
// connection to target (host:port). ctx bounds the proxy's life: when it
// ends, the proxy closes as if Close had been called (Close must still be
// called to wait for its goroutines). An empty target is allowed: the proxy
// then refuses connections until SetTarget.
func New(ctx context.Context, listen, target string) (*Proxy, error) {
	if target != "" {
		if _, _, err := net.SplitHostPort(target); err != nil {
			return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &Proxy{
		ln:      ln,
		ctx:     pctx,
		cancel:  cancel,
		target:  target,
		links:   make(map[*link]struct{}),
		changed: make(chan struct{}),
	}
	p.ctxShutdownDone = make(chan struct{})
	p.stop = context.AfterFunc(ctx, func() {
		defer close(p.ctxShutdownDone)
		_ = p.shutdown()
	})
	p.wg.Go(p.acceptLoop)
	return p, nil
}

// Addr is the address the proxy listens on, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address connections are forwarded to.
func (p *Proxy) Target() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// SetTarget changes the address new connections are forwarded to; live
// connections keep theirs. An empty target refuses new connections.
func (p *Proxy) SetTarget(target string) error {
	if target != "" {
		if _, _, err := net.SplitHostPort(target); err != nil {
			return fmt.Errorf("faultproxy: target %q: %w", target, err)
		}
	}
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
	return nil
}

// Cut closes every current connection and refuses new ones (accepts and
// closes them at once) until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.setModeLocked(modeCut)
	links := p.snapshotLocked()
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// Blackhole keeps connections open but silently drops every byte, both
// ways, until Restore. New connections are accepted but nothing flows.
// Bytes still queued by SetLatency are dropped too.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	p.setModeLocked(modeBlackhole)
	p.mu.Unlock()
}

// Restore ends a Cut or Blackhole: new connections are forwarded again and
// surviving connections flow again. Bytes dropped while black-holed are not
// replayed. Latency set with SetLatency is kept.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.setModeLocked(modeNormal)
	p.mu.Unlock()
}

// SetLatency delays every chunk forwarded from now on, in both directions,
// by d (0 = none), preserving order. Chunks already in flight keep the delay
// they were given.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = max(d, 0)
	p.mu.Unlock()
}

// Mode describes the current fault: "normal", "cut" or "blackhole".
func (p *Proxy) Mode() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode.String()
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.links)
	p.mu.Unlock()
	return Stats{
		Accepted:        p.accepted.Load(),
		Refused:         p.refused.Load(),
		DialFailures:    p.dialFailures.Load(),
		Active:          active,
		BytesToTarget:   p.toTarget.Load(),
		BytesFromTarget: p.fromTarget.Load(),
		BytesDropped:    p.dropped.Load(),
	}
}

// Close stops listening, closes every connection and waits for all of the
// proxy's goroutines to end. It returns the listener's close error, if any;
// calling it again returns nil.
func (p *Proxy) Close() error {
	p.stopOnce.Do(func() {
		if !p.stop() {
			// ctx ended and its AfterFunc has started: let it finish.
			<-p.ctxShutdownDone
		}
	})
	err := p.shutdown()
	p.wg.Wait()
	return err
}

func (p *Proxy) shutdown() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	links := p.snapshotLocked()
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	for _, l := range links {
		l.close()
	}
	return err
}

func (p *Proxy) snapshotLocked() []*link {
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	return links
}

func (p *Proxy) setModeLocked(m mode) {
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
}

// waitNotBlackholed waits until the proxy is not black-holed, and reports
// false if done is closed first.
func (p *Proxy) waitNotBlackholed(done <-chan struct{}) bool {
	for {
		p.mu.Lock()
		m, changed := p.mode, p.changed
		p.mu.Unlock()
		if m != modeBlackhole {
			return true
		}
		select {
		case <-changed:
		case <-done:
			return false
		}
	}
}

func (p *Proxy) state() (mode, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.latency
}

func (p *Proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary accept failure (e.g. too many open files): back
			// off briefly rather than spin.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.accepted.Add(1)
		p.mu.Lock()
		m, target, closed := p.mode, p.target, p.closed
		p.mu.Unlock()
		if closed || m == modeCut || target == "" {
			p.refused.Add(1)
			_ = c.Close()
			continue
		}
		// Dial on a goroutine of its own so a slow target cannot stall
		// accepting (and refusing) other connections.
		p.wg.Go(func() { p.connect(c, target) })
	}
}

func (p *Proxy) connect(c net.Conn, target string) {
	d := net.Dialer{Timeout: dialTimeout}
	u, err := d.DialContext(p.ctx, "tcp", target)
	if err != nil {
		p.dialFailures.Add(1)
		_ = c.Close()
		return
	}
	l := &link{p: p, client: c, upstream: u, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed || p.mode == modeCut {
		// Cut (or closed) while dialling.
		p.mu.Unlock()
		p.refused.Add(1)
		_ = c.Close()
		_ = u.Close()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()

	l.halves.Store(2)
	p.wg.Add(2)
	go l.pipe(c, u, &p.toTarget)
	go l.pipe(u, c, &p.fromTarget)
}

// link is one proxied connection: client <-> proxy <-> upstream.
type link struct {
	p                *Proxy
	client, upstream net.Conn
	done             chan struct{} // closed when the link is torn down
	once             sync.Once
	halves           atomic.Int32 // directions still open
}

func (l *link) close() {
	l.once.Do(func() {
		l.p.mu.Lock()
		delete(l.p.links, l)
		l.p.mu.Unlock()
		close(l.done)
		_ = l.client.Close()
		_ = l.upstream.Close()
	})
}

// halfDone is called when one direction has delivered its EOF; the link is
// torn down once both have.
func (l *link) halfDone() {
	if l.halves.Add(-1) == 0 {
		l.close()
	}
}

type chunk struct {
	b   []byte
	due time.Time // zero: forward at once
}

// pipe copies src to dst through the proxy's faults. A reader goroutine
// (this one) reads chunks and hands them to a writer goroutine through a
// bounded queue, so latency delays chunks without throttling the stream.
func (l *link) pipe(src, dst net.Conn, counter *atomic.Int64) {
	defer l.p.wg.Done()
	q := make(chan chunk, queueLen)
	l.p.wg.Add(1)
	go l.writer(dst, q, counter)
	defer close(q)

	buf := make([]byte, chunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			m, lat := l.p.state()
			if m == modeBlackhole {
				l.p.dropped.Add(int64(n))
			} else {
				c := chunk{b: append([]byte(nil), buf[:n]...)}
				if lat > 0 {
					c.due = time.Now().Add(lat)
				}
				select {
				case q <- c:
				case <-l.done:
					return
				}
			}
		}
		if err != nil {
			// A close by src is news like any other byte: while the link
			// is black-holed it is held back (the other side keeps its
			// connection and hears nothing), and delivered on Restore.
			if !l.p.waitNotBlackholed(l.done) {
				return // link torn down meanwhile
			}
			// EOF: the writer forwards what is queued, then half-closes
			// dst. Any other error (reset, closed by Cut): tear down.
			if !errors.Is(err, io.EOF) {
				l.close()
			}
			return
		}
	}
}

func (l *link) writer(dst net.Conn, q <-chan chunk, counter *atomic.Int64) {
	defer l.p.wg.Done()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-q:
		case <-l.done:
			return
		}
		if !ok {
			// Reader saw EOF and everything queued has been written.
			if tc, isTCP := dst.(*net.TCPConn); isTCP {
				_ = tc.CloseWrite()
			}
			l.halfDone()
			return
		}
		if wait := time.Until(c.due); !c.due.IsZero() && wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-l.done:
				return
			}
		}
		if m, _ := l.p.state(); m == modeBlackhole {
			l.p.dropped.Add(int64(len(c.b)))
			continue
		}
		if _, err := dst.Write(c.b); err != nil {
			l.close()
			return
		}
		counter.Add(int64(len(c.b)))
	}
}
