package dispatch_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signalbus/signalbus/bus"
	"github.com/signalbus/signalbus/bus/dispatch"
)

func TestWebhookDelivers(t *testing.T) {
	hs := newHookServer(t, nil)
	w := newWebhook(t, hs, dispatch.WithHeader("authorization", "Bearer t0ken"),
		dispatch.WithHeader("X-Tenant", "one"), dispatch.WithHeader("x-tenant", "acme"))
	cases := []struct {
		name string
		data any
		opts []bus.SignalOption
	}{
		{"JSON data", map[string]any{"order": 42}, []bus.SignalOption{bus.WithSubject("42"), bus.WithExtension("tenant", "acme")}},
		{"binary data", []byte{0xff, 0, 1}, []bus.SignalOption{bus.WithDataContentType("application/octet-stream")}},
		{"text data", []byte("héllo"), []bus.SignalOption{bus.WithDataContentType("text/plain; charset=utf-8"), bus.WithDataSchema("https://example.com/s")}},
		{"no data", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, err := bus.NewSignal("order.created", "/shop", tc.data, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Handle(context.Background(), want); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			req := recv(t, hs.got)
			if req.method != http.MethodPost || req.path != "/hook" {
				t.Errorf("request %s %s, want POST /hook", req.method, req.path)
			}
			if ct := req.header.Get("Content-Type"); ct != dispatch.ContentType {
				t.Errorf("Content-Type = %q, want %q", ct, dispatch.ContentType)
			}
			if got := req.header.Get("Authorization"); got != "Bearer t0ken" {
				t.Errorf("Authorization = %q", got)
			}
			if got := req.header.Values("X-Tenant"); len(got) != 1 || got[0] != "acme" {
				t.Errorf("X-Tenant = %q, want [acme] (the later WithHeader wins)", got)
			}
			if req.header.Get(dispatch.HeaderSignature) != "" || req.header.Get(dispatch.HeaderTimestamp) != "" {
				t.Errorf("signature headers without WithSecret: %v", req.header)
			}
			wantBody, _ := want.MarshalJSON()
			if string(req.body) != string(wantBody) {
				t.Errorf("body:\n got %s\nwant %s", req.body, wantBody)
			}
			sameSignal(t, decodeSignal(t, req.body), want)
		})
	}
}

// TestWebhookSignature signs with WithSecret and checks the request the
// server received with VerifySignature, as a receiver would, then spoils
// each part of it.
func TestWebhookSignature(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	hs := newHookServer(t, nil)
	w := newWebhook(t, hs, dispatch.WithSecret(secret))
	before := time.Now()
	if err := w.Handle(context.Background(), newSignal(t, "42")); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	req := recv(t, hs.got)
	ts, sig := req.header.Get(dispatch.HeaderTimestamp), req.header.Get(dispatch.HeaderSignature)
	if !strings.HasPrefix(sig, "v1=") || len(sig) != len("v1=")+64 {
		t.Fatalf("%s = %q, want v1= and 64 hex digits", dispatch.HeaderSignature, sig)
	}
	if signed, err := strconv.ParseInt(ts, 10, 64); err != nil || signed < before.Unix() || signed > time.Now().Unix() {
		t.Errorf("%s = %q, want the Unix seconds of sending", dispatch.HeaderTimestamp, ts)
	}
	now := time.Now()
	tampered := append([]byte(nil), req.body...)
	tampered[len(tampered)-2] ^= 1

	cases := []struct {
		name      string
		secret    []byte
		timestamp string
		signature string
		body      []byte
		tolerance time.Duration
		now       time.Time
		want      error // nil, or the sentinel besides ErrInvalidSignature
	}{
		{"genuine", secret, ts, sig, req.body, time.Minute, now, nil},
		{"genuine, default tolerance and now", secret, ts, sig, req.body, 0, time.Time{}, nil},
		{"genuine among other signatures", secret, ts, "v0=abc, v1=" + strings.Repeat("00", 32) + "," + sig, req.body, time.Minute, now, nil},
		{"wrong secret", []byte("another secret"), ts, sig, req.body, time.Minute, now, dispatch.ErrSignatureMismatch},
		{"tampered body", secret, ts, sig, tampered, time.Minute, now, dispatch.ErrSignatureMismatch},
		{"tampered timestamp", secret, "1" + ts, sig, req.body, time.Minute, now, dispatch.ErrSignatureMismatch},
		{"stale", secret, ts, sig, req.body, time.Minute, now.Add(2 * time.Minute), dispatch.ErrStaleTimestamp},
		{"from the future", secret, ts, sig, req.body, time.Minute, now.Add(-2 * time.Minute), dispatch.ErrStaleTimestamp},
		{"stale under the default tolerance", secret, ts, sig, req.body, 0, now.Add(dispatch.DefaultSignatureTolerance + time.Minute), dispatch.ErrStaleTimestamp},
		{"no timestamp", secret, "", sig, req.body, time.Minute, now, dispatch.ErrInvalidSignature},
		{"timestamp not a number", secret, "yesterday", sig, req.body, time.Minute, now, dispatch.ErrInvalidSignature},
		{"no signature", secret, ts, "", req.body, time.Minute, now, dispatch.ErrInvalidSignature},
		{"unknown scheme only", secret, ts, "v2=" + sig[3:], req.body, time.Minute, now, dispatch.ErrInvalidSignature},
		{"signature not hex", secret, ts, "v1=zz", req.body, time.Minute, now, dispatch.ErrSignatureMismatch},
		{"empty secret", nil, ts, sig, req.body, time.Minute, now, dispatch.ErrInvalidSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := dispatch.VerifySignature(tc.secret, tc.timestamp, tc.signature, tc.body, tc.tolerance, tc.now)
			if tc.want == nil {
				if err != nil {
					t.Errorf("VerifySignature: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, dispatch.ErrInvalidSignature) || !errors.Is(err, tc.want) {
				t.Errorf("VerifySignature: %v, want an error wrapping ErrInvalidSignature and %v", err, tc.want)
			}
		})
	}
}

// TestWebhookFreshSignaturePerAttempt: every attempt is signed anew, so a
// retry long after the first attempt is not rejected as stale.
func TestWebhookFreshSignaturePerAttempt(t *testing.T) {
	secret := []byte("s")
	hs := newHookServer(t, status(http.StatusServiceUnavailable))
	w := newWebhook(t, hs, dispatch.WithSecret(secret))
	s := newSignal(t, "1")
	for range 2 {
		if err := w.Handle(context.Background(), s); err == nil {
			t.Fatal("Handle: nil error for a 503")
		}
		req := recv(t, hs.got)
		if err := dispatch.VerifySignature(secret, req.header.Get(dispatch.HeaderTimestamp),
			req.header.Get(dispatch.HeaderSignature), req.body, 0, time.Time{}); err != nil {
			t.Errorf("VerifySignature: %v", err)
		}
	}
}

func TestWebhookTimeout(t *testing.T) {
	released := make(chan struct{})
	hs := newHookServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		// Wait longer than the webhook does; return as soon as the client
		// gives up, so the server can close.
		select {
		case <-r.Context().Done():
		case <-released:
		}
	})
	defer close(released) // runs before the server's cleanup
	w := newWebhook(t, hs, dispatch.WithTimeout(50*time.Millisecond))
	start := time.Now()
	err := w.Handle(context.Background(), newSignal(t, "1"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Handle: %v, want DeadlineExceeded", err)
	}
	if bus.IsPermanent(err) {
		t.Errorf("timeout marked permanent: %v", err)
	}
	if !strings.Contains(err.Error(), "timed out after 50ms") {
		t.Errorf("error %q does not give the timeout", err)
	}
	if elapsed := time.Since(start); elapsed > waitTimeout/2 {
		t.Errorf("Handle took %v with a 50ms timeout", elapsed)
	}
}

// TestWebhookCallerCtx: the handler's ctx bounds the request too.
func TestWebhookCallerCtx(t *testing.T) {
	hs := newHookServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	w := newWebhook(t, hs)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		recv(t, hs.got) // the request arrived
		cancel()
	}()
	if err := w.Handle(ctx, newSignal(t, "1")); !errors.Is(err, context.Canceled) {
		t.Errorf("Handle: %v, want Canceled", err)
	}
}

func TestWebhookStatus(t *testing.T) {
	cases := []struct {
		code      int
		wantErr   bool
		permanent bool
	}{
		{http.StatusOK, false, false},
		{http.StatusCreated, false, false},
		{http.StatusAccepted, false, false},
		{http.StatusNoContent, false, false},
		{http.StatusMovedPermanently, true, true},
		{http.StatusFound, true, true},
		{http.StatusTemporaryRedirect, true, true},
		{http.StatusBadRequest, true, true},
		{http.StatusUnauthorized, true, true},
		{http.StatusNotFound, true, true},
		{http.StatusRequestTimeout, true, false},
		{http.StatusGone, true, true},
		{http.StatusRequestEntityTooLarge, true, true},
		{http.StatusUnprocessableEntity, true, true},
		{http.StatusTooManyRequests, true, false},
		{http.StatusInternalServerError, true, false},
		{http.StatusBadGateway, true, false},
		{http.StatusServiceUnavailable, true, false},
		{http.StatusGatewayTimeout, true, false},
	}
	for _, tc := range cases {
		t.Run(http.StatusText(tc.code), func(t *testing.T) {
			hs := newHookServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
				if tc.code >= 300 && tc.code < 400 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.code)
				_, _ = w.Write([]byte(strings.Repeat("x", 100<<10))) // more than Handle reads
			})
			w := newWebhook(t, hs)
			err := w.Handle(context.Background(), newSignal(t, "1"))
			if !tc.wantErr {
				if err != nil {
					t.Errorf("Handle: %v, want nil", err)
				}
				return
			}
			var serr *dispatch.StatusError
			if !errors.As(err, &serr) || serr.Code != tc.code {
				t.Fatalf("Handle: %v, want a *StatusError with code %d", err, tc.code)
			}
			if !errors.Is(err, dispatch.ErrWebhookStatus) {
				t.Errorf("Handle: %v does not wrap ErrWebhookStatus", err)
			}
			if got := bus.IsPermanent(err); got != tc.permanent {
				t.Errorf("IsPermanent = %v, want %v (err %v)", got, tc.permanent, err)
			}
			if serr.Retryable() == tc.permanent {
				t.Errorf("Retryable() = %v, want %v", serr.Retryable(), !tc.permanent)
			}
			if n := hs.requests.Load(); n != 1 {
				t.Errorf("server saw %d requests, want 1 (redirects are not followed)", n)
			}
		})
	}
}

// TestWebhookErrorHidesURL: errors name the endpoint by scheme and host
// only; the path and query, where webhook tokens live, stay out of logs.
func TestWebhookErrorHidesURL(t *testing.T) {
	hs := newHookServer(t, status(http.StatusBadRequest))
	w, err := dispatch.NewWebhook(hs.URL+"/services/SECRET-PATH?token=SECRET-QUERY", dispatch.WithHTTPClient(hs.Client()))
	if err != nil {
		t.Fatal(err)
	}
	err = w.Handle(context.Background(), newSignal(t, "1"))
	if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), hs.URL) {
		t.Errorf("Handle: %v; want an error naming %s and no more of the URL", err, hs.URL)
	}
	if _, err := dispatch.NewWebhook("http://host/%zz?token=SECRET"); err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("NewWebhook: %v; want an error without the URL", err)
	}
}

func TestWebhookNetworkError(t *testing.T) {
	hs := newHookServer(t, nil)
	w := newWebhook(t, hs)
	hs.Close() // nothing listens any more
	err := w.Handle(context.Background(), newSignal(t, "1"))
	if err == nil {
		t.Fatal("Handle: nil error with the server down")
	}
	if bus.IsPermanent(err) || errors.Is(err, dispatch.ErrWebhookStatus) {
		t.Errorf("Handle: %v; want a retryable transport error", err)
	}
}

func TestNewWebhookErrors(t *testing.T) {
	valid := "https://example.com/hook"
	cases := []struct {
		name string
		url  string
		opts []dispatch.WebhookOption
		want string // in the message
	}{
		{"URL does not parse", "http://exa mple.com/", nil, "url"},
		{"URL relative", "/hook", nil, "url: scheme"},
		{"URL scheme ftp", "ftp://example.com/", nil, `url: scheme "ftp"`},
		{"URL no host", "http:///hook", nil, "url: no host"},
		{"URL empty", "", nil, "url"},
		{"nil option", valid, []dispatch.WebhookOption{nil}, "option 0 is nil"},
		{"WithSecret empty", valid, []dispatch.WebhookOption{dispatch.WithSecret(nil)}, "WithSecret"},
		{"WithTimeout zero", valid, []dispatch.WebhookOption{dispatch.WithTimeout(0)}, "WithTimeout"},
		{"WithTimeout negative", valid, []dispatch.WebhookOption{dispatch.WithTimeout(-time.Second)}, "WithTimeout"},
		{"WithHTTPClient nil", valid, []dispatch.WebhookOption{dispatch.WithHTTPClient(nil)}, "WithHTTPClient"},
		{"WithHeader empty name", valid, []dispatch.WebhookOption{dispatch.WithHeader("", "v")}, "WithHeader"},
		{"WithHeader bad name", valid, []dispatch.WebhookOption{dispatch.WithHeader("X Tenant", "v")}, "WithHeader"},
		{"WithHeader CRLF value", valid, []dispatch.WebhookOption{dispatch.WithHeader("X-Tenant", "a\r\nX-Evil: 1")}, "WithHeader"},
		{"WithHeader Content-Type", valid, []dispatch.WebhookOption{dispatch.WithHeader("content-type", "text/plain")}, "WithHeader: Content-Type"},
		{"WithHeader signature", valid, []dispatch.WebhookOption{dispatch.WithHeader(dispatch.HeaderSignature, "v1=00")}, "WithHeader"},
		{"WithCircuitBreaker no threshold", valid, []dispatch.WebhookOption{dispatch.WithCircuitBreaker(dispatch.CircuitBreakerConfig{OpenFor: time.Second})}, "WithCircuitBreaker: FailureThreshold"},
		{"WithCircuitBreaker no OpenFor", valid, []dispatch.WebhookOption{dispatch.WithCircuitBreaker(dispatch.CircuitBreakerConfig{FailureThreshold: 1})}, "WithCircuitBreaker: OpenFor"},
		{"WithCircuitBreaker negative HalfOpenMax", valid, []dispatch.WebhookOption{dispatch.WithCircuitBreaker(dispatch.CircuitBreakerConfig{FailureThreshold: 1, OpenFor: time.Second, HalfOpenMax: -1})}, "WithCircuitBreaker: HalfOpenMax"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, err := dispatch.NewWebhook(tc.url, tc.opts...)
			if !errors.Is(err, bus.ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewWebhook: %v, want an error wrapping ErrInvalidOption that contains %q", err, tc.want)
			}
			if w != nil {
				t.Errorf("NewWebhook returned a Webhook with an error")
			}
		})
	}
	// And the valid forms.
	for _, u := range []string{"http://localhost:8080/hook", "HTTPS://Example.com", "https://user:pw@example.com/h?x=1"} {
		if _, err := dispatch.NewWebhook(u, dispatch.WithTimeout(time.Second), dispatch.WithSecret([]byte("s")),
			dispatch.WithHeader("X-Api-Key", "k\tv"), dispatch.WithHTTPClient(&http.Client{}),
			dispatch.WithCircuitBreaker(dispatch.CircuitBreakerConfig{FailureThreshold: 1, OpenFor: time.Second})); err != nil {
			t.Errorf("NewWebhook(%q): %v", u, err)
		}
	}
}

// TestWebhookLeavesClientAlone: NewWebhook does not modify the caller's
// client when it stops redirects.
func TestWebhookLeavesClientAlone(t *testing.T) {
	c := &http.Client{}
	if _, err := dispatch.NewWebhook("https://example.com", dispatch.WithHTTPClient(c)); err != nil {
		t.Fatal(err)
	}
	if c.CheckRedirect != nil {
		t.Error("NewWebhook set CheckRedirect on the caller's client")
	}
}

// TestWebhookRetriedBySubscription: the subscription's retry policy, not
// the webhook, retries a 500; the third attempt succeeds.
func TestWebhookRetriedBySubscription(t *testing.T) {
	delivered := make(chan int64, 1)
	hs := newHookServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
		delivered <- n
	})
	b := newBus(t)
	dead := make(chan bus.DeadLetter, 1)
	_, err := b.Subscribe("order.*", newWebhook(t, hs),
		bus.WithRetry(bus.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Multiplier: 2}),
		bus.WithDeadLetter(bus.HandlerFunc(func(ctx context.Context, _ bus.Signal) error {
			dl, _ := bus.DeadLetterFromContext(ctx)
			dead <- dl
			return nil
		})))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), newSignal(t, "1")); err != nil {
		t.Fatal(err)
	}
	if n := recv(t, delivered); n != 3 {
		t.Errorf("delivered on request %d, want 3", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := hs.requests.Load(); n != 3 {
		t.Errorf("server saw %d requests, want 3", n)
	}
	select {
	case dl := <-dead:
		t.Errorf("dead-lettered: %+v", dl)
	default:
	}
}

// TestWebhookPermanentToDeadLetter: a 400 skips the retries and goes
// straight to the dead-letter handler.
func TestWebhookPermanentToDeadLetter(t *testing.T) {
	hs := newHookServer(t, status(http.StatusBadRequest))
	b := newBus(t)
	type letter struct {
		dl  bus.DeadLetter
		sig bus.Signal
	}
	dead := make(chan letter, 1)
	_, err := b.Subscribe("order.*", newWebhook(t, hs),
		bus.WithSubscriptionName("hook"),
		bus.WithRetry(bus.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Multiplier: 2}),
		bus.WithDeadLetter(bus.HandlerFunc(func(ctx context.Context, s bus.Signal) error {
			dl, ok := bus.DeadLetterFromContext(ctx)
			if !ok {
				t.Error("DeadLetterFromContext: no details")
			}
			dead <- letter{dl, s}
			return nil
		})))
	if err != nil {
		t.Fatal(err)
	}
	want := newSignal(t, "1")
	if err := b.Publish(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	got := recv(t, dead)
	if got.dl.Attempts != 1 || got.dl.Subscription != "hook" {
		t.Errorf("dead letter %+v, want 1 attempt by subscription hook", got.dl)
	}
	var serr *dispatch.StatusError
	if !bus.IsPermanent(got.dl.Err) || !errors.As(got.dl.Err, &serr) || serr.Code != http.StatusBadRequest {
		t.Errorf("dead letter error %v, want a permanent *StatusError 400", got.dl.Err)
	}
	if got.sig.ID != want.ID {
		t.Errorf("dead letter signal %s, want %s", got.sig.ID, want.ID)
	}
	if n := hs.requests.Load(); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
}

// TestWebhookUnencodable: a signal that cannot be encoded (a hand-built
// one the bus never validated) fails for good, and nothing is sent.
func TestWebhookUnencodable(t *testing.T) {
	hs := newHookServer(t, nil)
	w := newWebhook(t, hs)
	s := newSignal(t, "1")
	s.Extensions = map[string]any{"ratio": 0.5} // CloudEvents has no floats
	err := w.Handle(context.Background(), s)
	if !errors.Is(err, bus.ErrInvalidSignal) || !bus.IsPermanent(err) {
		t.Errorf("Handle: %v, want a permanent error wrapping ErrInvalidSignal", err)
	}
	if n := hs.requests.Load(); n != 0 {
		t.Errorf("server saw %d requests, want 0", n)
	}
}
