package prices

import (
	"slices"
	"strings"
	"testing"
)

// The expected prices below were read by hand from LiteLLM's
// model_prices_and_context_window.json at SnapshotCommit; each comment quotes
// the LiteLLM key and its fields in dollars per token.
func TestLookupKnownModels(t *testing.T) {
	tests := []struct {
		name                  string
		provider, model, tier string
		want                  Price
	}{
		{
			// "gpt-4o": input 2.5e-06, cache_read 1.25e-06, output 1e-05
			name: "gpt-4o", provider: "openai", model: "gpt-4o",
			want: Price{Input: 2_500_000, CachedInput: 1_250_000, Output: 10_000_000},
		},
		{
			// "gpt-4o-2024-08-06": the same
			name: "gpt-4o dated", provider: "openai", model: "gpt-4o-2024-08-06",
			want: Price{Input: 2_500_000, CachedInput: 1_250_000, Output: 10_000_000},
		},
		{
			// "gpt-4o-2024-05-13": input 5e-06, output 1.5e-05, no cache price
			name: "gpt-4o first snapshot has its own price", provider: "openai", model: "gpt-4o-2024-05-13",
			want: Price{Input: 5_000_000, Output: 15_000_000},
		},
		{
			// "gpt-4o-mini": input 1.5e-07, cache_read 7.5e-08, output 6e-07
			name: "gpt-4o-mini", provider: "openai", model: "gpt-4o-mini-2024-07-18",
			want: Price{Input: 150_000, CachedInput: 75_000, Output: 600_000},
		},
		{
			// "azure/gpt-4o-mini": input 1.65e-07, cache_read 7.5e-08, output 6.6e-07
			name: "gpt-4o-mini on azure", provider: "azure.ai.openai", model: "gpt-4o-mini",
			want: Price{Input: 165_000, CachedInput: 75_000, Output: 660_000},
		},
		{
			// "o3": input 2e-06, cache_read 5e-07, output 8e-06
			name: "o3", provider: "openai", model: "o3",
			want: Price{Input: 2_000_000, CachedInput: 500_000, Output: 8_000_000},
		},
		{
			// "o3": input_cost_per_token_flex 1e-06, cache_read_input_token_cost_flex 2.5e-07, output_cost_per_token_flex 4e-06
			name: "o3 flex", provider: "openai", model: "o3", tier: "flex",
			want: Price{Input: 1_000_000, CachedInput: 250_000, Output: 4_000_000},
		},
		{
			// "o3": _priority 3.5e-06, 8.75e-07, 1.4e-05
			name: "o3 priority", provider: "openai", model: "o3", tier: "priority",
			want: Price{Input: 3_500_000, CachedInput: 875_000, Output: 14_000_000},
		},
		{
			// "o4-mini-2025-04-16" has no flex fields; "o4-mini" has the same
			// standard price and flex 5.5e-07, 1.375e-07, 2.2e-06.
			name: "o4-mini dated flex borrowed from its alias", provider: "openai", model: "o4-mini-2025-04-16", tier: "flex",
			want: Price{Input: 550_000, CachedInput: 137_500, Output: 2_200_000},
		},
		{
			// "gpt-4o-mini" has no flex fields: the standard price.
			name: "tier without a price", provider: "openai", model: "gpt-4o-mini", tier: "flex",
			want: Price{Input: 150_000, CachedInput: 75_000, Output: 600_000},
		},
		{
			name: "default tier", provider: "openai", model: "o3", tier: "default",
			want: Price{Input: 2_000_000, CachedInput: 500_000, Output: 8_000_000},
		},
		{
			// "claude-sonnet-4-5-20250929": input 3e-06, cache_read 3e-07,
			// cache_creation 3.75e-06, output 1.5e-05; above_200k_tokens:
			// input 6e-06, cache_read 6e-07, cache_creation 7.5e-06, output 2.25e-05
			name: "claude-sonnet-4-5 dated", provider: "anthropic", model: "claude-sonnet-4-5-20250929",
			want: Price{
				Input: 3_000_000, CachedInput: 300_000, CacheWrite: 3_750_000, Output: 15_000_000,
				LongContext: 200_000, LongInput: 6_000_000, LongCachedInput: 600_000, LongCacheWrite: 7_500_000, LongOutput: 22_500_000,
			},
		},
		{
			// "claude-opus-4-6": cache_creation_input_token_cost_above_1hr 1e-05
			name: "claude-opus-4-6 one-hour cache", provider: "anthropic", model: "claude-opus-4-6",
			want: Price{
				Input: 5_000_000, CachedInput: 500_000, CacheWrite: 6_250_000, CacheWrite1h: 10_000_000, Output: 25_000_000,
				LongContext: 200_000, LongInput: 10_000_000, LongCachedInput: 1_000_000, LongCacheWrite: 12_500_000, LongOutput: 37_500_000,
			},
		},
		{
			// "gemini/gemini-2.5-flash": input 3e-07, cache_read 3e-08, output 2.5e-06
			name: "gemini-2.5-flash", provider: "gcp.gemini", model: "gemini-2.5-flash",
			want: Price{Input: 300_000, CachedInput: 30_000, Output: 2_500_000},
		},
		{
			// "gemini/gemini-2.5-pro": above_200k_tokens input 2.5e-06, cache_read 2.5e-07, output 1.5e-05
			name: "gemini-2.5-pro", provider: "gcp.gemini", model: "models/gemini-2.5-pro",
			want: Price{
				Input: 1_250_000, CachedInput: 125_000, Output: 10_000_000,
				LongContext: 200_000, LongInput: 2_500_000, LongCachedInput: 250_000, LongOutput: 15_000_000,
			},
		},
		{
			// "deepseek/deepseek-chat": input 2.8e-07, cache_read 2.8e-08, output 4.2e-07
			name: "deepseek-chat", provider: "deepseek", model: "deepseek-chat",
			want: Price{Input: 280_000, CachedInput: 28_000, Output: 420_000},
		},
		{
			// "deepseek/deepseek-coder": input 1.4e-07, input_cost_per_token_cache_hit 1.4e-08, output 2.8e-07
			name: "deepseek cache_hit field", provider: "deepseek", model: "deepseek-coder",
			want: Price{Input: 140_000, CachedInput: 14_000, Output: 280_000},
		},
		{
			// "xai/grok-4-0709": input 3e-06, output 1.5e-05, above_128k 6e-06, 3e-05
			name: "grok-4-0709", provider: "x_ai", model: "grok-4-0709",
			want: Price{Input: 3_000_000, Output: 15_000_000, LongContext: 128_000, LongInput: 6_000_000, LongOutput: 30_000_000},
		},
		{
			// "groq/llama-3.3-70b-versatile": input 5.9e-07, output 7.9e-07
			name: "groq", provider: "groq", model: "llama-3.3-70b-versatile",
			want: Price{Input: 590_000, Output: 790_000},
		},
		{
			// "openrouter/openai/gpt-4o": input 2.5e-06, output 1e-05
			name: "openrouter keeps the vendor", provider: "openrouter", model: "openai/gpt-4o",
			want: Price{Input: 2_500_000, Output: 10_000_000},
		},
		{
			// "text-embedding-3-small": input 2e-08, output 0.0
			name: "embedding", provider: "openai", model: "text-embedding-3-small",
			want: Price{Input: 20_000},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Lookup(tt.provider, tt.model, tt.tier)
			if !ok || got != tt.want {
				t.Errorf("Lookup(%q, %q, %q) = %+v, %v; want %+v, true", tt.provider, tt.model, tt.tier, got, ok, tt.want)
			}
		})
	}
}

func TestLookupNames(t *testing.T) {
	price := func(provider, model, tier string) Price {
		t.Helper()
		p, ok := Lookup(provider, model, tier)
		if !ok {
			t.Fatalf("Lookup(%q, %q, %q) found nothing", provider, model, tier)
		}
		return p
	}
	tests := []struct {
		name                  string
		provider, model, tier string
		same                  Price // the price Lookup must give
	}{
		{"case", "openai", "GPT-4o", "", price("openai", "gpt-4o", "")},
		{"spaces", "openai", " gpt-4o\n", "", price("openai", "gpt-4o", "")},
		{"tier case", "openai", "o3", "Flex", price("openai", "o3", "flex")},
		{"unknown date -YYYY-MM-DD", "openai", "gpt-4.1-mini-2099-01-01", "", price("openai", "gpt-4.1-mini", "")},
		{"unknown date -YYYYMMDD", "anthropic", "claude-sonnet-4-5-20991231", "", price("anthropic", "claude-sonnet-4-5", "")},
		{"unknown date keeps the tier", "openai", "o3-2099-01-01", "priority", price("openai", "o3", "priority")},
		{"fine-tune", "openai", "ft:gpt-4o-mini-2024-07-18:my-org::9AbCdEf", "", price("openai", "ft:gpt-4o-mini-2024-07-18", "")},
		{"vertex @ date", "gcp.vertex_ai", "claude-sonnet-4-5@20250929", "", price("gcp.vertex_ai", "claude-sonnet-4-5-20250929", "")},
		{"no provider takes the maker", "", "gpt-4o-mini", "", price("openai", "gpt-4o-mini", "")},
		{"unknown provider takes the maker", "siliconflow", "deepseek-r1", "", price("deepseek", "deepseek-r1", "")},
		{"provider without the model takes the maker", "groq", "gpt-4o", "", price("openai", "gpt-4o", "")},
		{"no provider, one host", "", "llama-3.3-70b-versatile", "", price("groq", "llama-3.3-70b-versatile", "")},
		{"the provider's own price", "azure.ai.openai", "deepseek-r1", "", Price{Input: 1_350_000, Output: 5_400_000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Lookup(tt.provider, tt.model, tt.tier)
			if !ok || got != tt.same {
				t.Errorf("Lookup(%q, %q, %q) = %+v, %v; want %+v, true", tt.provider, tt.model, tt.tier, got, ok, tt.same)
			}
		})
	}
	// The provider matters where prices differ.
	if a, b := price("deepseek", "deepseek-r1", ""), price("azure.ai.openai", "deepseek-r1", ""); a == b {
		t.Errorf("deepseek-r1 has the same price at DeepSeek and on Azure: %+v", a)
	}
}

func TestLookupUnknown(t *testing.T) {
	for _, model := range []string{
		"", " ", "my-fine-tune", "gpt-4o-2024", "ft:my-base:org::abc", "ft:", "ft::org",
		"-2024-08-06", "gpt", "models/", "openai/",
		// LiteLLM prices these at zero, which means "not known" as often as
		// "free": the snapshot leaves them out rather than price them at zero.
		"gemini-exp-1114", "glm-4.5-flash", "meta-llama/Llama-3.3-70B-Instruct-Turbo-Free",
		// Regional variants are LiteLLM's keys, not names an answer reports.
		"eu/gpt-4o-2024-08-06", "us/claude-opus-4-6",
	} {
		t.Run(model, func(t *testing.T) {
			if p, ok := Lookup("", model, ""); ok {
				t.Errorf("Lookup(%q) = %+v, true; want unpriced", model, p)
			}
		})
	}
}

// TestSnapshotInvariants checks what find relies on.
func TestSnapshotInvariants(t *testing.T) {
	if len(snapshot) < 500 {
		t.Fatalf("snapshot has %d rows", len(snapshot))
	}
	providers := []string{
		"openai", "anthropic", "gcp.gemini", "gcp.vertex_ai", "deepseek", "x_ai",
		"mistral_ai", "cohere", "moonshot", "zhipu", "perplexity",
		"azure.ai.openai", "groq", "together", "fireworks", "openrouter",
	}
	seen := map[string]bool{}
	for i, r := range snapshot {
		if r.model != normalize(r.model) || r.model == "" {
			t.Errorf("row %d: model %q is not normalised", i, r.model)
		}
		if !slices.Contains(providers, r.provider) {
			t.Errorf("row %d: unknown provider %q", i, r.provider)
		}
		if r.tier != "" && r.tier != "flex" && r.tier != "priority" {
			t.Errorf("row %d: unknown tier %q", i, r.tier)
		}
		if r.price.Input <= 0 && r.price.Output <= 0 {
			t.Errorf("row %d (%s %s): priced at zero", i, r.provider, r.model)
		}
		if i == 0 {
			continue
		}
		prev := snapshot[i-1]
		switch {
		case prev.model > r.model:
			t.Errorf("row %d: %q sorts before %q", i, r.model, prev.model)
		case prev.model != r.model || prev.provider != r.provider:
			// A new group of rows starts with the standard tier.
			if r.tier != "" {
				t.Errorf("row %d: %s %s starts with tier %q", i, r.provider, r.model, r.tier)
			}
			key := r.model + " " + r.provider
			if seen[key] {
				t.Errorf("row %d: a second group for %s", i, key)
			}
			seen[key] = true
		case prev.tier >= r.tier:
			t.Errorf("row %d: %s %s tier %q after %q", i, r.provider, r.model, r.tier, prev.tier)
		}
	}
	if len(SnapshotCommit) != 40 || strings.Trim(SnapshotCommit, "0123456789abcdef") != "" {
		t.Errorf("SnapshotCommit = %q", SnapshotCommit)
	}
}

func TestTable(t *testing.T) {
	mine := Price{Input: 1_000_000, Output: 2_000_000}
	table := Table{"gpt-4o": mine, "my-model": mine}
	tests := []struct {
		name  string
		f     Func
		model string
		want  Price
		ok    bool
	}{
		{"table", table.Lookup, "my-model", mine, true},
		{"table case", table.Lookup, "My-Model", mine, true},
		{"table dated", table.Lookup, "gpt-4o-2024-08-06", mine, true},
		{"table replaces the snapshot", table.Lookup, "o3", Price{}, false},
		{"chain: table first", Chain(table.Lookup, Lookup), "gpt-4o", mine, true},
		{"chain: snapshot for the rest", Chain(table.Lookup, Lookup), "o3", Price{Input: 2_000_000, CachedInput: 500_000, Output: 8_000_000}, true},
		{"chain skips nil", Chain(nil, table.Lookup), "my-model", mine, true},
		{"empty chain", Chain(), "gpt-4o", Price{}, false},
		{"nil table", Table(nil).Lookup, "gpt-4o", Price{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.f("openai", tt.model, "")
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestChainKeepsItsOwnFuncs(t *testing.T) {
	fs := []Func{Table{"a": {Input: 1}}.Lookup}
	f := Chain(fs...)
	fs[0] = Table{"a": {Input: 2}}.Lookup
	if p, _ := f("", "a", ""); p.Input != 1 {
		t.Errorf("Chain follows a change to the caller's slice: Input = %d", p.Input)
	}
}

func FuzzLookup(f *testing.F) {
	f.Add("openai", "gpt-4o-2024-08-06", "flex")
	f.Add("", "models/gemini-2.5-pro", "")
	f.Add("gcp.vertex_ai", "claude-sonnet-4-5@20250929", "priority")
	f.Add("groq", "-20250929", "")
	f.Fuzz(func(t *testing.T, provider, model, tier string) {
		p, ok := Lookup(provider, model, tier)
		if ok && p.Input <= 0 && p.Output <= 0 {
			t.Errorf("Lookup(%q, %q, %q) priced at zero", provider, model, tier)
		}
		if !ok && p != (Price{}) {
			t.Errorf("Lookup(%q, %q, %q) = %+v with false", provider, model, tier, p)
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := Lookup("openai", "gpt-4o-mini-2024-07-18", "default"); !ok {
			b.Fatal("not found")
		}
	}
}
