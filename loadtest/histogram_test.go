package loadtest

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestBuckets checks the bucket layout: every value falls in the bucket
// whose bounds hold it, buckets are contiguous, and each is narrower than
// 1/128 of its values above 256 ns.
func TestBuckets(t *testing.T) {
	prevHi := uint64(0)
	for i := 0; ; i++ {
		lo, hi := bucketBounds(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, the previous one ended at %d", i, lo, prevHi)
		}
		if lo > hi {
			t.Fatalf("bucket %d: [%d, %d]", i, lo, hi)
		}
		for _, v := range []uint64{lo, hi, lo + (hi-lo)/2} {
			if got := bucketIndex(v); got != i {
				t.Fatalf("bucketIndex(%d) = %d, want %d (bounds [%d, %d])", v, got, i, lo, hi)
			}
		}
		if lo >= 2*subCount && float64(hi-lo+1)/float64(lo) > 1.0/subCount {
			t.Fatalf("bucket %d [%d, %d] is wider than 1/%d of its values", i, lo, hi, subCount)
		}
		if hi >= math.MaxInt64 {
			if want := bucketIndex(math.MaxInt64); i != want {
				t.Fatalf("the last bucket is %d, the largest Duration's %d", i, want)
			}
			break
		}
		prevHi = hi
	}
}

// exactQuantile is the oracle: the nearest-rank quantile of sorted.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := max(int(math.Ceil(q*float64(len(sorted)))), 1)
	return sorted[rank-1]
}

// checkQuantiles compares h with the exact quantiles of samples: each is
// at or above the exact one, within its bucket's width, and within Max.
func checkQuantiles(t *testing.T, h *Histogram, samples []time.Duration) {
	t.Helper()
	sorted := slices.Clone(samples)
	for i, d := range sorted {
		sorted[i] = max(d, 0)
	}
	slices.Sort(sorted)
	for _, q := range []float64{0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1} {
		want := exactQuantile(sorted, q)
		got := h.Quantile(q)
		if got < want || float64(got-want) > float64(want)/subCount+1 || got > h.Max() {
			t.Fatalf("Quantile(%v) = %d, exact %d (of %d samples, max %d)", q, got, want, len(sorted), h.Max())
		}
	}
	if h.Count() != uint64(len(samples)) || h.Min() != sorted[0] || h.Max() != sorted[len(sorted)-1] {
		t.Fatalf("count %d min %v max %v; want %d, %v, %v", h.Count(), h.Min(), h.Max(), len(samples), sorted[0], sorted[len(sorted)-1])
	}
}

func TestHistogramQuantiles(t *testing.T) {
	cases := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"one", []time.Duration{5 * time.Millisecond}, 0.99, 5 * time.Millisecond},
		{"exact below 256ns", []time.Duration{1, 2, 3, 4, 200}, 0.5, 3},
		{"p0 is the minimum", []time.Duration{7, 9, 100}, 0, 7},
		{"p100 is the maximum", []time.Duration{7, 9, 100}, 1, 100},
		{"negative counts as zero", []time.Duration{-5, 10}, 0.5, 0},
		{"nearest rank rounds up", []time.Duration{10, 20, 30, 40}, 0.51, 30},
		{"p99 of a hundred", append(slices.Repeat([]time.Duration{time.Millisecond}, 99), time.Second), 0.99, time.Millisecond + 0},
		{"p99 past the 99th", append(slices.Repeat([]time.Duration{time.Millisecond}, 98), time.Second, time.Second), 0.99, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			for _, d := range tc.samples {
				h.Record(d)
			}
			got := h.Quantile(tc.q)
			if got < tc.want || float64(got-tc.want) > float64(tc.want)/subCount+1 {
				t.Errorf("Quantile(%v) = %v, want %v (to 1/%d)", tc.q, got, tc.want, subCount)
			}
			checkQuantiles(t, &h, tc.samples)
		})
	}
}

func TestHistogramEmpty(t *testing.T) {
	var h Histogram
	if h.Count() != 0 || h.Quantile(0.99) != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Errorf("empty histogram: count %d p99 %v min %v max %v mean %v", h.Count(), h.Quantile(0.99), h.Min(), h.Max(), h.Mean())
	}
	for _, q := range []float64{-0.1, 1.5, math.NaN()} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Quantile(%v) did not panic", q)
				}
			}()
			h.Quantile(q)
		}()
	}
}

func TestHistogramRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 50 {
		n := 1 + rng.IntN(2000)
		samples := make([]time.Duration, n)
		for i := range samples {
			// Log-uniform from 1 ns to ~100 s: every bucket shape.
			samples[i] = time.Duration(math.Exp(rng.Float64() * math.Log(1e11)))
		}
		var h Histogram
		for _, d := range samples {
			h.Record(d)
		}
		checkQuantiles(t, &h, samples)
		var sum float64
		for _, d := range samples {
			sum += float64(d)
		}
		if mean := float64(h.Mean()); math.Abs(mean-sum/float64(n)) > 1 {
			t.Fatalf("run %d: mean %v, want %v", run, mean, sum/float64(n))
		}
	}
}

func TestHistogramMergeCloneSub(t *testing.T) {
	var a, b Histogram
	for _, d := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond} {
		a.Record(d)
	}
	before := a.Clone()
	for _, d := range []time.Duration{10 * time.Millisecond, time.Second} {
		a.Record(d)
		b.Record(d)
	}
	if before.Count() != 3 || before.Max() != 3*time.Millisecond {
		t.Fatalf("Clone shares state: count %d max %v", before.Count(), before.Max())
	}
	d := a.Sub(&before)
	if d.Count() != 2 || d.Quantile(0) < 10*time.Millisecond || d.Quantile(1) != time.Second {
		t.Errorf("Sub: count %d p0 %v p100 %v; want 2, 10ms, 1s", d.Count(), d.Quantile(0), d.Quantile(1))
	}
	if d.Min() > 10*time.Millisecond || d.Min() < 10*time.Millisecond-10*time.Millisecond/subCount || d.Max() != time.Second {
		t.Errorf("Sub: min %v max %v", d.Min(), d.Max())
	}
	if mean := d.Mean(); mean != 505*time.Millisecond {
		t.Errorf("Sub: mean %v, want 505ms", mean)
	}
	if empty := a.Sub(&a); empty.Count() != 0 || empty.Quantile(0.99) != 0 || empty.Max() != 0 {
		t.Errorf("a.Sub(a): count %d p99 %v max %v", empty.Count(), empty.Quantile(0.99), empty.Max())
	}
	var m Histogram
	m.Merge(&before)
	m.Merge(&b)
	m.Merge(&Histogram{})
	if m.Count() != a.Count() || m.Quantile(0.5) != a.Quantile(0.5) || m.Min() != a.Min() || m.Max() != a.Max() || m.Mean() != a.Mean() {
		t.Errorf("before+b = count %d p50 %v min %v max %v; a = %d %v %v %v", m.Count(), m.Quantile(0.5), m.Min(), m.Max(),
			a.Count(), a.Quantile(0.5), a.Min(), a.Max())
	}
	defer func() {
		if recover() == nil {
			t.Error("Sub of a later state did not panic")
		}
	}()
	before.Sub(&a)
}

// FuzzHistogram records the durations the input encodes and checks the
// quantiles against the sorted samples.
func FuzzHistogram(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Add(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 255), 1<<40))
	f.Add(binary.LittleEndian.AppendUint64(nil, math.MaxUint64))
	f.Fuzz(func(t *testing.T, in []byte) {
		var samples []time.Duration
		for len(in) >= 8 {
			samples = append(samples, time.Duration(binary.LittleEndian.Uint64(in)))
			in = in[8:]
		}
		if len(samples) == 0 {
			return
		}
		var h Histogram
		for _, d := range samples {
			h.Record(d)
		}
		checkQuantiles(t, &h, samples)
	})
}
