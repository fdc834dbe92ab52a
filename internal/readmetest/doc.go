// Package readmetest keeps the Go code in the README and in docs/ compiling:
// its test extracts every ```go block of those Markdown files, writes each as
// a package inside this module (so imports of github.com/signalbus/signalbus/...
// resolve to the code beside it) and runs go build and go vet on them.
//
// A block that is a whole file (it starts with a package clause) is compiled
// as it is; a block of declarations (starting with func or type) gets a
// package clause and an empty main; any other block is taken as the body of
// func main. Both get the imports they name, from a fixed table (see imports
// in the test). A block that cannot compile on purpose is preceded by the
// line <!-- not compiled -->.
// The package has no code of its own; the documents are what it tests, because
// a user copies from them first.
package readmetest
