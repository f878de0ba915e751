package prices

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The expected prices below were read by hand from genai-prices' data.json
// at SnapshotCommit (internal/cmd/genprices/data/genai-prices-data.json);
// each comment quotes the provider, the model and its prices in dollars per
// million tokens. A price of $X per million tokens is X×1e6 here.
func TestLookupKnownModels(t *testing.T) {
	tests := []struct {
		name                  string
		provider, model, tier string
		want                  Price
	}{
		{
			// openai gpt-5: {"equals": "gpt-5"}, input_mtok 1.25, cache_read_mtok 0.125, output_mtok 10
			name: "gpt-5", provider: "openai", model: "gpt-5",
			want: Price{Input: 1_250_000, CachedInput: 125_000, Output: 10_000_000},
		},
		{
			// the same model: {"equals": "gpt-5-2025-08-07"}
			name: "gpt-5 dated", provider: "openai", model: "gpt-5-2025-08-07",
			want: Price{Input: 1_250_000, CachedInput: 125_000, Output: 10_000_000},
		},
		{
			// openai gpt-4o-mini: input 0.15, cache_read 0.075, output 0.6
			name: "gpt-4o-mini", provider: "openai", model: "gpt-4o-mini-2024-07-18",
			want: Price{Input: 150_000, CachedInput: 75_000, Output: 600_000},
		},
		{
			// anthropic claude-sonnet-4-5: {"starts_with": "claude-sonnet-4-5"};
			// input {base 3, tiers [{start 200000, price 6}]}, cache_write {3.75, 7.5},
			// cache_read {0.3, 0.6}, output {15, 22.5}. The one-hour write is
			// derived: twice the input price, 6 and 12.
			name: "claude-sonnet-4-5", provider: "anthropic", model: "claude-sonnet-4-5",
			want: Price{
				Input: 3_000_000, CachedInput: 300_000, CacheWrite: 3_750_000, CacheWrite1h: 6_000_000, Output: 15_000_000,
				LongContext: 200_000, LongInput: 6_000_000, LongCachedInput: 600_000, LongCacheWrite: 7_500_000,
				LongCacheWrite1h: 12_000_000, LongOutput: 22_500_000,
			},
		},
		{
			// anthropic claude-3-haiku: input 0.25, cache_write 0.3 (1.2 times), cache_read 0.03,
			// output 1.25; the one-hour write derived as twice the input, 0.5
			name: "claude-3-haiku one-hour write", provider: "anthropic", model: "claude-3-haiku-20240307",
			want: Price{Input: 250_000, CachedInput: 30_000, CacheWrite: 300_000, CacheWrite1h: 500_000, Output: 1_250_000},
		},
		{
			// google gemini-2.5-pro: input {1.25, [{200000, 2.5}]}, cache_read {0.125, 0.25}, output {10, 15}
			name: "gemini-2.5-pro", provider: "gcp.gemini", model: "models/gemini-2.5-pro",
			want: Price{
				Input: 1_250_000, CachedInput: 125_000, Output: 10_000_000,
				LongContext: 200_000, LongInput: 2_500_000, LongCachedInput: 250_000, LongOutput: 15_000_000,
			},
		},
		{
			// groq meta-llama/llama-4-scout-17b-16e-instruct: input 0.11, output 0.34
			name: "llama 4 scout on groq", provider: "groq", model: "meta-llama/llama-4-scout-17b-16e-instruct",
			want: Price{Input: 110_000, Output: 340_000},
		},
		{
			// together meta-llama/Llama-4-Scout-17B-16E-Instruct: input 0.18, output 0.59
			name: "llama 4 scout on together", provider: "together", model: "meta-llama/Llama-4-Scout-17B-16E-Instruct",
			want: Price{Input: 180_000, Output: 590_000},
		},
		{
			// openrouter openai/gpt-oss-120b: input 0.039, output 0.18
			name: "gpt-oss-120b on openrouter", provider: "openrouter", model: "openai/gpt-oss-120b",
			want: Price{Input: 39_000, Output: 180_000},
		},
		{
			// groq openai/gpt-oss-120b: input 0.15, cache_read 0.075, output 0.6
			name: "gpt-oss-120b on groq", provider: "groq", model: "openai/gpt-oss-120b",
			want: Price{Input: 150_000, CachedInput: 75_000, Output: 600_000},
		},
		{
			// openai text-embedding-3-small: input 0.02, no output price
			name: "embedding", provider: "openai", model: "text-embedding-3-small",
			want: Price{Input: 20_000},
		},
		{
			// service tiers: the source has none, every tier gets the standard price
			name: "flex tier", provider: "openai", model: "gpt-5", tier: "flex",
			want: Price{Input: 1_250_000, CachedInput: 125_000, Output: 10_000_000},
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

// The same model name is priced by the provider that served it.
func TestLookupPerProvider(t *testing.T) {
	// 1M input and 1M output tokens of meta-llama/llama-4-scout-17b-16e-instruct:
	// on Groq 0.11 + 0.34 = $0.45; on Together 0.18 + 0.59 = $0.77.
	tok := Tokens{Input: 1_000_000, Output: 1_000_000}
	for provider, want := range map[string]int64{"groq": 450_000, "together": 770_000} {
		p, ok := Lookup(provider, "meta-llama/llama-4-scout-17b-16e-instruct", "")
		if !ok {
			t.Fatalf("%s: unpriced", provider)
		}
		if got := p.Cost(tok); got != want {
			t.Errorf("%s: Cost = %d micro-dollars; want %d", provider, got, want)
		}
	}
}

func TestLookupAtDates(t *testing.T) {
	day := func(s string) time.Time {
		d, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tests := []struct {
		name            string
		provider, model string
		at              string
		want            Price
	}{
		{
			// anthropic claude-sonnet-5: input 2, cache_write 2.5, cache_read 0.2, output 10;
			// from 2026-09-01: 3, 3.75, 0.3, 15
			name: "before a dated change", provider: "anthropic", model: "claude-sonnet-5", at: "2026-08-31T23:59:59Z",
			want: Price{Input: 2_000_000, CachedInput: 200_000, CacheWrite: 2_500_000, CacheWrite1h: 4_000_000, Output: 10_000_000},
		},
		{
			name: "from a dated change", provider: "anthropic", model: "claude-sonnet-5", at: "2026-09-01T00:00:00Z",
			want: Price{Input: 3_000_000, CachedInput: 300_000, CacheWrite: 3_750_000, CacheWrite1h: 6_000_000, Output: 15_000_000},
		},
		{
			// the date is UTC's: 2026-08-31 20:00 in New York is 2026-09-01 in UTC
			name: "a dated change in UTC", provider: "anthropic", model: "claude-sonnet-5", at: "2026-08-31T20:00:00-04:00",
			want: Price{Input: 3_000_000, CachedInput: 300_000, CacheWrite: 3_750_000, CacheWrite1h: 6_000_000, Output: 15_000_000},
		},
		{
			// openai o3: input 10, cache_read 0.5, output 40; from 2025-06-10: 2, 0.5, 8
			name: "o3 before its price cut", provider: "openai", model: "o3-2025-04-16", at: "2025-06-09T12:00:00Z",
			want: Price{Input: 10_000_000, CachedInput: 500_000, Output: 40_000_000},
		},
		{
			name: "o3 after its price cut", provider: "openai", model: "o3", at: "2025-06-10T00:00:00Z",
			want: Price{Input: 2_000_000, CachedInput: 500_000, Output: 8_000_000},
		},
		{
			// anthropic claude-opus-4-6: tiered at 200k until 2026-03-13, flat from then on
			name: "a tier that ends", provider: "anthropic", model: "claude-opus-4-6", at: "2026-03-12T00:00:00Z",
			want: Price{
				Input: 5_000_000, CachedInput: 500_000, CacheWrite: 6_250_000, CacheWrite1h: 10_000_000, Output: 25_000_000,
				LongContext: 200_000, LongInput: 10_000_000, LongCachedInput: 1_000_000, LongCacheWrite: 12_500_000,
				LongCacheWrite1h: 20_000_000, LongOutput: 37_500_000,
			},
		},
		{
			name: "after the tier ends", provider: "anthropic", model: "claude-opus-4-6", at: "2026-03-13T00:00:00Z",
			want: Price{Input: 5_000_000, CachedInput: 500_000, CacheWrite: 6_250_000, CacheWrite1h: 10_000_000, Output: 25_000_000},
		},
		{
			// deepseek deepseek-chat: off-peak input 0.135, cache_read 0.035, output 0.55;
			// from 00:30 to 16:30 UTC: 0.27, 0.07, 1.1
			name: "deepseek at peak", provider: "deepseek", model: "deepseek-chat", at: "2026-10-01T00:30:00Z",
			want: Price{Input: 270_000, CachedInput: 70_000, Output: 1_100_000},
		},
		{
			name: "deepseek off-peak", provider: "deepseek", model: "deepseek-chat", at: "2026-10-01T16:30:00Z",
			want: Price{Input: 135_000, CachedInput: 35_000, Output: 550_000},
		},
		{
			name: "deepseek just before peak", provider: "deepseek", model: "deepseek-chat", at: "2026-10-01T00:29:59Z",
			want: Price{Input: 135_000, CachedInput: 35_000, Output: 550_000},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := LookupAt(tt.provider, tt.model, "", day(tt.at))
			if !ok || got != tt.want {
				t.Errorf("LookupAt(%q, %q, %s) = %+v, %v; want %+v, true", tt.provider, tt.model, tt.at, got, ok, tt.want)
			}
		})
	}
	// Lookup is LookupAt now.
	now, _ := LookupAt("anthropic", "claude-sonnet-5", "", time.Now())
	if p, _ := Lookup("anthropic", "claude-sonnet-5", ""); p != now {
		t.Errorf("Lookup = %+v; LookupAt now = %+v", p, now)
	}
}

func TestLookupNames(t *testing.T) {
	price := func(provider, model string) Price {
		t.Helper()
		p, ok := Lookup(provider, model, "")
		if !ok {
			t.Fatalf("Lookup(%q, %q) found nothing", provider, model)
		}
		return p
	}
	tests := []struct {
		name            string
		provider, model string
		same            Price // the price Lookup must give
	}{
		{"case", "openai", "GPT-5", price("openai", "gpt-5")},
		{"spaces", "openai", " gpt-5\n", price("openai", "gpt-5")},
		{"provider case", "OpenAI", "gpt-5", price("openai", "gpt-5")},
		{"unknown date -YYYY-MM-DD", "openai", "gpt-5-2099-01-01", price("openai", "gpt-5")},
		{"unknown date -YYYYMMDD", "anthropic", "claude-sonnet-4-5-20991231", price("anthropic", "claude-sonnet-4-5")},
		{"dated snapshot by prefix", "anthropic", "claude-sonnet-4-5-20250929", price("anthropic", "claude-sonnet-4-5")},
		{"@ date", "anthropic", "claude-sonnet-4-5@20250929", price("anthropic", "claude-sonnet-4-5")},
		// Google's own entry for Claude Sonnet 4 and 4.5 ({"contains": "claude-sonnet-4"}) is flat.
		{"vertex @ date", "gcp.vertex_ai", "claude-sonnet-4-5@20250929", Price{Input: 3_000_000, CachedInput: 300_000, CacheWrite: 3_750_000, CacheWrite1h: 6_000_000, Output: 15_000_000}},
		{"vertex is google", "gcp.vertex_ai", "gemini-2.5-pro", price("gcp.gemini", "gemini-2.5-pro")},
		{"the source's own provider id", "google", "gemini-2.5-pro", price("gcp.gemini", "gemini-2.5-pro")},
		{"fine-tune by the source's matcher", "openai", "ft:gpt-4o-mini-2024-07-18:my-org::9AbCdEf", price("openai", "ft:gpt-4o-mini-2024-07-18")},
		{"no provider takes the maker", "", "gpt-4o-mini", price("openai", "gpt-4o-mini")},
		{"unknown provider takes the maker", "siliconflow", "deepseek-reasoner", price("deepseek", "deepseek-reasoner")},
		{"provider without the model takes the maker", "groq", "gpt-5", price("openai", "gpt-5")},
		{"azure falls back to openai", "azure.ai.openai", "gpt-5-pro", price("openai", "gpt-5-pro")},
		{"no provider, one host", "", "llama-3.3-70b-versatile", price("groq", "llama-3.3-70b-versatile")},
		{"regex matcher", "x_ai", "grok-4.3-20260101", price("x_ai", "grok-4.3")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Lookup(tt.provider, tt.model, "")
			if !ok || got != tt.same {
				t.Errorf("Lookup(%q, %q) = %+v, %v; want %+v, true", tt.provider, tt.model, got, ok, tt.same)
			}
		})
	}
	// The provider matters where prices differ.
	if a, b := price("openai", "gpt-4o"), price("openrouter", "openai/gpt-4o"); a.Input == 0 || b.Input == 0 {
		t.Errorf("gpt-4o: %+v, %+v", a, b)
	}
	if a, b := price("anthropic", "claude-sonnet-4-5"), price("aws.bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"); b.Input != 3_300_000 || a.Input != 3_000_000 {
		// aws regional.anthropic.claude-sonnet-4-5-20250929-v1:0, {"contains": "us.anthropic.claude-sonnet-4-5-20250929"}: input 3.3
		t.Errorf("Bedrock's regional price %+v, Anthropic's %+v", b, a)
	}
}

// Within a provider the first model whose matcher accepts a name wins, as in
// the source: "claude-sonnet-4-5" is not "claude-sonnet-4" (which starts it),
// and "gpt-5-mini" is not "gpt-5".
func TestLookupFirstMatchWins(t *testing.T) {
	for _, tt := range []struct{ provider, model, id string }{
		{"anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"},
		{"anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4-0"},
		{"anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"},
		{"openai", "gpt-5-mini", "gpt-5-mini"},
		{"openai", "gpt-5", "gpt-5"},
		{"gcp.gemini", "gemini-2.5-flash-lite", "gemini-2.5-flash-lite"},
		{"gcp.gemini", "gemini-2.5-flash", "gemini-2.5-flash"},
	} {
		p, ok := providerIndex(tt.provider)
		if !ok {
			t.Fatalf("no provider %q", tt.provider)
		}
		m := find(p, normalize(tt.model))
		if m < 0 {
			t.Errorf("%s %s: no model", tt.provider, tt.model)
			continue
		}
		if id := modelID(m); id != tt.id {
			t.Errorf("%s %s: model %s; want %s", tt.provider, tt.model, id, tt.id)
		}
	}
}

// TestIndexFindsAsFind: the index a lookup reads (see index) gives, for
// every provider, the model find gives from the snapshot's tables, for
// every exact name, every model's id and every string of a rule, each also
// with a date suffix, an organisation before it and a byte changed.
func TestIndexFindsAsFind(t *testing.T) {
	x := snapshotIndex()
	names := map[string]bool{}
	add := func(s string) {
		s = normalize(s)
		if s == "" {
			return
		}
		for _, v := range []string{s, s + "-2025-01-31", "openai/" + s, s[:len(s)-1] + "x", "x" + s[1:], s[1:]} {
			if v != "" {
				names[v] = true
			}
		}
	}
	for _, e := range exact {
		add(e.name)
	}
	for _, m := range models {
		add(m.id)
	}
	var clauses func(c *clause)
	clauses = func(c *clause) {
		add(c.s)
		for i := range c.sub {
			clauses(&c.sub[i])
		}
	}
	for i := range rules {
		clauses(&rules[i].match)
	}
	hits := 0
	for name := range names {
		r := x.names[name]
		for p := range providers {
			if got, want := x.find(p, name, x.hits[r[0]:r[1]]), find(p, name); got != want {
				t.Errorf("provider %d, %q: index gives %d, find %d", p, name, got, want)
			}
		}
		hits += int(r[1] - r[0])
	}
	if hits < len(exact) {
		t.Errorf("%d hits for the %d rows of exact", hits, len(exact))
	}
}

func TestLookupUnknown(t *testing.T) {
	for _, model := range []string{
		"", " ", "my-fine-tune", "my-own-model", "gpt", "models/", "openai/", "-2024-08-06",
		// The source lists these without any token price: unpriced, not free,
		// and not priced as the paid model of the same name elsewhere.
		"openai/gpt-oss-120b:free", "deepseek/deepseek-r1:free",
	} {
		t.Run(model, func(t *testing.T) {
			for _, provider := range []string{"", "openai", "openrouter"} {
				if p, ok := Lookup(provider, model, ""); ok {
					t.Errorf("Lookup(%q, %q) = %+v, true; want unpriced", provider, model, p)
				}
			}
		})
	}
}

// TestSnapshotInvariants checks what find relies on.
func TestSnapshotInvariants(t *testing.T) {
	if len(models) < 1000 || len(providers) < 30 {
		t.Fatalf("%d models of %d providers", len(models), len(providers))
	}
	if len(providers) > 64 {
		t.Fatalf("%d providers do not fit query.tried", len(providers))
	}
	for i := 1; i < len(exact); i++ {
		a, b := exact[i-1], exact[i]
		if a.name > b.name || a.name == b.name && a.provider >= b.provider {
			t.Errorf("exact %d: %q %d after %q %d", i, b.name, b.provider, a.name, a.provider)
		}
	}
	for _, e := range exact {
		if e.name != normalize(e.name) || strings.Contains(e.name, "@") {
			t.Errorf("exact name %q is not normalised", e.name)
		}
		if int(e.provider) >= len(providers) || int(e.model) >= len(models) {
			t.Errorf("exact name %q: out of range", e.name)
		}
	}
	for p, pr := range providers {
		if pr.rules[0] > pr.rules[1] || int(pr.rules[1]) > len(rules) || p > 0 && providers[p-1].rules[1] != pr.rules[0] {
			t.Errorf("provider %s: rules %v", pr.id, pr.rules)
		}
		ms := rules[pr.rules[0]:pr.rules[1]]
		if !slices.IsSortedFunc(ms, func(a, b rule) int { return int(a.model) - int(b.model) }) {
			t.Errorf("provider %s: rules out of model order", pr.id)
		}
	}
	for i, m := range models {
		if m.priced && m.price.Input <= 0 && m.price.Output <= 0 {
			t.Errorf("model %d: priced at zero", i)
		}
		if !m.priced && m.price != (Price{}) {
			t.Errorf("model %d: unpriced with %+v", i, m.price)
		}
	}
	for i := 1; i < len(changes); i++ {
		if changes[i-1].model > changes[i].model {
			t.Errorf("changes %d out of order", i)
		}
	}
	names := Providers()
	if !slices.IsSorted(names) {
		t.Errorf("Providers() not sorted")
	}
	for _, want := range []string{
		"openai", "anthropic", "gcp.gemini", "gcp.vertex_ai", "deepseek", "x_ai",
		"mistral_ai", "cohere", "moonshot", "zhipu", "perplexity",
		"azure.ai.openai", "groq", "together", "fireworks", "openrouter", "aws.bedrock",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("Providers() lacks %q", want)
		}
	}
	if len(SnapshotCommit) != 40 || strings.Trim(SnapshotCommit, "0123456789abcdef") != "" {
		t.Errorf("SnapshotCommit = %q", SnapshotCommit)
	}
	if _, err := time.Parse(time.DateOnly, SnapshotDate); err != nil {
		t.Errorf("SnapshotDate = %q", SnapshotDate)
	}
	if !regexp.MustCompile(`^https://github\.com/pydantic/genai-prices/blob/` + SnapshotCommit + `/`).MatchString(Source) {
		t.Errorf("Source = %q", Source)
	}
}

// modelID says which model of the source models[m] is.
func modelID(m int) string { return models[m].id }

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
		{"table replaces the snapshot", table.Lookup, "gpt-5", Price{}, false},
		{"chain: table first", Chain(table.Lookup, Lookup), "gpt-4o", mine, true},
		{"chain: snapshot for the rest", Chain(table.Lookup, Lookup), "gpt-5", Price{Input: 1_250_000, CachedInput: 125_000, Output: 10_000_000}, true},
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

func TestLookupDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop the regexp package's matchers")
	}
	for _, c := range [][2]string{
		{"openai", "gpt-4o-mini-2024-07-18"},
		{"anthropic", "claude-sonnet-4-5-20250929"},
		{"x_ai", "grok-4.3-20260101"}, // a regular expression
		{"", "my-own-model"},          // every provider's rules
		{"deepseek", "deepseek-chat"}, // a price by the time of day
	} {
		if n := testing.AllocsPerRun(100, func() { Lookup(c[0], c[1], "") }); n != 0 {
			t.Errorf("Lookup(%q, %q): %v allocations", c[0], c[1], n)
		}
	}
}

func FuzzLookup(f *testing.F) {
	f.Add("openai", "gpt-4o-2024-08-06", "flex")
	f.Add("", "models/gemini-2.5-pro", "")
	f.Add("gcp.vertex_ai", "claude-sonnet-4-5@20250929", "priority")
	f.Add("groq", "-20250929", "")
	f.Add("x_ai", "grok-4.5-20260101", "")
	f.Add("", "x-ai/grok-4.3-20260101", "")
	f.Add("", "magistral-medium-2506", "")
	f.Add("", "my-own-model", "")
	regexes := regexClauses()
	f.Fuzz(func(t *testing.T, provider, model, tier string) {
		// A regular expression runs only on a name that holds its need:
		// every name it accepts must.
		for _, c := range regexes {
			for _, name := range []string{model, normalize(model)} {
				if c.re.MatchString(name) && !strings.Contains(name, c.need) {
					t.Errorf("%q accepts %q, which lacks %q", c.s, name, c.need)
				}
			}
		}
		p, ok := Lookup(provider, model, tier)
		if ok && p.Input <= 0 && p.Output <= 0 {
			t.Errorf("Lookup(%q, %q, %q) priced at zero", provider, model, tier)
		}
		if !ok && p != (Price{}) {
			t.Errorf("Lookup(%q, %q, %q) = %+v with false", provider, model, tier, p)
		}
		if name := normalize(model); name != "" {
			x := snapshotIndex()
			r := x.names[name]
			for p := range providers {
				if got, want := x.find(p, name, x.hits[r[0]:r[1]]), find(p, name); got != want {
					t.Errorf("provider %d, %q: index gives %d, find %d", p, name, got, want)
				}
			}
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

func BenchmarkLookupUnknown(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := Lookup("", "my-own-model", ""); ok {
			b.Fatal("found")
		}
	}
}

// regexClauses returns the snapshot's regular expressions, in the makers'
// matchers and in the rules.
func regexClauses() []*clause {
	var out []*clause
	var walk func(c *clause)
	walk = func(c *clause) {
		if c.op == opRegex {
			out = append(out, c)
		}
		for i := range c.sub {
			walk(&c.sub[i])
		}
	}
	for i := range providers {
		walk(&providers[i].maker)
	}
	for i := range rules {
		walk(&rules[i].match)
	}
	return out
}

// TestRegexNeeds: the snapshot's regular expressions carry their needs, and
// the ones it has accept what they did.
func TestRegexNeeds(t *testing.T) {
	res := regexClauses()
	if len(res) == 0 {
		t.Fatal("no regular expression in the snapshot")
	}
	for _, c := range res {
		if c.need == "" && c.s != "^o[134]" {
			t.Errorf("%q has no need", c.s)
		}
	}
	for _, c := range [][2]string{
		{"", "codestral-2501"}, {"", "magistral-medium-2506"}, // Mistral's maker
		{"", "o3-pro"},                                                                                                            // OpenAI's
		{"x_ai", "grok-4.3-20260101"}, {"gcp.gemini", "gemini-3.5-flash-001"}, {"openrouter", "google/gemini-3.5-flash-20260101"}, // rules
	} {
		if _, ok := Lookup(c[0], c[1], ""); !ok {
			t.Errorf("Lookup(%q, %q) found nothing", c[0], c[1])
		}
	}
}
