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

// testdata/litellm-sample.json holds entries copied verbatim from
// https://github.com/BerriAI/litellm/blob/0435375b1271b49f75c01c254ac7c295c4f0f2bd/model_prices_and_context_window.json
// chosen for the cases below.
const sampleCommit = "0435375b1271b49f75c01c254ac7c295c4f0f2bd"

func buildSample(t *testing.T) *table {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "litellm-sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	tb, err := build(data, meta{Commit: sampleCommit, Date: "2026-02-27"})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// The expected prices are the sample's dollars per token times 1e12, worked
// out by hand in the comments.
func TestBuildSample(t *testing.T) {
	tb := buildSample(t)
	got := map[[3]string]price{}
	for _, r := range tb.rows {
		got[[3]string{r.model, r.provider, r.tier}] = r.p
	}
	tests := []struct {
		name                  string
		model, provider, tier string
		want                  price
	}{
		// input 2.5e-06, cache_read 1.25e-06, output 1e-05
		{"plain", "gpt-4o", "openai", "", price{Input: 2_500_000, CachedInput: 1_250_000, Output: 10_000_000}},
		// _priority: 4.25e-06, 2.125e-06, 1.7e-05
		{"priority tier", "gpt-4o", "openai", "priority", price{Input: 4_250_000, CachedInput: 2_125_000, Output: 17_000_000}},
		// gpt-4o-2024-08-06 has no _priority fields and gpt-4o's standard price
		{"tier borrowed by a dated snapshot", "gpt-4o-2024-08-06", "openai", "priority", price{Input: 4_250_000, CachedInput: 2_125_000, Output: 17_000_000}},
		// gpt-4o-2024-05-13: its own _priority 8.75e-06 and 2.625e-05
		{"own tier of a differently priced snapshot", "gpt-4o-2024-05-13", "openai", "priority", price{Input: 8_750_000, Output: 26_250_000}},
		// o3-2025-04-16 borrows o3's _flex: 1e-06, 2.5e-07, 4e-06
		{"flex borrowed", "o3-2025-04-16", "openai", "flex", price{Input: 1_000_000, CachedInput: 250_000, Output: 4_000_000}},
		// gpt-5-nano gives input_cost_per_token_priority 2.5e-06 alone: the
		// other fields keep the standard 5e-09 cached and 4e-07 output.
		{"partial tier", "gpt-5-nano", "openai", "priority", price{Input: 2_500_000, CachedInput: 5_000, Output: 400_000}},
		// output_cost_per_token 0.0
		{"embedding", "text-embedding-3-small", "openai", "", price{Input: 20_000}},
		// claude-opus-4-6: cache_creation_input_token_cost_above_1hr 1e-05; above_200k: 1e-05, 1e-06, 1.25e-05, 3.75e-05
		{"one-hour cache and long context", "claude-opus-4-6", "anthropic", "", price{
			Input: 5_000_000, CachedInput: 500_000, CacheWrite: 6_250_000, CacheWrite1h: 10_000_000, Output: 25_000_000,
			LongContext: 200_000, LongInput: 10_000_000, LongCachedInput: 1_000_000, LongCacheWrite: 12_500_000, LongOutput: 37_500_000,
		}},
		// gemini/gemini-2.5-pro, prefix removed
		{"gemini prefix", "gemini-2.5-pro", "gcp.gemini", "", price{
			Input: 1_250_000, CachedInput: 125_000, Output: 10_000_000,
			LongContext: 200_000, LongInput: 2_500_000, LongCachedInput: 250_000, LongOutput: 15_000_000,
		}},
		// gemini-2.0-flash-exp's above_128k prices are 0: no long context
		{"zero long prices", "gemini-2.0-flash-exp", "gcp.vertex_ai", "", price{Input: 150_000, CachedInput: 37_500, Output: 600_000}},
		// input 4.688e-09 exact; output 4.6875e-09 → 4687.5, rounded half up;
		// above_128k input 1e-06, output 9.375e-09
		{"rounding", "gemini-1.5-flash-exp-0827", "gcp.vertex_ai", "", price{
			Input: 4_688, Output: 4_688, LongContext: 128_000, LongInput: 1_000_000, LongOutput: 9_375,
		}},
		// deepseek/deepseek-coder: input_cost_per_token_cache_hit 1.4e-08
		{"deepseek cache hit", "deepseek-coder", "deepseek", "", price{Input: 140_000, CachedInput: 14_000, Output: 280_000}},
		{"xai 128k", "grok-4-0709", "x_ai", "", price{Input: 3_000_000, Output: 15_000_000, LongContext: 128_000, LongInput: 6_000_000, LongOutput: 30_000_000}},
		{"azure", "gpt-4o-mini", "azure.ai.openai", "", price{Input: 165_000, CachedInput: 75_000, Output: 660_000}},
		{"openrouter keeps the vendor", "openai/gpt-4o", "openrouter", "", price{Input: 2_500_000, Output: 10_000_000}},
		{"lower case", "meta-llama/llama-3.3-70b-instruct-turbo", "together", "", price{Input: 880_000, Output: 880_000}},
		{"vertex @", "claude-sonnet-4-5-20250929", "gcp.vertex_ai", "", price{
			Input: 3_000_000, CachedInput: 300_000, CacheWrite: 3_750_000, Output: 15_000_000,
			LongContext: 200_000, LongInput: 6_000_000, LongCachedInput: 600_000, LongCacheWrite: 7_500_000, LongOutput: 22_500_000,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := got[[3]string{tt.model, tt.provider, tt.tier}]
			if !ok || p != tt.want {
				t.Errorf("%s %s %q = %+v, %v; want %+v", tt.provider, tt.model, tt.tier, p, ok, tt.want)
			}
		})
	}

	// Every key of the sample is either a row or skipped for a reason.
	skipped := map[string]string{}
	for reason, keys := range tb.skipped {
		for _, k := range keys {
			skipped[k] = reason
		}
	}
	for key, reason := range map[string]string{
		"us/claude-opus-4-6":         "not a model name",
		"azure/eu/gpt-4o-2024-08-06": "not a model name",
		"1024-x-1024/dall-e-2":       "not billed by tokens",
		"fireworks-ai-up-to-4b":      "not billed by tokens",
		"gemini/gemini-exp-1114":     "zero prices",
		"zai/glm-4.5-flash":          "zero prices",
		"deepseek-chat":              "duplicate", // loses to deepseek/deepseek-chat
	} {
		if skipped[key] != reason {
			t.Errorf("%s: skipped for %q; want %q", key, skipped[key], reason)
		}
	}
	for _, key := range []string{"sample_spec", "ai21.j2-mid-v1"} { // providers not kept
		if r, ok := skipped[key]; ok {
			t.Errorf("%s counted as skipped (%s); it is not a kept provider's", key, r)
		}
	}
	if tb.rounded != 1 {
		t.Errorf("rounded = %d; want 1", tb.rounded)
	}
	if tb.borrowed != 3 { // gpt-4o-2024-08-06 priority, o3-2025-04-16 flex and priority
		t.Errorf("borrowed = %d; want 3", tb.borrowed)
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
		"const SnapshotCommit = \"" + sampleCommit + "\"\n",
		"const SnapshotDate = \"2026-02-27\"\n",
		`{"gpt-4o", "openai", "priority", Price{Input: 4_250_000, CachedInput: 2_125_000, Output: 17_000_000}},`,
		`{"text-embedding-3-small", "openai", "", Price{Input: 20_000}},`,
	} {
		if !bytes.Contains(src, []byte(want)) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Rows are sorted by model, then by provider preference (openai before
	// azure.ai.openai, against the alphabet), then by tier.
	var at []int
	for _, r := range []string{
		`{"gpt-4o", "openai", "", `,
		`{"gpt-4o", "openai", "priority", `,
		`{"gpt-4o", "azure.ai.openai", "", `,
		`{"gpt-4o-2024-05-13", "openai", "", `,
	} {
		at = append(at, bytes.Index(src, []byte(r)))
	}
	if !slices.IsSorted(at) || at[0] < 0 {
		t.Errorf("rows out of order: at %v", at)
	}
}

// TestSnapshotUpToDate checks that prices/snapshot.go is what genprices makes
// of the committed subset, and that the subset is what genprices would keep
// of itself: so the snapshot is reproducible from LiteLLM's file.
func TestSnapshotUpToDate(t *testing.T) {
	subsetPath := filepath.Join("testdata", "litellm-subset.json")
	data, err := os.ReadFile(subsetPath)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := build(data, meta{})
	if err != nil {
		t.Fatal(err)
	}
	if tb.skipped.total() != 0 {
		t.Errorf("the subset holds entries genprices leaves out: %s", tb.skipped)
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
		t.Errorf("prices/snapshot.go differs from what genprices makes of %s: run go generate ./prices", subsetPath)
	}
	sub, err := subset(tb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sub, data) {
		t.Errorf("%s is not what genprices keeps of itself", subsetPath)
	}
	if len(committed) > 512<<10 {
		t.Errorf("prices/snapshot.go is %d bytes", len(committed))
	}
}

func TestMicros(t *testing.T) {
	tests := []struct {
		in    string
		want  int64
		exact bool
		err   bool
	}{
		{"2.5e-06", 2_500_000, true, false},
		{"3.3e-07", 330_000, true, false}, // 3.3e-07 is not exact in binary floating point
		{"5.46875e-07", 546_875, true, false},
		{"4.6875e-09", 4_688, false, false}, // 4687.5
		{"4.6874e-09", 4_687, false, false},
		{"0.0001", 100_000_000, true, false},
		{"0", 0, true, false},
		{"0.0", 0, true, false},
		{"1e-12", 1, true, false},
		{"5e-13", 1, false, false},
		{"4e-13", 0, false, true}, // non-zero, rounds to zero
		{"-1e-06", 0, false, true},
		{"1e10", 0, false, true}, // too large
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, exact, err := micros(json.Number(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("micros(%s) error %v; want error %v", tt.in, err, tt.err)
			}
			if err == nil && (got != tt.want || exact != tt.exact) {
				t.Errorf("micros(%s) = %d, %v; want %d, %v", tt.in, got, exact, tt.want, tt.exact)
			}
		})
	}
	if _, _, err := micros("2.5e-06"); err == nil {
		t.Error("a JSON string was taken as a price")
	}
}

func TestModelName(t *testing.T) {
	src := func(litellm string) source {
		i := slices.IndexFunc(sources, func(s source) bool { return s.litellm == litellm })
		if i < 0 {
			t.Fatalf("no source %s", litellm)
		}
		return sources[i]
	}
	tests := []struct {
		src, key, model string
		bare, ok        bool
	}{
		{"openai", "gpt-4o", "gpt-4o", false, true},
		{"openai", "1024-x-1024/dall-e-2", "", false, false},
		{"gemini", "gemini/gemini-2.5-pro", "gemini-2.5-pro", false, true},
		{"gemini", "gemini-flash-latest", "gemini-flash-latest", true, true},
		{"azure", "azure/eu/gpt-4o-2024-08-06", "", false, false},
		{"azure", "gpt-4o", "", false, false},
		{"groq", "groq/meta-llama/llama-4-scout-17b-16e-instruct", "meta-llama/llama-4-scout-17b-16e-instruct", false, true},
		{"fireworks_ai", "fireworks_ai/accounts/fireworks/models/", "", false, false},
		{"vertex_ai-anthropic_models", "vertex_ai/claude-sonnet-4-5@20250929", "claude-sonnet-4-5-20250929", false, true},
		{"deepseek", "deepseek/", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			model, bare, ok := modelName(src(tt.src), tt.key)
			if model != tt.model || bare != tt.bare || ok != tt.ok {
				t.Errorf("modelName(%s, %q) = %q, %v, %v; want %q, %v, %v", tt.src, tt.key, model, bare, ok, tt.model, tt.bare, tt.ok)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	good := meta{Commit: sampleCommit, Date: "2026-02-27"}
	entry := func(fields string) string {
		return `{"gpt-x": {"litellm_provider": "openai", "mode": "chat", ` + fields + `}}`
	}
	tests := []struct {
		name, input string
		m           meta
		want        string
	}{
		{"not JSON", `{"a": `, good, "input"},
		{"no commit", `{}`, meta{Date: "2026-02-27"}, "commit"},
		{"short commit", `{}`, meta{Commit: "0435375b", Date: "2026-02-27"}, "commit"},
		{"bad date", `{}`, meta{Commit: sampleCommit, Date: "27/02/2026"}, "date"},
		{"entry not an object", `{"gpt-x": [1]}`, good, "gpt-x"},
		{"negative price", entry(`"input_cost_per_token": -1e-06, "output_cost_per_token": 1e-06`), good, "negative"},
		{"string price", entry(`"input_cost_per_token": "1e-06", "output_cost_per_token": 1e-06`), good, "not a number"},
		{"two thresholds", entry(`"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06, "input_cost_per_token_above_128k_tokens": 2e-06, "input_cost_per_token_above_200k_tokens": 3e-06`), good, "thresholds"},
		{"bad tier price", entry(`"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06, "input_cost_per_token_flex": -1`), good, "negative"},
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
