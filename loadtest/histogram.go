package loadtest

import (
	"fmt"
	"math"
	"math/bits"
	"time"
)

// subBits is the number of bits of a value kept exactly, HdrHistogram's
// layout: below 2·2^subBits ns every nanosecond has a bucket of its own;
// above, each power of two is split into 2^subBits buckets, so a bucket is
// less than 1/2^subBits (0.8 %) of its values wide.
const (
	subBits  = 7
	subCount = 1 << subBits
)

// Histogram counts durations in buckets of at most 0.8 % of their value
// (exact below 256 ns), from 0 to the largest time.Duration, in memory
// that grows with the largest value recorded (at most 58 KiB). It is the
// latency histogram of a run: percentiles with a bounded relative error,
// however many samples, without keeping them.
//
// The zero value is an empty histogram ready for use. A Histogram is not
// safe for concurrent use; History guards its own.
type Histogram struct {
	counts   []uint64 // by bucketIndex
	n        uint64
	sum      float64 // nanoseconds
	min, max time.Duration
}

// bucketIndex is the bucket of v nanoseconds.
func bucketIndex(v uint64) int {
	if v < 2*subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1 // v>>shift is in [subCount, 2·subCount)
	return (shift+1)<<subBits + int(v>>shift) - subCount
}

// bucketBounds returns the lowest and highest value of bucket i.
func bucketBounds(i int) (lo, hi uint64) {
	if i < 2*subCount {
		return uint64(i), uint64(i)
	}
	shift := i>>subBits - 1
	m := uint64(i - (shift+1)<<subBits + subCount)
	return m << shift, (m+1)<<shift - 1
}

// Record counts one duration; a negative one counts as 0 (a clock step).
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	i := bucketIndex(uint64(d))
	if i >= len(h.counts) {
		h.counts = append(h.counts, make([]uint64, i+1-len(h.counts))...)
	}
	h.counts[i]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	h.max = max(h.max, d)
	h.n++
	h.sum += float64(d)
}

// Count is the number of durations recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Min is the smallest duration recorded (0 when empty).
func (h *Histogram) Min() time.Duration { return h.min }

// Max is the largest duration recorded (0 when empty).
func (h *Histogram) Max() time.Duration { return h.max }

// Mean is the average duration recorded (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(math.Round(h.sum / float64(h.n)))
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) by nearest rank: the
// smallest recorded value v such that at least q of the values are ≤ v,
// rounded up to the top of its bucket (at most 0.8 % above it) and never
// above Max. It returns 0 for an empty histogram, and panics for a q
// outside [0, 1].
func (h *Histogram) Quantile(q float64) time.Duration {
	if q < 0 || q > 1 || math.IsNaN(q) {
		panic(fmt.Sprintf("loadtest: Histogram.Quantile(%v): q outside [0, 1]", q))
	}
	if h.n == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(h.n))), 1)
	var below uint64
	for i, c := range h.counts {
		below += c
		if below >= rank {
			_, hi := bucketBounds(i)
			return min(time.Duration(hi), h.max)
		}
	}
	return h.max
}

// Merge adds every count of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	if len(o.counts) > len(h.counts) {
		h.counts = append(h.counts, make([]uint64, len(o.counts)-len(h.counts))...)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Clone returns a copy of h that shares nothing with it.
func (h *Histogram) Clone() Histogram {
	c := *h
	c.counts = append([]uint64(nil), h.counts...)
	return c
}

// Sub returns what was recorded in h since it was the earlier histogram
// prev (a Clone of h taken before): the counts of h minus those of prev.
// Min and Max of the difference are known only to their bucket: they are
// the bounds of its lowest and highest non-empty buckets, kept within h's.
// It panics if prev has counts h does not, i.e. prev is not an earlier
// state of h.
func (h *Histogram) Sub(prev *Histogram) Histogram {
	d := Histogram{counts: make([]uint64, len(h.counts)), n: h.n - prev.n, sum: h.sum - prev.sum}
	if prev.n > h.n || len(prev.counts) > len(h.counts) {
		panic("loadtest: Histogram.Sub: prev is not an earlier state of this histogram")
	}
	first, last := -1, -1
	for i, c := range h.counts {
		var p uint64
		if i < len(prev.counts) {
			p = prev.counts[i]
		}
		if p > c {
			panic("loadtest: Histogram.Sub: prev is not an earlier state of this histogram")
		}
		d.counts[i] = c - p
		if c > p {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first >= 0 {
		lo, _ := bucketBounds(first)
		_, hi := bucketBounds(last)
		d.min = max(time.Duration(lo), h.min)
		d.max = min(time.Duration(hi), h.max)
	} else {
		d.n, d.sum = 0, 0
	}
	return d
}
