// Command genprices writes package prices' price snapshot (prices/snapshot.go)
// from LiteLLM's model_prices_and_context_window.json.
//
// LiteLLM (https://github.com/BerriAI/litellm, MIT License) keeps the most
// complete public table of LLM prices. genprices keeps the rows of the
// providers that quotabreaker recognises, converts each per-token price in
// dollars to an integer in micro-dollars per million tokens, and writes a
// sorted Go table.
//
// To update the snapshot, take the file from a LiteLLM commit and run, from
// the module root:
//
//	go run ./internal/cmd/genprices \
//		-in model_prices_and_context_window.json \
//		-commit <LiteLLM commit hash> -date <commit date, YYYY-MM-DD> \
//		-subset internal/cmd/genprices/testdata/litellm-subset.json \
//		-out prices/snapshot.go
//
// -subset also writes the rows and fields that the snapshot was made from, in
// LiteLLM's own format, with the commit and date. That file is small enough to
// commit, and `go generate ./prices` regenerates snapshot.go from it; a test
// checks that the two agree.
//
// Rounding: LiteLLM's prices are decimal numbers of dollars per token. They are
// read as exact decimals (never as float64) and multiplied by 10^12, which
// gives micro-dollars per million tokens (equivalently, pico-dollars per
// token). A result with a fraction is rounded half up, and genprices reports
// how many were; a non-zero price that would round to zero is an error.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
)

func main() {
	in := flag.String("in", "", "LiteLLM's `model_prices_and_context_window.json`, or a subset written by -subset")
	out := flag.String("out", "", "Go file to write (prices/snapshot.go)")
	subset := flag.String("subset", "", "if set, also write the rows used, in LiteLLM's format, to this `file`")
	commit := flag.String("commit", "", "LiteLLM commit the input comes from (default: from a subset input)")
	date := flag.String("date", "", "date of that commit, YYYY-MM-DD (default: from a subset input)")
	verbose := flag.Bool("v", false, "list the keys left out, and why")
	flag.Parse()
	if *in == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*in, *out, *subset, meta{Commit: *commit, Date: *date}, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "genprices:", err)
		os.Exit(1)
	}
}

func run(in, out, subsetPath string, flags meta, verbose bool) error {
	data, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	t, err := build(data, flags)
	if err != nil {
		return err
	}
	src, err := render(t)
	if err != nil {
		return err
	}
	if err := writeIfChanged(out, src); err != nil {
		return err
	}
	if subsetPath != "" {
		sub, err := subset(t)
		if err != nil {
			return err
		}
		if err := writeIfChanged(subsetPath, sub); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "genprices: %d rows (%d models), %d tier rows borrowed from undated aliases, %d prices rounded; skipped %d entries of kept providers (%s)\n",
		len(t.rows), t.models(), t.borrowed, t.rounded, t.skipped.total(), t.skipped)
	if verbose {
		for _, r := range t.skipped.reasons() {
			for _, key := range t.skipped[r] {
				fmt.Fprintf(os.Stderr, "\t%s: %s\n", r, key)
			}
		}
	}
	return nil
}

// writeIfChanged leaves an up-to-date file alone so that its time stamp says
// when the data last changed.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return os.WriteFile(path, data, 0o644)
}
