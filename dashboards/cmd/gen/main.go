// Command gen writes the signalbus Grafana dashboards as JSON files, one per
// dashboard, into a directory (the dashboards module's own by default).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/signalbus/signalbus/dashboards"
)

func main() {
	dir := flag.String("dir", ".", "directory the dashboard JSON files are written to")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	boards, err := dashboards.All()
	if err != nil {
		return err
	}
	for _, b := range boards {
		data, err := b.JSON()
		if err != nil {
			return fmt.Errorf("%s: %w", b.File, err)
		}
		if err := os.WriteFile(filepath.Join(dir, b.File), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
