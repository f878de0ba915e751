package prices_test

import (
	"fmt"

	"github.com/quotabreaker/quotabreaker/prices"
)

// An OpenAI answer names a dated snapshot and its service tier; its usage
// reports cached tokens inside prompt_tokens and reasoning tokens inside
// completion_tokens, which is how Tokens counts them too.
func ExampleLookup() {
	// "model": "gpt-5-2025-08-07", "service_tier": "default",
	// "usage": {"prompt_tokens": 12000, "completion_tokens": 3000,
	//   "prompt_tokens_details": {"cached_tokens": 10000},
	//   "completion_tokens_details": {"reasoning_tokens": 2500}}
	p, ok := prices.Lookup("openai", "gpt-5-2025-08-07", "default")
	if !ok {
		fmt.Println("unpriced")
		return
	}
	fmt.Printf("$%.3f in, $%.3f cached, $%.2f out per million tokens\n",
		float64(p.Input)/1e6, float64(p.CachedInput)/1e6, float64(p.Output)/1e6)

	cost := p.Cost(prices.Tokens{Input: 12_000, CacheRead: 10_000, Output: 3_000})
	// 2000×1.25 + 10000×0.125 + 3000×10 = 2500 + 1250 + 30000 micro-dollars
	fmt.Printf("%d micro-dollars\n", cost)

	_, ok = prices.Lookup("openai", "my-own-model", "")
	fmt.Println("my-own-model priced:", ok)
	// Output:
	// $1.250 in, $0.125 cached, $10.00 out per million tokens
	// 33750 micro-dollars
	// my-own-model priced: false
}

// Anthropic counts input_tokens without the cache: Tokens.Input is their sum.
func ExamplePrice_Cost() {
	// Claude Sonnet 4.5's list prices, in micro-dollars per million tokens.
	p := prices.Price{Input: 3_000_000, CachedInput: 300_000, CacheWrite: 3_750_000, Output: 15_000_000}

	// "usage": {"input_tokens": 100, "cache_read_input_tokens": 20000,
	//   "cache_creation_input_tokens": 5000, "output_tokens": 800}
	tok := prices.Tokens{
		Input:      100 + 20_000 + 5_000,
		CacheRead:  20_000,
		CacheWrite: 5_000,
		Output:     800,
	}
	// 100×3 + 20000×0.30 + 5000×3.75 + 800×15 = 300 + 6000 + 18750 + 12000
	fmt.Println(p.Cost(tok), "micro-dollars")
	// Output: 37050 micro-dollars
}

// A Table of one's own prices, first, with the snapshot for the rest.
func ExampleChain() {
	mine := prices.Table{
		"gpt-4o":         {Input: 2_000_000, CachedInput: 1_000_000, Output: 8_000_000}, // a negotiated rate
		"my-local-llama": {Input: 10_000, Output: 10_000},
	}
	lookup := prices.Chain(mine.Lookup, prices.Lookup)

	for _, model := range []string{"gpt-4o-2024-08-06", "my-local-llama", "gpt-4o-mini", "unknown"} {
		p, ok := lookup("openai", model, "")
		fmt.Println(model, p.Input, ok)
	}
	// Output:
	// gpt-4o-2024-08-06 2000000 true
	// my-local-llama 10000 true
	// gpt-4o-mini 150000 true
	// unknown 0 false
}
