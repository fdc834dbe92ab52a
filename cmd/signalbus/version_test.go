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
	if !regexp.MustCompile(`^signalbus \S+.* \(go1\.\S+ \w+/\w+\)\n$`).MatchString(stdout) {
		t.Errorf("version printed %q", stdout)
	}
}
