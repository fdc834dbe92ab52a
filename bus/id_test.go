package bus

// These tests are in package bus, not bus_test, because the monotonic carry
// can only be driven deterministically through nextIDHigh with a frozen
// clock, and the layout is checked through formatUUIDv7 with fixed bits.

import (
	"encoding/hex"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var idV7Re = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// idBytes decodes a canonical UUID into its 16 bytes.
func idBytes(t *testing.T, id string) [16]byte {
	t.Helper()
	var b [16]byte
	if len(id) != 36 {
		t.Fatalf("id %q has %d characters, want 36", id, len(id))
	}
	if _, err := hex.Decode(b[:], []byte(strings.ReplaceAll(id, "-", ""))); err != nil {
		t.Fatalf("id %q: %v", id, err)
	}
	return b
}

func TestFormatUUIDv7(t *testing.T) {
	cases := []struct {
		name   string
		hi     uint64
		random uint64
		want   string
	}{
		{
			// RFC 9562 Appendix A.6, with the 62 bits of rand_b.
			name:   "RFC 9562 example",
			hi:     0x017F22E279B0<<12 | 0xCC3,
			random: 0x18C4DC0C0C07398F,
			want:   "017f22e2-79b0-7cc3-98c4-dc0c0c07398f",
		},
		{
			name: "zero",
			want: "00000000-0000-7000-8000-000000000000",
		},
		{
			// The two random bits the variant takes are masked off.
			name:   "all ones",
			hi:     1<<60 - 1,
			random: ^uint64(0),
			want:   "ffffffff-ffff-7fff-bfff-ffffffffffff",
		},
		{
			name:   "counter at its last value",
			hi:     0x0123456789ab<<12 | 0xfff,
			random: 0x0123456789abcdef,
			want:   "01234567-89ab-7fff-8123-456789abcdef",
		},
		{
			name:   "counter carried into the millisecond",
			hi:     0x0123456789ab<<12 | 0xfff + 1,
			random: 0x0123456789abcdef,
			want:   "01234567-89ac-7000-8123-456789abcdef",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := formatUUIDv7(tc.hi, tc.random)
			if got != tc.want {
				t.Errorf("formatUUIDv7(%#x, %#x) = %s, want %s", tc.hi, tc.random, got, tc.want)
			}
		})
	}
}

// TestFormatUUIDv7MatchesTheByteLayout checks the word-at-a-time hex
// against the RFC's byte layout written out with encoding/hex, over random
// values and the edges of every nibble.
func TestFormatUUIDv7MatchesTheByteLayout(t *testing.T) {
	reference := func(hi, random uint64) string {
		var b [16]byte
		ms, counter := hi>>12, hi&0xfff
		for i := range 6 {
			b[i] = byte(ms >> (40 - 8*i))
		}
		b[6], b[7] = 0x70|byte(counter>>8), byte(counter)
		b[8] = 0x80 | byte(random>>56)&0x3f
		for i := 9; i < 16; i++ {
			b[i] = byte(random >> (120 - 8*i))
		}
		h := hex.EncodeToString(b[:])
		return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	}
	r := rand.New(rand.NewPCG(3, 4))
	values := []uint64{0, 1<<60 - 1, 0x0123456789abcdef, 0xfedcba9876543210, 0x9999999999999999, 0xaaaaaaaaaaaaaaaa}
	for range 100000 {
		values = append(values, r.Uint64())
	}
	for i, v := range values {
		hi, random := v&(1<<60-1), values[(i+1)%len(values)]
		if got, want := formatUUIDv7(hi, random), reference(hi, random); got != want {
			t.Fatalf("formatUUIDv7(%#x, %#x) = %s, want %s", hi, random, got, want)
		}
	}
}

func BenchmarkFormatUUIDv7(b *testing.B) {
	var sink string
	for i := uint64(0); b.Loop(); i++ {
		sink = formatUUIDv7(0x0123456789ab<<12|i&0xfff, i*0x9e3779b97f4a7c15)
	}
	_ = sink
}

func TestFormatUUIDv7OrderIgnoresRandom(t *testing.T) {
	// A larger hi sorts later whatever the random bits: the property the
	// monotonic ids rely on, across a counter carry too.
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		hi := r.Uint64N(1 << 60)
		if i%10 == 0 {
			hi |= 0xfff // next step carries
		}
		if hi == 1<<60-1 {
			continue
		}
		a := formatUUIDv7(hi, r.Uint64())
		b := formatUUIDv7(hi+1, r.Uint64())
		if a >= b {
			t.Fatalf("formatUUIDv7(%#x) = %s does not sort before formatUUIDv7(%#x) = %s", hi, a, hi+1, b)
		}
		if !idV7Re.MatchString(a) {
			t.Fatalf("formatUUIDv7(%#x) = %s is not a canonical UUIDv7", hi, a)
		}
	}
}

func TestNewIDFormat(t *testing.T) {
	before := time.Now().UnixMilli()
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = NewID()
	}
	after := time.Now().UnixMilli()
	for _, id := range ids {
		if !idV7Re.MatchString(id) {
			t.Fatalf("NewID() = %q, want canonical lower-case UUIDv7 (8-4-4-4-12 hex, version 7, variant 10)", id)
		}
		b := idBytes(t, id)
		if v := b[6] >> 4; v != 7 {
			t.Fatalf("id %s: version %d, want 7", id, v)
		}
		if v := b[8] >> 6; v != 0b10 {
			t.Fatalf("id %s: variant bits %02b, want 10", id, v)
		}
		var ms int64
		for _, c := range b[:6] {
			ms = ms<<8 | int64(c)
		}
		// The timestamp never runs behind the clock; it may run ahead
		// by a few milliseconds after a burst carried the counter (ours
		// or another test's), not by seconds.
		if ms < before || ms > after+1000 {
			t.Fatalf("id %s: timestamp %d ms, want within [%d, %d]", id, ms, before, after+1000)
		}
	}
}

// wantIncreasing fails t unless ids is strictly increasing (and so free of
// duplicates).
func wantIncreasing(t *testing.T, ids []string) {
	t.Helper()
	for i := 1; i < len(ids); i++ {
		if ids[i-1] >= ids[i] {
			t.Fatalf("id %d (%s) does not sort after id %d (%s)", i, ids[i], i-1, ids[i-1])
		}
	}
}

func TestNewIDMonotonic(t *testing.T) {
	const n = 100_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = NewID()
	}
	wantIncreasing(t, ids)
	// The bytes sort the same way as the strings.
	for i := 1; i < n; i += 997 {
		a, b := idBytes(t, ids[i-1]), idBytes(t, ids[i])
		if string(a[:]) >= string(b[:]) {
			t.Fatalf("bytes of %s do not sort before bytes of %s", ids[i-1], ids[i])
		}
	}
}

func TestNewIDConcurrent(t *testing.T) {
	const (
		goroutines = 4
		per        = 50_000
	)
	perG := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range perG {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]string, per)
			for i := range ids {
				ids[i] = NewID()
			}
			perG[g] = ids
		}()
	}
	wg.Wait()
	all := make([]string, 0, goroutines*per)
	for g, ids := range perG {
		t.Run("goroutine="+strconv.Itoa(g), func(t *testing.T) { wantIncreasing(t, ids) })
		all = append(all, ids...)
	}
	slices.Sort(all)
	if d := len(all) - len(slices.Compact(slices.Clone(all))); d != 0 {
		t.Fatalf("%d duplicate ids among %d made by %d goroutines", d, len(all), goroutines)
	}
}

func TestNextIDHighCarry(t *testing.T) {
	// With the clock frozen, every call after the first takes last+1: more
	// calls than the 12-bit counter holds must carry into the millisecond
	// and keep increasing. Other tests may take ids meanwhile; that only
	// makes the steps larger. The clock is frozen at now, not in the
	// future, so ids made later by other tests stay near the wall clock.
	const n = 3 * 4096
	frozen := time.Now()
	ms := uint64(frozen.UnixMilli())
	his := make([]uint64, n)
	for i := range his {
		his[i] = nextIDHigh(frozen)
	}
	ids := make([]string, n)
	carries := 0
	for i, hi := range his {
		ids[i] = formatUUIDv7(hi, rand.Uint64())
		if i > 0 {
			if hi <= his[i-1] {
				t.Fatalf("call %d: hi %#x, not above the previous %#x", i, hi, his[i-1])
			}
			if hi>>12 > his[i-1]>>12 {
				carries++
			}
		}
	}
	if his[0]>>12 < ms {
		t.Errorf("first id's millisecond %d is behind the clock %d", his[0]>>12, ms)
	}
	if last := his[n-1] >> 12; last < ms+2 {
		t.Errorf("after %d calls in one millisecond the timestamp is %d, want the counter carried at least twice past %d", n, last, ms)
	}
	if carries < 2 {
		t.Errorf("saw %d carries over %d calls, want at least 2", carries, n)
	}
	wantIncreasing(t, ids)
	for _, id := range ids {
		if !idV7Re.MatchString(id) {
			t.Fatalf("id %s lost its version or variant across the carry", id)
		}
	}
}

func TestNextIDHighClockBack(t *testing.T) {
	// A clock stepped back (NTP) does not make ids go back.
	a := nextIDHigh(time.Now())
	b := nextIDHigh(time.Now().Add(-time.Hour))
	c := nextIDHigh(time.Unix(0, 0))
	if !(a < b && b < c) {
		t.Fatalf("hi after a clock step back: %#x, %#x, %#x; want increasing", a, b, c)
	}
}

func TestReserveIDsTakesARange(t *testing.T) {
	// A batch reserves its ids at once: the next reservation starts after
	// the whole range, whatever the clock says.
	frozen := time.Now()
	first := reserveIDs(frozen, 64)
	next := reserveIDs(frozen, 1)
	if next < first+64 {
		t.Fatalf("reserveIDs(64) returned %#x and the next call %#x, inside the reserved range", first, next)
	}
	if first>>12 < uint64(frozen.UnixMilli()) {
		t.Errorf("first reserved millisecond %d is behind the clock %d", first>>12, frozen.UnixMilli())
	}
}

func TestIDRangeGivesIncreasingIDs(t *testing.T) {
	// Two of three signals lack an id; the range is asked for four (more
	// than it reserved): every id must still be a canonical UUIDv7 above
	// the one before, and above an id made before the range.
	before := NewID()
	signals := []Signal{{}, {ID: "given"}, {}}
	r := newIDRange(time.Now(), signals)
	if r.left != 2 {
		t.Fatalf("reserved %d ids for 2 signals without one", r.left)
	}
	ids := []string{before}
	for range 4 {
		ids = append(ids, r.id())
	}
	ids = append(ids, NewID())
	wantIncreasing(t, ids)
	for _, id := range ids {
		if !idV7Re.MatchString(id) {
			t.Fatalf("id %s is not a canonical UUIDv7", id)
		}
	}
}
