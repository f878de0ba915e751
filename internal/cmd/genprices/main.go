// Command genprices writes package prices' price snapshot (prices/snapshot.go)
// from the price data of pydantic's genai-prices
// (https://github.com/pydantic/genai-prices, MIT License), whose prices/data.json
// is committed as data/genai-prices-data.json, with its JSON Schema, its
// license and data/source.json, which names the commit and date it was taken
// from.
//
// The source lists providers, each with its models in order; a model has a
// matcher of the names it answers to (equals, starts_with, ends_with,
// contains, regex, and any or all of these), prices in dollars per million
// tokens (input, cache read, cache write, output), possibly tiered by prompt
// size, and possibly conditional: a price from a date on, or during hours of
// the day. genprices keeps all of it that prices a token, converts each
// price to an integer in micro-dollars per million tokens, and writes Go
// tables that package prices evaluates without allocating: the exact names
// of the matchers in one sorted table, the rest of the matchers as rules in
// model order. providerNames in gen.go maps the source's provider ids to the
// OpenTelemetry gen_ai.provider.name values that quotabreaker uses, in order
// of preference.
//
// What the snapshot adds to the source: a one-hour cache write price for the
// Claude models, which the source lacks (see derive1h). What it leaves out:
// audio token prices (audio is priced as text) and per-request fees.
//
// To update the snapshot, copy prices/data.json of a genai-prices commit
// over data/genai-prices-data.json, set data/source.json to that commit, its
// date and the file's address, and run `go generate ./prices` from the module
// root. CI checks that the committed snapshot is what genprices makes of the
// committed data.
//
// Rounding: prices are read as exact decimals (never as float64) and
// multiplied by 10^6. A result with a fraction is rounded half up, and
// genprices reports how many were; a non-zero price that would round to zero
// is an error, as is anything in the source that Price cannot hold (more
// than one tier, tiers at different sizes, an unknown price key or matcher).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	in := flag.String("in", "", "genai-prices' `data.json`")
	metaPath := flag.String("meta", "", "`source.json` naming the input's commit, date and address (default: source.json beside -in)")
	out := flag.String("out", "", "Go file to write (prices/snapshot.go)")
	verbose := flag.Bool("v", false, "list the prices left out and the models without a price")
	flag.Parse()
	if *in == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if *metaPath == "" {
		*metaPath = filepath.Join(filepath.Dir(*in), "source.json")
	}
	if err := run(*in, *metaPath, *out, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "genprices:", err)
		os.Exit(1)
	}
}

func run(in, metaPath, out string, verbose bool) error {
	t, err := load(in, metaPath)
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
	fmt.Fprintf(os.Stderr, "genprices: %d providers, %d models (%d without a token price), %d exact names, %d rules; "+
		"%d prices tiered by prompt size, %d models with conditional prices, %d one-hour cache write prices derived, "+
		"%d prices rounded, %d audio or request prices left out; %d bytes\n",
		t.counts[0], t.counts[1], len(t.unpriced), len(t.exacts), len(t.rules),
		t.tiers, t.dated, t.derived1h, t.rounded, len(t.ignored), len(src))
	if len(t.absent) > 0 {
		fmt.Fprintf(os.Stderr, "genprices: providers named in providerNames but not in the input: %v\n", t.absent)
	}
	if verbose {
		for _, s := range t.ignored {
			fmt.Fprintln(os.Stderr, "\tleft out:", s)
		}
		for _, s := range t.unpriced {
			fmt.Fprintln(os.Stderr, "\tno token price:", s)
		}
	}
	return nil
}

// load reads the input and its meta and builds the table.
func load(in, metaPath string) (*table, error) {
	data, err := os.ReadFile(in)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(metaPath)
	if err != nil {
		return nil, err
	}
	var m meta
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", metaPath, err)
	}
	return build(data, m)
}

// writeIfChanged leaves an up-to-date file alone so that its time stamp says
// when the data last changed.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return os.WriteFile(path, data, 0o644)
}
