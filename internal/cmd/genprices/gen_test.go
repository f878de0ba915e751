package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testdata/sample.json holds a few providers in genai-prices' format: entries
// copied from data/genai-prices-data.json (Anthropic's, DeepSeek's, Groq's,
// Together's) and made-up ones for the matchers and prices that the real
// entries do not show in so few lines.
var sampleMeta = meta{
	Commit: "47df840a5ab10bbcffb8e5ac01b9899032245d1b",
	Date:   "2026-08-21",
	URL:    "https://github.com/pydantic/genai-prices/blob/47df840a5ab10bbcffb8e5ac01b9899032245d1b/prices/data.json",
}

func buildSample(t *testing.T) *table {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	tb, err := build(data, sampleMeta)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func (t *table) model(id string) (model, bool) {
	i := slices.IndexFunc(t.models, func(m model) bool { return m.id == id && t.providers[m.provider].id != "azure" })
	if i < 0 {
		return model{}, false
	}
	return t.models[i], true
}

// The expected prices are the sample's dollars per million tokens times 1e6.
func TestBuildSample(t *testing.T) {
	tb := buildSample(t)
	tests := []struct {
		id     string
		priced bool
		want   price
	}{
		// tiers at 200000; the one-hour write derived: twice the input, 6 and 12
		{"claude-sonnet-4-5", true, price{
			Input: 3_000_000, CachedInput: 300_000, CacheWrite: 3_750_000, CacheWrite1h: 6_000_000, Output: 15_000_000,
			LongContext: 200_000, LongInput: 6_000_000, LongCachedInput: 600_000, LongCacheWrite: 7_500_000, LongCacheWrite1h: 12_000_000, LongOutput: 22_500_000,
		}},
		// cache write 0.3 is 1.2 times the input 0.25; the one-hour write is still twice it
		{"claude-3-haiku", true, price{Input: 250_000, CachedInput: 30_000, CacheWrite: 300_000, CacheWrite1h: 500_000, Output: 1_250_000}},
		// the first of conditional prices (the one-hour prices derived: 5 in all, the change included)
		{"claude-sonnet-5", true, price{Input: 2_000_000, CachedInput: 200_000, CacheWrite: 2_500_000, CacheWrite1h: 4_000_000, Output: 10_000_000}},
		{"deepseek-chat", true, price{Input: 135_000, CachedInput: 35_000, Output: 550_000}},
		// audio prices left out
		{"gpt-4o-audio", true, price{Input: 2_500_000, Output: 10_000_000}},
		// 0.0000005 dollars per million tokens is half a micro-dollar: rounded up to 1
		{"grok-ish", true, price{Input: 1, Output: 1_000_000}},
		{"moderation", false, price{}},
		// one field tiered, the other flat
		{"gpt-long", true, price{Input: 1_000_000, Output: 8_000_000, LongContext: 272_000, LongInput: 2_000_000}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			m, ok := tb.model(tt.id)
			if !ok {
				t.Fatal("no such model")
			}
			if m.price != tt.want || m.priced != tt.priced {
				t.Errorf("got %+v, %v; want %+v, %v", m.price, m.priced, tt.want, tt.priced)
			}
		})
	}

	sonnet5, _ := tb.model("claude-sonnet-5")
	// 2026-09-01T00:00:00Z is 1788220800
	if want := []change{{since: 1788220800, price: price{Input: 3_000_000, CachedInput: 300_000, CacheWrite: 3_750_000, CacheWrite1h: 6_000_000, Output: 15_000_000}}}; !slices.Equal(sonnet5.changes, want) {
		t.Errorf("claude-sonnet-5 changes %+v; want %+v", sonnet5.changes, want)
	}
	deepseek, _ := tb.model("deepseek-chat")
	// 00:30 is 1800 s, 16:30 is 59400 s
	if want := []change{{from: 1800, to: 59400, price: price{Input: 270_000, CachedInput: 70_000, Output: 1_100_000}}}; !slices.Equal(deepseek.changes, want) {
		t.Errorf("deepseek-chat changes %+v; want %+v", deepseek.changes, want)
	}
	if tb.rounded != 1 || tb.derived1h != 5 || tb.dated != 2 || tb.tiers != 2 || len(tb.ignored) != 2 || len(tb.unpriced) != 1 {
		t.Errorf("rounded %d, derived1h %d, dated %d, tiers %d, ignored %v, unpriced %v",
			tb.rounded, tb.derived1h, tb.dated, tb.tiers, tb.ignored, tb.unpriced)
	}
}

// TestMatchers checks how the sample's matchers are split: exact names in
// lower case, the first model of a provider winning a name that two models
// list, and the rest as rules in model order.
func TestMatchers(t *testing.T) {
	tb := buildSample(t)
	prov := func(id string) int {
		return slices.IndexFunc(tb.providers, func(p provider) bool { return p.id == id })
	}
	id := func(m int) string { return tb.models[m].id }
	exact := func(name, provider string) string {
		m, ok := tb.exact[exactKey{name, prov(provider)}]
		if !ok {
			return ""
		}
		return id(m)
	}
	for _, tt := range []struct{ name, provider, want string }{
		{"deepseek-v3", "deepseek", "deepseek-chat"}, // lower case
		{"gpt-4o-mini", "openai", "gpt-4o-mini"},     // listed by gpt-4o too: the first wins
		{"gpt-4o", "openai", "gpt-4o"},
		{"gpt-4o", "azure", "gpt-4o"},
		{"claude-sonnet-4", "anthropic", "claude-sonnet-4-0"},
		{"meta-llama/llama-4-scout-17b-16e-instruct", "together", "meta-llama/Llama-4-Scout-17B-16E-Instruct"},
		{"claude-sonnet-4-5", "anthropic", ""}, // a prefix, not an exact name
	} {
		if got := exact(tt.name, tt.provider); got != tt.want {
			t.Errorf("exact %s at %s: %q; want %q", tt.name, tt.provider, got, tt.want)
		}
	}
	var got []string
	for _, r := range tb.rules[tb.providers[prov("openai")].rules[0]:tb.providers[prov("openai")].rules[1]] {
		got = append(got, id(r.model)+" "+goClause(r.match))
	}
	want := []string{
		`gpt-4o-mini clause{op: opPrefix, s: "gpt-4o-mini-"}`,
		`gpt-4o clause{op: opPrefix, s: "gpt-4o-"}`,
		`gpt-4o-audio clause{op: opAnd, sub: []clause{{op: opPrefix, s: "gpt-4o"}, {op: opContains, s: "audio"}}}`,
		`grok-ish clause{op: opRegex, s: "(?i)^GPT-X\\.\\d-\\d{8}$", re: regexp.MustCompile("(?i)^GPT-X\\.\\d-\\d{8}$")}`,
		`gpt-5 clause{op: opRegex, s: "^gpt-5\\.\\d$", need: "gpt-5.", re: regexp.MustCompile("^gpt-5\\.\\d$")}`,
		`moderation clause{op: opPrefix, s: "omni-moderation"}`,
		`gpt-long clause{op: opSuffix, s: "-long"}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("openai's rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p := tb.providers[prov("azure")]; !slices.Equal(p.fallback, []int{prov("openai"), prov("anthropic")}) {
		t.Errorf("azure's fallback %v", p.fallback)
	}
	if _, ok := tb.names["gcp.vertex_ai"]; ok { // google is not in the sample
		t.Errorf("a name for a provider the sample lacks: %v", tb.names)
	}
	if tb.names["azure.ai.openai"] != prov("azure") || tb.names["azure"] != prov("azure") {
		t.Errorf("azure's names: %v", tb.names)
	}
}

func TestMinLen(t *testing.T) {
	c := clause{op: "or", sub: []clause{
		{op: "starts_with", s: "claude-sonnet-4-5"},
		{op: "and", sub: []clause{{op: "contains", s: "audio"}, {op: "ends_with", s: "-preview"}}},
	}}
	if n := minLen(c); n != 8 {
		t.Errorf("minLen = %d; want 8, the and's longest", n)
	}
	if n := minLen(clause{op: "or", sub: []clause{{op: "equals", s: "abc"}, {op: "regex", s: "x"}}}); n != 0 {
		t.Errorf("minLen with a regex = %d; want 0", n)
	}
}

func TestRender(t *testing.T) {
	tb := buildSample(t)
	src, err := render(tb)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"// Code generated by genprices; DO NOT EDIT.\n",
		"const SnapshotCommit = \"" + sampleMeta.Commit + "\"\n",
		"const SnapshotDate = \"2026-08-21\"\n",
		"const Source = \"" + sampleMeta.URL + "\"\n",
		`import "regexp"`,
		`{"gpt-4o-audio", Price{Input: 2_500_000, Output: 10_000_000}, true},`,
		`{"moderation", Price{}, false},`,
		`{"deepseek-v3", 1, 4},`,
		"// deepseek deepseek-chat from 00:30:00 to 16:30:00 UTC",
		"// anthropic claude-sonnet-5 from 2026-09-01",
	} {
		if !bytes.Contains(src, []byte(want)) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestSnapshotUpToDate checks that prices/snapshot.go is what genprices makes
// of the committed source data, as CI's `go generate ./prices && git diff
// --exit-code prices/` does, and that every provider of genprices'
// providerNames is in the data.
func TestSnapshotUpToDate(t *testing.T) {
	tb, err := load(filepath.Join("data", "genai-prices-data.json"), filepath.Join("data", "source.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tb.absent) > 0 {
		t.Errorf("providerNames lists providers the data lacks: %v", tb.absent)
	}
	if tb.counts != [2]int{34, 1442} {
		t.Errorf("%d providers, %d models; the data's README says 34 and 1,442", tb.counts[0], tb.counts[1])
	}
	src, err := render(tb)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(filepath.Join("..", "..", "..", "prices", "snapshot.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(src, committed) {
		t.Errorf("prices/snapshot.go differs from what genprices makes of data/genai-prices-data.json: run go generate ./prices")
	}
	if len(committed) > 320<<10 {
		t.Errorf("prices/snapshot.go is %d bytes", len(committed))
	}
}

func TestMicros(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		rounded bool
		err     bool
	}{
		{"2.5", 2_500_000, false, false},
		{"0.33", 330_000, false, false}, // not exact in binary floating point
		{"0.01875", 18_750, false, false},
		{"0.00875", 8_750, false, false},
		{"0.0000005", 1, true, false}, // half a micro-dollar, rounded up
		{"0.0000004", 0, true, true},  // non-zero, rounds to zero
		{"0.08333333333333334", 83_333, true, false},
		{"0", 0, false, false},
		{"1e-6", 1, false, false},
		{"-1", 0, false, true},
		{"1e20", 0, false, true}, // too large
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			tb := &table{}
			got, err := tb.micros(json.Number(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("micros(%s) error %v; want error %v", tt.in, err, tt.err)
			}
			if err == nil && (got != tt.want || (tb.rounded == 1) != tt.rounded) {
				t.Errorf("micros(%s) = %d, rounded %d; want %d, %v", tt.in, got, tb.rounded, tt.want, tt.rounded)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	provider := func(id, models string) string {
		return `[{"id": "` + id + `", "name": "x", "api_pattern": "x", "models": [` + models + `]}]`
	}
	model := func(match, prices string) string {
		return provider("openai", `{"id": "m", "match": `+match+`, "prices": `+prices+`}`)
	}
	tests := []struct {
		name, input string
		m           meta
		want        string
	}{
		{"not JSON", `[{"id": `, sampleMeta, "input"},
		{"short commit", `[]`, meta{Commit: "47df840a", Date: "2026-08-21", URL: sampleMeta.URL}, "commit"},
		{"bad date", `[]`, meta{Commit: sampleMeta.Commit, Date: "21/08/2026", URL: sampleMeta.URL}, "date"},
		{"url without the commit", `[]`, meta{Commit: sampleMeta.Commit, Date: "2026-08-21", URL: "https://example.com/data.json"}, "url"},
		{"unmapped provider", provider("newco", ""), sampleMeta, "newco"},
		{"unknown matcher", model(`{"glob": "gpt-*"}`, `{"input_mtok": 1}`), sampleMeta, "unknown matcher"},
		{"two keys in a matcher", model(`{"equals": "a", "contains": "b"}`, `{"input_mtok": 1}`), sampleMeta, "2 keys"},
		{"bad regex", model(`{"regex": "x(?=y)"}`, `{"input_mtok": 1}`), sampleMeta, "regexp"},
		{"empty or", model(`{"or": []}`, `{"input_mtok": 1}`), sampleMeta, "empty or"},
		{"unknown price", model(`{"equals": "m"}`, `{"input_mtok": 1, "cache_write_1h_mtok": 2}`), sampleMeta, "unknown price"},
		{"negative price", model(`{"equals": "m"}`, `{"input_mtok": -1}`), sampleMeta, "negative"},
		{"string price", model(`{"equals": "m"}`, `{"input_mtok": "1"}`), sampleMeta, "not a price"},
		{"two tiers", model(`{"equals": "m"}`, `{"input_mtok": {"base": 1, "tiers": [{"start": 1000, "price": 2}, {"start": 2000, "price": 3}]}}`), sampleMeta, "2 tiers"},
		{"tiers at two sizes", model(`{"equals": "m"}`, `{"input_mtok": {"base": 1, "tiers": [{"start": 1000, "price": 2}]}, "output_mtok": {"base": 1, "tiers": [{"start": 2000, "price": 2}]}}`), sampleMeta, "tiers start at"},
		{"free tier", model(`{"equals": "m"}`, `{"input_mtok": {"base": 1, "tiers": [{"start": 1000, "price": 0}]}}`), sampleMeta, "zero"},
		{"unknown constraint", model(`{"equals": "m"}`, `[{"prices": {"input_mtok": 1}}, {"constraint": {"weekday": "sunday"}, "prices": {"input_mtok": 2}}]`), sampleMeta, "constraint"},
		{"unknown fallback", `[{"id": "azure", "name": "x", "api_pattern": "x", "fallback_model_providers": ["nobody"], "models": []}]`, sampleMeta, "nobody"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build([]byte(tt.input), tt.m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("build error %v; want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestGrouped(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1_000", 2_500_000: "2_500_000", 100_000: "100_000"} {
		if got := grouped(n); got != want {
			t.Errorf("grouped(%d) = %q; want %q", n, got, want)
		}
	}
}

// TestNeed: the text need finds is one every match holds, and none is
// found where a match need not hold one.
func TestNeed(t *testing.T) {
	for _, tt := range []struct{ expr, want string }{
		{"(?:mi|code|dev|magi|mini)stral", "stral"},
		{`^x-ai/grok-4\.3-\d{8}$`, "x-ai/grok-4.3-"},
		{`^o[134]`, "o"},
		{"gpt", "gpt"},
		{`(?i)^GPT-X\.\d-\d{8}$`, ""}, // any case: no text is certain
		{"a|b", ""},
		{"(?:abc)?d", "d"},
		{"x*", ""},
		{"(", ""},
	} {
		if got := need(tt.expr); got != tt.want {
			t.Errorf("need(%q) = %q; want %q", tt.expr, got, tt.want)
		}
	}
}
