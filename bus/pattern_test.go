package bus

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	cases := []struct {
		pattern string
		match   []string
		noMatch []string
	}{
		{"order.created", []string{"order.created"}, []string{"order", "order.paid", "order.created.v2", "x.order.created"}},
		{"order.*", []string{"order.created", "order.paid"}, []string{"order", "order.created.v2", "orders.created"}},
		{"order.**", []string{"order", "order.created", "order.line.added", "order.a.b.c.d"}, []string{"orders", "orderx.created", "x.order"}},
		{"**", []string{"a", "order.created", "a.b.c.d.e"}, nil},
		{"audit.**.failed", []string{"audit.failed", "audit.login.failed", "audit.a.b.failed"}, []string{"audit", "audit.failed.x", "audit.login", "x.audit.failed"}},
		{"**.failed", []string{"failed", "login.failed", "a.b.failed"}, []string{"failed.x", "a.failedx"}},
		{"*.failed", []string{"login.failed"}, []string{"failed", "a.b.failed"}},
		{"*", []string{"a", "order"}, []string{"a.b"}},
		{"*.*", []string{"a.b"}, []string{"a", "a.b.c"}},
		{"**.b.**", []string{"b", "a.b", "b.c", "a.b.c", "b.b.b"}, []string{"a", "a.c", "bb"}},
		{"a.*.**", []string{"a.x", "a.x.y", "a.x.y.z"}, []string{"a", "b.x"}},
		{"a.**.*", []string{"a.x", "a.x.y"}, []string{"a"}},
		{"Order_v2.created-now", []string{"Order_v2.created-now"}, []string{"order_v2.created-now"}},
	}
	for _, tc := range cases {
		t.Run(tc.pattern, func(t *testing.T) {
			pm, err := newPatternMatcher(tc.pattern)
			if err != nil {
				t.Fatalf("newPatternMatcher(%q): %v", tc.pattern, err)
			}
			for _, typ := range tc.match {
				if !pm.matches(typ) {
					t.Errorf("%q does not match %q, want match", tc.pattern, typ)
				}
			}
			for _, typ := range tc.noMatch {
				if pm.matches(typ) {
					t.Errorf("%q matches %q, want no match", tc.pattern, typ)
				}
			}
		})
	}
}

func TestParsePatternError(t *testing.T) {
	cases := []struct {
		pattern string
		want    string // in the error text
	}{
		{"", "pattern is empty"},
		{".", "at offset 0: segment 1 is empty"},
		{"a..b", "at offset 2: segment 2 is empty"},
		{"a.", "at offset 2: segment 2 is empty"},
		{".a", "at offset 0: segment 1 is empty"},
		{"a.**.**", `at offset 5: "**" directly after "**"`},
		{"**.**", `at offset 3: "**" directly after "**"`},
		{"a.b*", `at offset 3: "*" must stand alone`},
		{"a.*b", `at offset 2: "*" must stand alone`},
		{"***", `at offset 0: "*" must stand alone`},
		{"a.b c", `at offset 3: ' ' is not allowed`},
		{"a/b", `at offset 1: '/' is not allowed`},
		{"a.é", `at offset 2: 'é' is not allowed`},
		{"a.>", `at offset 2: '>' is not allowed`},
	}
	for _, tc := range cases {
		t.Run(tc.pattern, func(t *testing.T) {
			err := ValidatePattern(tc.pattern)
			if !errors.Is(err, ErrInvalidPattern) {
				t.Fatalf("ValidatePattern(%q) = %v, want ErrInvalidPattern", tc.pattern, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ValidatePattern(%q) = %q, want it to contain %q", tc.pattern, err, tc.want)
			}
		})
	}
}

// oracleMatch is an independent, plainly recursive matcher over segment
// lists: the specification the trie is checked against.
func oracleMatch(pattern, typ []string) bool {
	if len(pattern) == 0 {
		return len(typ) == 0
	}
	switch pattern[0] {
	case "**":
		for k := 0; k <= len(typ); k++ {
			if oracleMatch(pattern[1:], typ[k:]) {
				return true
			}
		}
		return false
	case "*":
		return len(typ) > 0 && oracleMatch(pattern[1:], typ[1:])
	default:
		return len(typ) > 0 && typ[0] == pattern[0] && oracleMatch(pattern[1:], typ[1:])
	}
}

// TestRouterAgainstOracle subscribes many random patterns at once and checks
// that the trie returns, for random types, exactly the subscriptions the
// oracle says match, each once — then removes half and checks again.
func TestRouterAgainstOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "c", "*", "**"}
	randomPattern := func() string {
		for {
			n := 1 + rng.IntN(4)
			segs := make([]string, n)
			for i := range segs {
				segs[i] = alphabet[rng.IntN(len(alphabet))]
			}
			p := strings.Join(segs, ".")
			if ValidatePattern(p) == nil {
				return p
			}
		}
	}
	randomType := func() string {
		n := 1 + rng.IntN(5)
		segs := make([]string, n)
		for i := range segs {
			segs[i] = alphabet[rng.IntN(3)]
		}
		return strings.Join(segs, ".")
	}
	var r router
	subs := make([]*Subscription, 300)
	for i := range subs {
		p := randomPattern()
		segs, _ := parsePattern(p)
		subs[i] = &Subscription{pattern: p, segments: segs, queue: newQueue(1)}
		r.add(segs, subs[i])
	}
	check := func(live []*Subscription) {
		t.Helper()
		for range 500 {
			typ := randomType()
			got := r.route(nil, typ).subs
			var want []*Subscription
			for _, s := range live {
				if oracleMatch(strings.Split(s.pattern, "."), strings.Split(typ, ".")) {
					want = append(want, s)
				}
			}
			if !sameSubs(got, want) {
				t.Fatalf("route(%q): got %d subscriptions %v, want %d %v", typ, len(got), patterns(got), len(want), patterns(want))
			}
		}
	}
	check(subs)
	for _, s := range subs[:150] {
		r.remove(s.segments, s)
	}
	check(subs[150:])
	for _, s := range subs[150:] {
		r.remove(s.segments, s)
	}
	if r.root.children != 0 || len(r.root.literal) != 0 || r.root.any != nil || r.root.anyMany != nil {
		t.Errorf("trie not empty after removing every subscription: %+v", r.root)
	}
}

func sameSubs(a, b []*Subscription) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[*Subscription]int)
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		if seen[s] != 1 {
			return false
		}
	}
	return true
}

func patterns(subs []*Subscription) []string {
	out := make([]string, len(subs))
	for i, s := range subs {
		out[i] = s.pattern
	}
	slices.Sort(out)
	return out
}

// FuzzPatternMatch checks the parser and the trie against the oracle: a
// pattern the parser accepts matches a type exactly when the oracle says so;
// one it rejects is rejected with ErrInvalidPattern, never a panic.
func FuzzPatternMatch(f *testing.F) {
	for _, seed := range [][2]string{
		{"order.*", "order.created"}, {"order.**", "order"}, {"audit.**.failed", "audit.x.y.failed"},
		{"**", "a.b"}, {"**.b.**", "b.b.b"}, {"a..b", "a.b"}, {"a.**.**", "a"}, {"a*", "a"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pattern, typ string) {
		pm, err := newPatternMatcher(pattern)
		if err != nil {
			if !errors.Is(err, ErrInvalidPattern) {
				t.Fatalf("parse %q: error %v does not wrap ErrInvalidPattern", pattern, err)
			}
			return
		}
		if checkType(typ) != nil {
			return
		}
		want := oracleMatch(strings.Split(pattern, "."), strings.Split(typ, "."))
		if got := pm.matches(typ); got != want {
			t.Fatalf("pattern %q type %q: trie says %v, oracle %v", pattern, typ, got, want)
		}
	})
}

// BenchmarkRouterMatch routes one type through tries of 10, 1 000 and
// 100 000 subscriptions, of which a fixed four match it. The cost stays flat
// as the non-matching subscriptions grow: the trie never visits them.
// "cache=off" walks the trie on every call; "cache=on" is the Publish path.
func BenchmarkRouterMatch(b *testing.B) {
	for _, n := range []int{10, 1_000, 100_000} {
		var r router
		matching := []string{"order.created", "order.*", "order.**", "**.created"}
		for _, p := range matching {
			segs, _ := parsePattern(p)
			r.add(segs, &Subscription{pattern: p, queue: newQueue(1)})
		}
		for i := range n - len(matching) {
			// Non-matching subscriptions of every shape: exact types in
			// other services, wildcards under other prefixes.
			var p string
			switch i % 4 {
			case 0:
				p = fmt.Sprintf("svc%d.event%d", i, i%97)
			case 1:
				p = fmt.Sprintf("svc%d.*", i)
			case 2:
				p = fmt.Sprintf("svc%d.**.failed", i)
			default:
				p = fmt.Sprintf("order.created.v%d", i)
			}
			segs, err := parsePattern(p)
			if err != nil {
				b.Fatal(err)
			}
			r.add(segs, &Subscription{pattern: p})
		}
		b.Run(fmt.Sprintf("subs=%d/cache=off", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r.mu.RLock()
				got := r.match("order.created")
				r.mu.RUnlock()
				if len(got) != len(matching) {
					b.Fatalf("matched %d, want %d", len(got), len(matching))
				}
			}
		})
		b.Run(fmt.Sprintf("subs=%d/cache=on", n), func(b *testing.B) {
			b.ReportAllocs()
			var slot atomic.Pointer[routeEntry]
			for b.Loop() {
				if got := r.route(&slot, "order.created").subs; len(got) != len(matching) {
					b.Fatalf("matched %d, want %d", len(got), len(matching))
				}
			}
		})
	}
}

func TestParsePatternMatchesAsRoutingDoes(t *testing.T) {
	for _, tc := range []struct {
		pattern, typ string
		want         bool
	}{
		{"order.**", "order", true},
		{"order.**", "order.line.added", true},
		{"audit.**.failed", "audit.failed", true},
		{"audit.**.failed", "audit.login.ok", false},
		{"order.*", "order", false},
		{"**", "a.b.c", true},
	} {
		p, err := ParsePattern(tc.pattern)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tc.pattern, err)
		}
		if got := p.Match(tc.typ); got != tc.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tc.pattern, tc.typ, got, tc.want)
		}
		if p.String() != tc.pattern {
			t.Errorf("String() = %q, want %q", p.String(), tc.pattern)
		}
	}
	if _, err := ParsePattern("a.**.**"); !errors.Is(err, ErrInvalidPattern) {
		t.Errorf("ParsePattern of an invalid pattern: %v, want ErrInvalidPattern", err)
	}
	if (Pattern{}).Match("a") {
		t.Error("the zero Pattern matched")
	}
}
