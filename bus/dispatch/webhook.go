package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/signalbus/signalbus/bus"
)

// ContentType is the Content-Type of a Webhook request: the CloudEvents
// HTTP binding's structured mode, the event as one JSON document.
const ContentType = "application/cloudevents+json; charset=utf-8"

// DefaultWebhookTimeout bounds each webhook request unless WithTimeout says
// otherwise.
const DefaultWebhookTimeout = 10 * time.Second

// maxDrain bounds how much of a response body Handle reads. Reading the
// body to its end lets the transport reuse the connection; a larger body is
// not worth reading and the connection is closed instead.
const maxDrain = 64 << 10

// ErrWebhookStatus is wrapped (through *StatusError) by the error
// Webhook.Handle returns when the endpoint answers with a status other
// than 2xx.
var ErrWebhookStatus = errors.New("webhook answered with an error status")

// StatusError is the error of a webhook request answered with a status
// other than 2xx. It wraps ErrWebhookStatus; get it with errors.As.
type StatusError struct {
	Code int // the HTTP status code
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%v: %d %s", ErrWebhookStatus, e.Code, http.StatusText(e.Code))
}

// Unwrap returns ErrWebhookStatus.
func (e *StatusError) Unwrap() error { return ErrWebhookStatus }

// Retryable reports whether a later attempt may succeed: true for 408
// Request Timeout, 429 Too Many Requests and 5xx, false for the other
// statuses (the other 4xx, and 3xx: Webhook does not follow redirects).
func (e *StatusError) Retryable() bool {
	return e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests ||
		e.Code >= 500 && e.Code <= 599
}

// Webhook is a Handler that POSTs each signal to an HTTP endpoint as a
// CloudEvents structured-mode JSON document. Make one with NewWebhook. It
// is safe for concurrent use, so one Webhook (and its circuit breaker) may
// serve several subscriptions that deliver to the same endpoint.
type Webhook struct {
	url string
	// endpoint is the URL's scheme and host, the only part of it errors
	// show: webhook URLs often carry a token in the path or the query
	// (Slack's, GitHub's), and errors end up in logs.
	endpoint string
	client   *http.Client
	timeout  time.Duration
	secret   []byte
	header   http.Header
	breaker  *breaker // nil without WithCircuitBreaker
}

var _ bus.Handler = (*Webhook)(nil)

// WebhookOption configures a Webhook in NewWebhook.
type WebhookOption func(*Webhook) error

// NewWebhook returns a Webhook posting to rawURL, which must be an absolute
// http or https URL. Options: WithSecret, WithTimeout, WithHTTPClient,
// WithHeader, WithCircuitBreaker. An invalid URL or option gives an error
// wrapping bus.ErrInvalidOption that names it.
func NewWebhook(rawURL string, opts ...WebhookOption) (*Webhook, error) {
	u, err := parseWebhookURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("dispatch: new webhook: %w", err)
	}
	w := &Webhook{
		url:      u.String(),
		endpoint: u.Scheme + "://" + u.Host,
		client:   &http.Client{},
		timeout:  DefaultWebhookTimeout,
		header:   http.Header{"User-Agent": {"signalbus"}},
	}
	for i, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("dispatch: new webhook: %w: option %d is nil", bus.ErrInvalidOption, i)
		}
		if err := opt(w); err != nil {
			return nil, fmt.Errorf("dispatch: new webhook: %w", err)
		}
	}
	if w.client.CheckRedirect == nil {
		// The default policy follows 301, 302 and 303 by turning the POST
		// into a bodiless GET, whose 200 would pass for a delivery. Take
		// the 3xx as the answer instead. A copy of the client, so a caller's
		// client is left as it was; its Transport is shared.
		c := *w.client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		w.client = &c
	}
	return w, nil
}

func parseWebhookURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// Leave the URL out of the message (a token may be in it), but keep
		// the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: url: %w", bus.ErrInvalidOption, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: url: scheme %q is not http or https", bus.ErrInvalidOption, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: url: no host", bus.ErrInvalidOption)
	}
	return u, nil
}

// WithSecret signs every request with secret: the HeaderTimestamp header
// carries the time of sending in Unix seconds and the HeaderSignature
// header "v1=" and the hex HMAC-SHA256 of timestamp + "." + body. The
// receiver checks both with VerifySignature. Every attempt is signed
// afresh, with its own timestamp. The secret must not be empty; it is
// copied. Use at least 32 random bytes.
func WithSecret(secret []byte) WebhookOption {
	return func(w *Webhook) error {
		if len(secret) == 0 {
			return fmt.Errorf("%w: WithSecret: empty secret", bus.ErrInvalidOption)
		}
		w.secret = bytes.Clone(secret)
		return nil
	}
}

// WithTimeout bounds each request (connecting, sending, and reading the
// response headers and a bounded part of its body) to d, through the
// request's ctx. Default DefaultWebhookTimeout. d must be positive.
func WithTimeout(d time.Duration) WebhookOption {
	return func(w *Webhook) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithTimeout: %v is not positive", bus.ErrInvalidOption, d)
		}
		w.timeout = d
		return nil
	}
}

// WithHTTPClient sends the requests with c (its Transport, TLS settings,
// proxy, Timeout and Jar). Default: a client on http.DefaultTransport. If
// c.CheckRedirect is nil, the Webhook uses a copy of c that does not follow
// redirects (see Handle); set CheckRedirect to choose otherwise.
func WithHTTPClient(c *http.Client) WebhookOption {
	return func(w *Webhook) error {
		if c == nil {
			return fmt.Errorf("%w: WithHTTPClient: nil client", bus.ErrInvalidOption)
		}
		w.client = c
		return nil
	}
}

// reservedHeaders are set by Handle on every request; WithHeader refuses
// them, as overriding them would break the CloudEvents binding or the
// signature.
var reservedHeaders = map[string]bool{
	"Content-Type":      true,
	"Content-Length":    true,
	"Host":              true,
	HeaderTimestamp:     true,
	HeaderSignature:     true,
	"Transfer-Encoding": true,
}

// WithHeader sets a header on every request (an Authorization, an API key).
// A later WithHeader for the same key replaces the value. The key must be a
// valid header name, and neither Content-Type, Content-Length, Host,
// Transfer-Encoding nor a signature header; the value must not contain
// control characters.
func WithHeader(key, value string) WebhookOption {
	return func(w *Webhook) error {
		if !validHeaderName(key) {
			return fmt.Errorf("%w: WithHeader: %q is not a valid header name", bus.ErrInvalidOption, key)
		}
		canon := http.CanonicalHeaderKey(key)
		if reservedHeaders[canon] {
			return fmt.Errorf("%w: WithHeader: %s is set by the webhook itself", bus.ErrInvalidOption, canon)
		}
		if strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			return fmt.Errorf("%w: WithHeader: the value of %s has a control character", bus.ErrInvalidOption, canon)
		}
		w.header.Set(canon, value)
		return nil
	}
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// WithCircuitBreaker guards the endpoint with a circuit breaker configured
// by cfg (see CircuitBreakerConfig): after cfg.FailureThreshold failures in
// a row, Handle fails with ErrCircuitOpen without sending, for cfg.OpenFor.
// The breaker belongs to the Webhook: every subscription using it shares
// it. Default: no breaker.
func WithCircuitBreaker(cfg CircuitBreakerConfig) WebhookOption {
	return func(w *Webhook) error {
		if err := cfg.validate(); err != nil {
			return fmt.Errorf("%w: WithCircuitBreaker: %w", bus.ErrInvalidOption, err)
		}
		w.breaker = newBreaker(cfg)
		return nil
	}
}

// Handle POSTs s, encoded with s.MarshalJSON, with Content-Type ContentType
// (and the signature headers under WithSecret), and waits for the answer.
// It makes one attempt: retries are the subscription's (bus.WithRetry).
//
// It returns nil for a 2xx status. Otherwise its error says what failed,
// names the endpoint by scheme and host only, and wraps:
//   - ErrCircuitOpen when the circuit breaker refused the request, which
//     was not sent;
//   - the transport's error for a network failure, and
//     context.DeadlineExceeded when the request took longer than the
//     timeout;
//   - a *StatusError (wrapping ErrWebhookStatus) for a 408, 429 or 5xx;
//   - bus.Permanent of a *StatusError for any other status: a 4xx, which no
//     retry of the same signal can fix, or a 3xx, as redirects are not
//     followed (the default policy would turn the POST into a GET).
//
// At most 64 KiB of the response body is read, and then discarded.
func (w *Webhook) Handle(ctx context.Context, s bus.Signal) error {
	body, err := s.MarshalJSON()
	if err != nil {
		return bus.Permanent(fmt.Errorf("dispatch: webhook %s: encode signal %s: %w", w.endpoint, s.ID, err))
	}
	var gen uint64
	if w.breaker != nil {
		if gen, err = w.breaker.allow(time.Now()); err != nil {
			return fmt.Errorf("dispatch: webhook %s: signal %s: %w", w.endpoint, s.ID, err)
		}
	}
	code, err := w.post(ctx, body)
	o := outcomeSuccess
	switch {
	case err != nil:
		o = outcomeFailure
		if ctx.Err() != nil {
			// The handler's ctx ended (the bus is closing): that says
			// nothing about the endpoint.
			o = outcomeNeutral
		} else if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %v: %w", w.timeout, err)
		}
		err = fmt.Errorf("dispatch: webhook %s: signal %s: %w", w.endpoint, s.ID, err)
	case code >= 200 && code <= 299:
	default:
		serr := &StatusError{Code: code}
		err = fmt.Errorf("dispatch: webhook %s: signal %s: %w", w.endpoint, s.ID, serr)
		if serr.Retryable() {
			o = outcomeFailure
		} else {
			err = bus.Permanent(err)
		}
	}
	if w.breaker != nil {
		w.breaker.done(gen, o, time.Now())
	}
	return err
}

// post sends one request and returns the response status.
func (w *Webhook) post(ctx context.Context, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header = w.header.Clone()
	req.Header.Set("Content-Type", ContentType)
	if w.secret != nil {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req.Header.Set(HeaderTimestamp, ts)
		req.Header.Set(HeaderSignature, sign(w.secret, ts, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// *url.Error repeats the full URL; keep only the cause (which still
		// wraps context.DeadlineExceeded, net.Error and the like).
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
