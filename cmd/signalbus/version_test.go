package main

import (
	"regexp"
	"testing"
)

func TestVersion(t *testing.T) {
	stdout, _, err := run(t, t.Context(), "version")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^signalbus \S+\ncommit      \S+( \(modified\))?\ngo          go1\.\S+ \w+/\w+\nnats-server 2\.\d+\.\d+\S*\n$`)
	if !want.MatchString(stdout) {
		t.Errorf("version printed %q, want it to match %s", stdout, want)
	}
}
