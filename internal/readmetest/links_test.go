package readmetest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	mdLink  = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading = regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
	// notInSlug is what GitHub drops from a heading to make its anchor.
	notInSlug = regexp.MustCompile(`[^\p{L}\p{N} _-]`)
)

// anchors returns the anchors GitHub gives the headings of md.
func anchors(md string) map[string]bool {
	out := map[string]bool{}
	for _, h := range heading.FindAllStringSubmatch(md, -1) {
		slug := strings.ToLower(notInSlug.ReplaceAllString(strings.TrimSpace(h[1]), ""))
		out[strings.ReplaceAll(slug, " ", "-")] = true
	}
	return out
}

// TestRelativeLinksResolve checks that every relative link of the README
// and docs/ names a file of the repository and, with a #fragment into a
// Markdown file, one of its headings: a user following the README should
// not land on nothing.
func TestRelativeLinksResolve(t *testing.T) {
	checked := 0
	for _, path := range documents(t) {
		md, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(md), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			checked++
			file, frag, _ := strings.Cut(link, "#")
			target := path
			if file != "" {
				target = filepath.Join(filepath.Dir(path), file)
			}
			body, err := os.ReadFile(target)
			if err != nil {
				if _, statErr := os.Stat(target); statErr == nil {
					continue // a directory
				}
				t.Errorf("%s: link %q: %v", path, link, err)
				continue
			}
			if frag != "" && strings.HasSuffix(target, ".md") && !anchors(string(body))[frag] {
				t.Errorf("%s: link %q: no heading %q in %s", path, link, frag, target)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative link found: the README should link to docs/")
	}
	t.Logf("%d relative links resolve", checked)
}
