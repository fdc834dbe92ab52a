package readmetest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// skipMarker, alone on the line before a ```go fence, leaves that block out.
const skipMarker = "<!-- not compiled -->"

// imports maps the package names a fragment may use to their import paths.
// A fragment naming a package outside this table fails to compile, which is
// the point: a reader copying it would not know the import either.
var imports = map[string]string{
	"context":   "context",
	"errors":    "errors",
	"fmt":       "fmt",
	"http":      "net/http",
	"log":       "log",
	"os":        "os",
	"signal":    "os/signal",
	"slog":      "log/slog",
	"syscall":   "syscall",
	"time":      "time",
	"bus":       "github.com/signalbus/signalbus/bus",
	"dispatch":  "github.com/signalbus/signalbus/bus/dispatch",
	"cluster":   "github.com/signalbus/signalbus/cluster",
	"telemetry": "github.com/signalbus/signalbus/telemetry",
}

// block is one ```go fence of a Markdown file.
type block struct {
	file string // the document's name, for messages
	line int    // 1-based line of the opening fence
	code string
	skip bool // preceded by skipMarker
}

func (b block) String() string { return fmt.Sprintf("%s line %d", b.file, b.line) }

// extractBlocks returns the ```go blocks of md in order. An unterminated
// fence is an error, since everything after it would silently be code.
func extractBlocks(name, md string) ([]block, error) {
	var (
		out     []block
		cur     *block
		prev    string
		lines   = strings.Split(md, "\n")
		buf     strings.Builder
		inOther bool
	)
	for i, l := range lines {
		trimmed := strings.TrimSpace(l)
		switch {
		case cur != nil:
			if trimmed == "```" {
				cur.code = buf.String()
				out = append(out, *cur)
				cur = nil
				buf.Reset()
			} else {
				buf.WriteString(l)
				buf.WriteByte('\n')
			}
		case inOther:
			if trimmed == "```" {
				inOther = false
			}
		case trimmed == "```go":
			cur = &block{file: name, line: i + 1, skip: strings.TrimSpace(prev) == skipMarker}
		case strings.HasPrefix(trimmed, "```"):
			inOther = true
		}
		prev = l
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: unterminated ```go fence", cur)
	}
	return out, nil
}

// program turns a block into the text of a main package: a whole file stays
// as it is; a block of declarations (its first line of code starts with
// func or type) gets a package clause, the imports it uses and an empty
// main; any other fragment becomes the body of main, with its imports.
func program(b block) (string, error) {
	code := strings.TrimSpace(b.code)
	if strings.HasPrefix(code, "package ") {
		return b.code, nil
	}
	open, closing := "func main() {\n", "}\n"
	if first := firstCodeLine(code); strings.HasPrefix(first, "func ") || strings.HasPrefix(first, "type ") {
		open, closing = "", "\nfunc main() {}\n"
	}
	src := "package main\n\n" + open + b.code + closing
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", src, 0)
	if err != nil {
		return "", fmt.Errorf("%s: %w", b, err)
	}
	used := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && id.Obj == nil {
				if path, ok := imports[id.Name]; ok {
					used[path] = true
				}
			}
		}
		return true
	})
	paths := make([]string, 0, len(used))
	for p := range used {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var head strings.Builder
	head.WriteString("package main\n\nimport (\n")
	for _, p := range paths {
		fmt.Fprintf(&head, "\t%q\n", p)
	}
	head.WriteString(")\n\n")
	return head.String() + open + b.code + closing, nil
}

// firstCodeLine is the first line of code that is not a // comment.
func firstCodeLine(code string) string {
	for _, l := range strings.Split(code, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "//") {
			return l
		}
	}
	return ""
}

// compile writes each block that is not skipped as a package of its own in
// a directory under dir (which must be inside the module) and runs go build
// and go vet on them all. The error names the document and line of each
// block the go tool complains about.
func compile(t *testing.T, dir string, blocks []block) error {
	t.Helper()
	tmp, err := os.MkdirTemp(dir, "_blocks-") // "_": ./... patterns ignore it
	if err != nil {
		return err
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	var pkgs []string
	where := map[string]block{}
	for i, b := range blocks {
		if b.skip {
			continue
		}
		src, err := program(b)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("b%02d", i)
		if err := os.Mkdir(filepath.Join(tmp, name), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, name, "main.go"), []byte(src), 0o644); err != nil {
			return err
		}
		pkgs = append(pkgs, "./"+filepath.Join(filepath.Base(tmp), name))
		where[name] = b
	}
	if len(pkgs) == 0 {
		return nil
	}
	for _, args := range [][]string{{"build", "-o", os.DevNull}, {"vet"}} {
		if args[0] == "build" && len(pkgs) > 1 {
			args = []string{"build"} // several packages: results are discarded
		}
		cmd := exec.Command(goTool(), append(args, pkgs...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			msg := string(out)
			for name, b := range where {
				msg = strings.ReplaceAll(msg, filepath.Join(filepath.Base(tmp), name)+string(filepath.Separator)+"main.go", "["+b.String()+"] main.go")
			}
			return fmt.Errorf("go %s: %w\n%s", args[0], err, msg)
		}
	}
	return nil
}

func goTool() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		return p
	}
	return "go"
}

// documents are the files whose Go blocks must compile, relative to this
// directory.
func documents(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"../../README.md"}, docs...)
}

func TestDocumentGoBlocksCompile(t *testing.T) {
	var all []block
	for _, path := range documents(t) {
		md, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(path, "../../")
		blocks, err := extractBlocks(name, string(md))
		if err != nil {
			t.Fatal(err)
		}
		if name == "README.md" && len(blocks) == 0 {
			t.Fatal("README.md has no ```go block: the embedding example is missing")
		}
		all = append(all, blocks...)
	}
	skipped := 0
	for _, b := range all {
		if b.skip {
			skipped++
			t.Logf("%s: marked %s", b, skipMarker)
		}
	}
	if err := compile(t, ".", all); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d Go blocks compile (%d marked not compiled)", len(all)-skipped, skipped)
}

// TestBrokenBlockFails shows the check can fail: a fragment with a type
// error and one using an undeclared name are both reported, by line.
func TestBrokenBlockFails(t *testing.T) {
	md := "# doc\n\n```go\nvar n int = \"one\"\n_ = n\n```\n\ntext\n\n```go\nnode.Bus()\n```\n"
	blocks, err := extractBlocks("doc.md", md)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		err := compile(t, ".", []block{b})
		if err == nil {
			t.Fatalf("%s compiled, want an error:\n%s", b, b.code)
		}
		if !strings.Contains(err.Error(), b.String()) {
			t.Errorf("error does not name %s:\n%v", b, err)
		}
	}
}

func TestExtractBlocks(t *testing.T) {
	md := strings.Join([]string{
		"```sh",          // 1: not Go
		"make demo",      // 2
		"```",            // 3
		"```go",          // 4
		"fmt.Println(1)", // 5
		"```",            // 6
		skipMarker,       // 7
		"```go",          // 8
		"x := ...",       // 9
		"```",            // 10
		"```json",        // 11: a ```go inside another fence is not a block
		"```go",          // 12
		"```",            // 13
	}, "\n")
	got, err := extractBlocks("d.md", md)
	if err != nil {
		t.Fatal(err)
	}
	want := []block{
		{file: "d.md", line: 4, code: "fmt.Println(1)\n"},
		{file: "d.md", line: 8, code: "x := ...\n", skip: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d blocks %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("block %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := extractBlocks("d.md", "```go\nfmt.Println()\n"); err == nil {
		t.Error("an unterminated fence gave no error")
	}
}

func TestProgramAddsTheImportsAFragmentUses(t *testing.T) {
	src, err := program(block{file: "d.md", line: 1, code: "ctx := context.Background()\nb, _ := bus.New()\n_ = b.Close(ctx)\n"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"context"`, `"github.com/signalbus/signalbus/bus"`} {
		if !strings.Contains(src, want) {
			t.Errorf("program lacks import %s:\n%s", want, src)
		}
	}
	if strings.Contains(src, `"fmt"`) {
		t.Errorf("program imports fmt, which the fragment does not use:\n%s", src)
	}
	decl, err := program(block{file: "d.md", line: 1, code: "// f is a function.\nfunc f() error { return errors.New(\"x\") }\n"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(decl, `"errors"`) || !strings.Contains(decl, "func main() {}") || strings.Contains(decl, "func main() {\n// f") {
		t.Errorf("a declaration block was not kept at top level with its imports:\n%s", decl)
	}
	whole := "package main\n\nfunc main() {}\n"
	if got, _ := program(block{code: whole}); got != whole {
		t.Errorf("a whole file was changed:\n%s", got)
	}
	if _, err := program(block{file: "d.md", line: 3, code: "func {"}); err == nil {
		t.Error("a fragment that does not parse gave no error")
	}
}
