package dispatch

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers a Webhook with WithSecret sets on every request.
const (
	// HeaderTimestamp holds the time of signing, in Unix seconds.
	HeaderTimestamp = "Signalbus-Timestamp"
	// HeaderSignature holds "v1=" and the hex HMAC-SHA256, keyed with the
	// secret, of the timestamp, a ".", and the request body.
	HeaderSignature = "Signalbus-Signature"
)

// DefaultSignatureTolerance is how far a timestamp may be from now when
// VerifySignature is given no tolerance.
const DefaultSignatureTolerance = 5 * time.Minute

// signatureScheme prefixes a signature made with the v1 scheme. The prefix
// leaves room for another algorithm later, sent alongside, without breaking
// receivers that only know v1.
const signatureScheme = "v1="

// Errors of VerifySignature. Every error it returns wraps
// ErrInvalidSignature; a mismatch or a stale timestamp also wraps the more
// specific sentinel.
var (
	// ErrInvalidSignature is wrapped by every VerifySignature error: the
	// request must be rejected (HTTP 401 is the usual answer).
	ErrInvalidSignature = errors.New("invalid webhook signature")
	// ErrSignatureMismatch: no signature in the header matches the body and
	// timestamp under the secret — a wrong secret or a tampered request.
	ErrSignatureMismatch = errors.New("webhook signature mismatch")
	// ErrStaleTimestamp: the signature is genuine but its timestamp is
	// further from now than the tolerance, as a replayed request would be.
	ErrStaleTimestamp = errors.New("webhook timestamp outside tolerance")
)

// sign returns the v1 signature header value for body signed at timestamp.
func sign(secret []byte, timestamp string, body []byte) string {
	return signatureScheme + hex.EncodeToString(mac(secret, timestamp, body))
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifySignature checks a signed webhook request on the receiving end:
// timestamp and signature are the values of its HeaderTimestamp and
// HeaderSignature headers, body the raw request body (read it in full
// before decoding: the signature covers the bytes, not their meaning).
//
// It returns nil when the signature header holds a v1 signature matching
// the secret, timestamp and body (compared in constant time), and the
// timestamp is within tolerance of now, before or after. Signed timestamps make
// a captured request useless once it is stale. A tolerance of zero or less
// means DefaultSignatureTolerance; a zero now means time.Now(). The header
// may list several comma-separated signatures (as while a secret rotates);
// one match suffices, and entries of other schemes are ignored.
//
// Errors wrap ErrInvalidSignature, and ErrSignatureMismatch or
// ErrStaleTimestamp where that is the reason.
func VerifySignature(secret []byte, timestamp, signature string, body []byte, tolerance time.Duration, now time.Time) error {
	if len(secret) == 0 {
		return fmt.Errorf("%w: empty secret", ErrInvalidSignature)
	}
	if timestamp == "" {
		return fmt.Errorf("%w: no %s header", ErrInvalidSignature, HeaderTimestamp)
	}
	if signature == "" {
		return fmt.Errorf("%w: no %s header", ErrInvalidSignature, HeaderSignature)
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not Unix seconds", ErrInvalidSignature, HeaderTimestamp, timestamp)
	}
	want := mac(secret, timestamp, body)
	matched, found := false, false
	for entry := range strings.SplitSeq(signature, ",") {
		entry = strings.TrimSpace(entry)
		hexSig, ok := strings.CutPrefix(entry, signatureScheme)
		if !ok {
			continue
		}
		found = true
		got, err := hex.DecodeString(hexSig)
		if err != nil {
			continue
		}
		// Compare every entry, without stopping at a match, so the time
		// taken does not tell which one matched.
		if hmac.Equal(got, want) {
			matched = true
		}
	}
	if !found {
		return fmt.Errorf("%w: %s has no %q signature", ErrInvalidSignature, HeaderSignature, strings.TrimSuffix(signatureScheme, "="))
	}
	if !matched {
		return fmt.Errorf("%w: %w", ErrInvalidSignature, ErrSignatureMismatch)
	}
	if tolerance <= 0 {
		tolerance = DefaultSignatureTolerance
	}
	if now.IsZero() {
		now = time.Now()
	}
	signed := time.Unix(ts, 0)
	if skew := now.Sub(signed); skew > tolerance || skew < -tolerance {
		return fmt.Errorf("%w: %w: signed at %s, %v from now (tolerance %v)",
			ErrInvalidSignature, ErrStaleTimestamp, signed.UTC().Format(time.RFC3339), skew.Round(time.Second), tolerance)
	}
	return nil
}
