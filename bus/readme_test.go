package bus_test

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeExample keeps the README's embedding example identical to the
// body of Example, which compiles and runs with the tests.
func TestReadmeExample(t *testing.T) {
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	body := between(t, string(src), "func Example() {\n", "\t// Output:")
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		lines = append(lines, strings.TrimPrefix(l, "\t"))
	}
	want := strings.Join(lines, "\n") + "\n"
	got := between(t, string(readme), "<!-- begin: bus.Example -->\n```go\n", "```\n<!-- end: bus.Example -->")
	if got != want {
		t.Errorf("README example differs from bus.Example's body.\nREADME:\n%s\nExample:\n%s", got, want)
	}
}

func between(t *testing.T, s, start, end string) string {
	t.Helper()
	i := strings.Index(s, start)
	if i < 0 {
		t.Fatalf("marker %q not found", start)
	}
	s = s[i+len(start):]
	j := strings.Index(s, end)
	if j < 0 {
		t.Fatalf("marker %q not found", end)
	}
	return s[:j]
}
