package prices

import (
	"math"
	"testing"
)

func mustLookup(t *testing.T, provider, model string) Price {
	t.Helper()
	p, ok := Lookup(provider, model, "")
	if !ok {
		t.Fatalf("Lookup(%q, %q) found nothing", provider, model)
	}
	return p
}

// Each want is computed by hand in its comment, in micro-dollars: a rate of
// R micro-dollars per million tokens makes N tokens cost N×R/1e6.
func TestCost(t *testing.T) {
	gpt4o := mustLookup(t, "openai", "gpt-4o-2024-08-06")      // 2.50 in, 1.25 cached, 10 out ($ per million)
	o4mini := mustLookup(t, "openai", "o4-mini-2025-04-16")    // 1.10 in, 0.275 cached, 4.40 out
	sonnet := mustLookup(t, "anthropic", "claude-sonnet-4-5")  // 3 in, 0.30 read, 3.75 write, 15 out; ×2 in, ×1.5 out past 200k
	opus := mustLookup(t, "anthropic", "claude-opus-4-6")      // 5 in, 6.25 write, 10 one-hour write
	mini := mustLookup(t, "openai", "gpt-4o-mini")             // 0.15 in
	embed := mustLookup(t, "openai", "text-embedding-3-small") // 0.02 in, no output price

	tests := []struct {
		name  string
		price Price
		tok   Tokens
		want  int64
	}{
		{
			// OpenAI prompt_tokens 10000 of which cached_tokens 4000, completion_tokens 1500:
			// 6000×2.5 + 4000×1.25 + 1500×10 = 15000 + 5000 + 15000
			name: "openai cached input", price: gpt4o,
			tok:  Tokens{Input: 10_000, CacheRead: 4_000, Output: 1_500},
			want: 35_000,
		},
		{
			// completion_tokens 3000, of which reasoning_tokens 2500, is all of the output:
			// 2000×1.1 + 3000×4.4 = 2200 + 13200
			name: "reasoning inside output", price: o4mini,
			tok:  Tokens{Input: 2_000, Output: 3_000},
			want: 15_400,
		},
		{
			// Anthropic input_tokens 100, cache_read_input_tokens 20000,
			// cache_creation_input_tokens 5000, output_tokens 800, so Input = 25100:
			// 100×3 + 20000×0.3 + 5000×3.75 + 800×15 = 300 + 6000 + 18750 + 12000
			name: "anthropic cache read and write", price: sonnet,
			tok:  Tokens{Input: 25_100, CacheRead: 20_000, CacheWrite: 5_000, Output: 800},
			want: 37_050,
		},
		{
			// cache_creation_input_tokens 10000, of which ephemeral_1h 4000:
			// 6000×6.25 + 4000×10 = 37500 + 40000
			name: "anthropic one-hour cache write", price: opus,
			tok:  Tokens{Input: 10_000, CacheWrite: 10_000, CacheWrite1h: 4_000},
			want: 77_500,
		},
		{
			// 200000 input tokens is not past 200k: 200000×3 + 1000×15
			name: "at the long-context threshold", price: sonnet,
			tok:  Tokens{Input: 200_000, Output: 1_000},
			want: 615_000,
		},
		{
			// past it, the whole request at the long rates:
			// (200001-100000)×6 + 100000×0.6 + 1000×22.5 = 600006 + 60000 + 22500
			name: "past the long-context threshold", price: sonnet,
			tok:  Tokens{Input: 200_001, CacheRead: 100_000, Output: 1_000},
			want: 682_506,
		},
		{
			// 1 token × 0.15 = 0.15 micro-dollars, rounded up
			name: "rounds up", price: mini,
			tok:  Tokens{Input: 1},
			want: 1,
		},
		{
			// 1000000 × 0.02 = 20000 micro-dollars, two cents
			name: "embedding", price: embed,
			tok:  Tokens{Input: 1_000_000},
			want: 20_000,
		},
		{
			name: "nothing", price: gpt4o,
			want: 0,
		},
		{
			// No cache rates: cached and written tokens cost Input.
			// 1000×1 + 10×2
			name: "cache rates fall back to input", price: Price{Input: 1_000_000, Output: 2_000_000},
			tok:  Tokens{Input: 1_000, CacheRead: 500, CacheWrite: 200, Output: 10},
			want: 1_020,
		},
		{
			// No one-hour rate: the five-minute one. 1000×1.25
			name: "one-hour write falls back to write", price: Price{Input: 1_000_000, CacheWrite: 1_250_000},
			tok:  Tokens{Input: 1_000, CacheWrite: 1_000, CacheWrite1h: 1_000},
			want: 1_250,
		},
		{
			// Past 100 tokens, LongInput 2; LongCachedInput is zero, so CachedInput 0.1
			// stays; Output has no long rate: 100×2 + 100×0.1 + 10×1
			name: "long rates fall back one by one", price: Price{Input: 1_000_000, CachedInput: 100_000, Output: 1_000_000, LongContext: 100, LongInput: 2_000_000},
			tok:  Tokens{Input: 200, CacheRead: 100, Output: 10},
			want: 220,
		},
		{
			// Past 100 tokens with no cache rate at all: cached tokens cost LongInput.
			// 200×2
			name: "cache falls back to the long input rate", price: Price{Input: 1_000_000, LongContext: 100, LongInput: 2_000_000},
			tok:  Tokens{Input: 200, CacheRead: 100},
			want: 400,
		},
		{
			name: "negative counts are zero", price: gpt4o,
			tok:  Tokens{Input: -5, CacheRead: -1, CacheWrite: -1, CacheWrite1h: -1, Output: -7},
			want: 0,
		},
		{
			// A CacheRead larger than Input stands: 100×1.25
			name: "input smaller than its parts", price: gpt4o,
			tok:  Tokens{Input: 10, CacheRead: 100},
			want: 125,
		},
		{
			// CacheWrite1h beyond CacheWrite counts as CacheWrite: 10×10
			name: "one-hour part larger than the whole", price: opus,
			tok:  Tokens{Input: 10, CacheWrite: 10, CacheWrite1h: 50},
			want: 100,
		},
		{
			name: "negative rates are zero", price: Price{Input: -1_000_000, Output: 1_000_000},
			tok:  Tokens{Input: 1_000, Output: 1_000},
			want: 1_000,
		},
		{
			name: "saturates", price: Price{Input: math.MaxInt64, Output: math.MaxInt64},
			tok:  Tokens{Input: math.MaxInt64, Output: math.MaxInt64},
			want: math.MaxInt64,
		},
		{
			name: "saturates past 128 bits", price: Price{Input: math.MaxInt64, CachedInput: math.MaxInt64, CacheWrite: math.MaxInt64, CacheWrite1h: math.MaxInt64, Output: math.MaxInt64},
			tok:  Tokens{Input: math.MaxInt64, CacheRead: math.MaxInt64 / 2, CacheWrite: math.MaxInt64 / 2, CacheWrite1h: math.MaxInt64 / 4, Output: math.MaxInt64},
			want: math.MaxInt64,
		},
		{
			// 2^63-1 tokens at 1 micro-dollar per million: just fits.
			name: "largest exact", price: Price{Input: 1},
			tok:  Tokens{Input: math.MaxInt64},
			want: (math.MaxInt64 + 999_999) / 1_000_000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.price.Cost(tt.tok); got != tt.want {
				t.Errorf("Cost(%+v) = %d; want %d", tt.tok, got, tt.want)
			}
		})
	}
}

// TestCostCountsOnce guards against the usual double counting: adding the
// cached tokens to Input, or the reasoning tokens to Output, raises the cost.
func TestCostCountsOnce(t *testing.T) {
	p := mustLookup(t, "openai", "o3")
	right := p.Cost(Tokens{Input: 10_000, CacheRead: 8_000, Output: 5_000}) // 5000 output, 4000 of them reasoning
	for name, wrong := range map[string]Tokens{
		"cached added to input":     {Input: 18_000, CacheRead: 8_000, Output: 5_000},
		"reasoning added to output": {Input: 10_000, CacheRead: 8_000, Output: 9_000},
		"cached not taken out":      {Input: 10_000, Output: 5_000},
	} {
		t.Run(name, func(t *testing.T) {
			if got := p.Cost(wrong); got == right {
				t.Errorf("Cost(%+v) = %d, the same as the right count", wrong, got)
			}
		})
	}
	// 2000×2 + 8000×0.5 + 5000×8 = 4000 + 4000 + 40000
	if right != 48_000 {
		t.Errorf("Cost = %d; want 48000", right)
	}
}

func FuzzCost(f *testing.F) {
	f.Add(int64(2_500_000), int64(1_250_000), int64(0), int64(0), int64(10_000_000), int64(0), int64(10_000), int64(4_000), int64(0), int64(0), int64(1_500))
	f.Add(int64(3_000_000), int64(300_000), int64(3_750_000), int64(6_000_000), int64(15_000_000), int64(200_000), int64(250_000), int64(1), int64(2), int64(1), int64(3))
	f.Fuzz(func(t *testing.T, in, cached, write, write1h, out, long, tin, tread, twrite, twrite1h, tout int64) {
		p := Price{Input: in, CachedInput: cached, CacheWrite: write, CacheWrite1h: write1h, Output: out,
			LongContext: long, LongInput: in / 3, LongOutput: out / 3}
		tok := Tokens{Input: tin, CacheRead: tread, CacheWrite: twrite, CacheWrite1h: twrite1h, Output: tout}
		c := p.Cost(tok)
		if c < 0 {
			t.Fatalf("Cost = %d < 0", c)
		}
		// One more output token never lowers the cost.
		if tout >= 0 && tout < math.MaxInt64 {
			tok.Output++
			if c2 := p.Cost(tok); c2 < c {
				t.Fatalf("one more output token: %d < %d", c2, c)
			}
		}
	})
}

func BenchmarkCost(b *testing.B) {
	p, _ := Lookup("anthropic", "claude-sonnet-4-5", "")
	tok := Tokens{Input: 25_100, CacheRead: 20_000, CacheWrite: 5_000, Output: 800}
	b.ReportAllocs()
	for b.Loop() {
		if p.Cost(tok) == 0 {
			b.Fatal("zero")
		}
	}
}

// TestCostFromSnapshot prices answers with the snapshot's prices, each want
// computed by hand from the source data's dollars per million tokens (quoted
// in TestLookupKnownModels), in micro-dollars.
func TestCostFromSnapshot(t *testing.T) {
	tests := []struct {
		name            string
		provider, model string
		tok             Tokens
		want            int64
	}{
		{
			// 60000×1.25 + 40000×0.125 + 20000×10 = 75000 + 5000 + 200000: $0.28
			name: "gpt-5", provider: "openai", model: "gpt-5-2025-08-07",
			tok:  Tokens{Input: 100_000, CacheRead: 40_000, Output: 20_000},
			want: 280_000,
		},
		{
			// 30000×3 + 100000×0.3 + 20000×3.75 + 10000×15 = 90000 + 30000 + 75000 + 150000: $0.345
			name: "claude-sonnet-4-5", provider: "anthropic", model: "claude-sonnet-4-5-20250929",
			tok:  Tokens{Input: 150_000, CacheRead: 100_000, CacheWrite: 20_000, Output: 10_000},
			want: 345_000,
		},
		{
			// 400 one-hour and 200 five-minute cache writes, 400 other input tokens, 100 output:
			// 400×3 + 200×3.75 + 400×6 + 100×15 = 1200 + 750 + 2400 + 1500 (at the
			// five-minute rate the writes would be 600×3.75 = 2250, not 3150)
			name: "one-hour cache writes", provider: "anthropic", model: "claude-sonnet-4-5",
			tok:  Tokens{Input: 1_000, CacheWrite: 600, CacheWrite1h: 400, Output: 100},
			want: 5_850,
		},
		{
			// the same past the 200k tier: 200400×6 + 200×7.5 + 400×12 + 100×22.5
			// = 1202400 + 1500 + 4800 + 2250
			name: "one-hour cache writes past the tier", provider: "anthropic", model: "claude-sonnet-4-5",
			tok:  Tokens{Input: 201_000, CacheWrite: 600, CacheWrite1h: 400, Output: 100},
			want: 1_210_950,
		},
		{
			// gemini-2.5-pro at 200000 input tokens, the base tier: 200000×1.25 + 10000×10
			name: "gemini-2.5-pro base tier", provider: "gcp.gemini", model: "gemini-2.5-pro",
			tok:  Tokens{Input: 200_000, Output: 10_000},
			want: 350_000,
		},
		{
			// past 200000: the whole request at the tier's prices:
			// 200000×2.5 + 100000×0.25 + 10000×15 = 500000 + 25000 + 150000
			name: "gemini-2.5-pro past the tier", provider: "gcp.gemini", model: "gemini-2.5-pro",
			tok:  Tokens{Input: 300_000, CacheRead: 100_000, Output: 10_000},
			want: 675_000,
		},
		{
			// groq: 1000000×0.11 + 1000000×0.34
			name: "llama 4 scout on groq", provider: "groq", model: "meta-llama/llama-4-scout-17b-16e-instruct",
			tok:  Tokens{Input: 1_000_000, Output: 1_000_000},
			want: 450_000,
		},
		{
			// together: 1000000×0.18 + 1000000×0.59
			name: "llama 4 scout on together", provider: "together", model: "meta-llama/llama-4-scout-17b-16e-instruct",
			tok:  Tokens{Input: 1_000_000, Output: 1_000_000},
			want: 770_000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustLookup(t, tt.provider, tt.model)
			if got := p.Cost(tt.tok); got != tt.want {
				t.Errorf("Cost(%+v) = %d; want %d", tt.tok, got, tt.want)
			}
		})
	}
}
