package bus

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// idClock holds the high 60 bits of the last UUIDv7 handed out: 48 bits of
// Unix milliseconds followed by a 12-bit counter (RFC 9562 §6.2, method 1).
// Each new id takes max(now, last+1), so ids are strictly increasing within
// the process even when thousands are made in one millisecond: a counter that
// overflows carries into the timestamp, which then runs slightly ahead of the
// wall clock until the clock catches up, as the RFC allows.
var idClock atomic.Uint64

// NewID returns a new UUIDv7 in its canonical 36-character form. Ids are
// unique within the process and sort (as strings and as bytes) in the
// order they were taken from its clock: ids one goroutine makes one after
// another increase. Publish takes a batch's ids from the clock at once, so
// an id NewID makes on another goroutine meanwhile sorts after the whole
// batch.
func NewID() string { return formatUUIDv7(nextIDHigh(time.Now()), rand.Uint64()) }

// nextIDHigh takes one value of the id clock for the time now.
func nextIDHigh(now time.Time) uint64 { return reserveIDs(now, 1) }

// reserveIDs takes n (≥ 1) consecutive values of the id clock for the time
// now and returns the first: a batch pays for one compare-and-swap, not one
// per signal.
func reserveIDs(now time.Time, n int) uint64 {
	ms := uint64(now.UnixMilli()) << 12
	for {
		last := idClock.Load()
		first := last + 1
		if last < ms {
			// A new millisecond starts its counter at a random point in
			// the lower half, leaving 2048 increments before the carry.
			first = ms | rand.Uint64N(2048)
		}
		if idClock.CompareAndSwap(last, first+uint64(n-1)) {
			return first
		}
	}
}

// idRange hands out the ids of one batch from a range of the id clock
// reserved at once (see reserveIDs), and reserves one more at a time if
// the batch takes more than it counted.
type idRange struct {
	now  time.Time
	next uint64
	left int
}

// newIDRange reserves an id for each signal without one.
func newIDRange(now time.Time, signals []Signal) idRange {
	r := idRange{now: now}
	missing := 0
	for i := range signals {
		if signals[i].ID == "" {
			missing++
		}
	}
	if missing > 0 {
		r.next, r.left = reserveIDs(now, missing), missing
	}
	return r
}

func (r *idRange) id() string {
	if r.left == 0 {
		r.next, r.left = reserveIDs(r.now, 1), 1
	}
	hi := r.next
	r.next++
	r.left--
	return formatUUIDv7(hi, rand.Uint64())
}

const hexDigits = "0123456789abcdef"

// formatUUIDv7 lays out hi (48-bit ms + 12-bit counter) and 62 random bits
// with the version (7) and variant (10) bits in place.
func formatUUIDv7(hi, random uint64) string {
	var b [16]byte
	ms := hi >> 12
	counter := hi & 0xfff
	b[0] = byte(ms >> 40)
	b[1] = byte(ms >> 32)
	b[2] = byte(ms >> 24)
	b[3] = byte(ms >> 16)
	b[4] = byte(ms >> 8)
	b[5] = byte(ms)
	b[6] = 0x70 | byte(counter>>8)
	b[7] = byte(counter)
	b[8] = 0x80 | byte(random>>56)&0x3f
	b[9] = byte(random >> 48)
	b[10] = byte(random >> 40)
	b[11] = byte(random >> 32)
	b[12] = byte(random >> 24)
	b[13] = byte(random >> 16)
	b[14] = byte(random >> 8)
	b[15] = byte(random)

	var out [36]byte
	for i, v := range b {
		at := uuidTextOffsets[i]
		out[at] = hexDigits[v>>4]
		out[at+1] = hexDigits[v&0xf]
	}
	out[8], out[13], out[18], out[23] = '-', '-', '-', '-'
	return string(out[:])
}

// uuidTextOffsets is where each byte of a UUID starts in its 8-4-4-4-12
// text form.
var uuidTextOffsets = [16]uint8{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}
