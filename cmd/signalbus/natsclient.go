package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signalbus/signalbus/cluster"
)

// defaultNATSURL is where pub and sub connect unless told otherwise: a
// node started with its defaults.
const defaultNATSURL = "nats://127.0.0.1:4222"

// clientFlags are the flags pub and sub share: how to reach NATS and the
// subject prefix the cluster uses.
type clientFlags struct {
	url            string
	prefix         string
	connectTimeout positiveDuration
	log            logFlags
}

// flagSet returns the flag set of the client command cmd (newFlagSet)
// with these flags in it; the command adds its own.
func (c *clientFlags) flagSet(cmd string, stderr io.Writer, usage string) *flag.FlagSet {
	fs := newFlagSet(cmd, stderr, usage)
	c.connectTimeout = positiveDuration(5 * time.Second)
	fs.StringVar(&c.url, "nats", defaultNATSURL, "NATS server `URL`s, comma-separated (a node's --listen address)")
	fs.StringVar(&c.prefix, "prefix", "signals", "subject `prefix` of the cluster: signals travel on <prefix>.<type> (a node's --prefix)")
	fs.Var(&c.connectTimeout, "connect-timeout", "how long to try to reach NATS before giving up")
	c.log.register(fs)
	return fs
}

// dial connects the client command cmd to NATS as the flags say, as a
// client named signalbus-<cmd>, and returns the connection with the
// logger the flags describe, writing to stderr.
func (c *clientFlags) dial(ctx context.Context, cmd string, stderr io.Writer) (*nats.Conn, *slog.Logger, error) {
	logger := c.log.logger(stderr)
	nc, err := connect(ctx, c.url, "signalbus-"+cmd, time.Duration(c.connectTimeout), logger)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return nc, logger, nil
}

// validate checks the flags that need more than their type.
func (c *clientFlags) validate(cmd string) error {
	if strings.TrimSpace(c.url) == "" {
		return usageErrorf("%s: --nats is empty: give the NATS URL of a node", cmd)
	}
	if err := validatePrefix(c.prefix); err != nil {
		return usageErrorf("%s: %w", cmd, err)
	}
	return nil
}

// validatePrefix checks a subject prefix by the rule of a node's
// --prefix, cluster.Config.Validate's: a Config that differs from a valid
// one in its Prefix alone fails on the Prefix or not at all.
func validatePrefix(prefix string) error {
	err := cluster.Config{Name: "client", Prefix: prefix}.Validate()
	var cerr *cluster.ConfigError
	if errors.As(err, &cerr) && cerr.Field == "Prefix" {
		return fmt.Errorf("--prefix %q %w", prefix, cerr.Err)
	}
	return err
}

// connect dials NATS as a plain client named name: it neither heartbeats
// nor joins the cluster's membership. It gives up after timeout (or when
// ctx ends); once connected, the connection reconnects on its own.
func connect(ctx context.Context, url, name string, timeout time.Duration, logger *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("disconnected from NATS", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				logger.Warn("NATS subscription error", "subject", sub.Subject, "error", err)
				return
			}
			logger.Warn("NATS error", "error", err)
		}),
	}
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(url, opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to NATS at %s: %w", url, describeConnectError(r.err))
		}
		return r.nc, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, ctx.Err())
	}
}

// describeConnectError adds what nats.go's "no servers available" means.
func describeConnectError(err error) error {
	if errors.Is(err, nats.ErrNoServers) {
		return fmt.Errorf("%w (is a node listening there?)", err)
	}
	return err
}
