// Package prices turns the tokens an LLM answer reports into money.
//
// It holds a dated snapshot of per-token prices for the models of the
// providers that quotabreaker recognises (OpenAI, Azure OpenAI, Anthropic,
// Gemini and Vertex AI, DeepSeek, xAI, Mistral, Cohere, Moonshot, Zhipu,
// Perplexity, Groq, Together, Fireworks and OpenRouter), generated from
// LiteLLM's public price table (see SnapshotDate and SnapshotCommit). It
// imports only the standard library.
//
// Money is integer micro-dollars (1e-6 USD), so that sums are exact. A Price
// gives each rate in micro-dollars per million tokens, the unit of the
// providers' own price pages times a million: $2.50 per million input tokens
// is Input: 2_500_000.
//
// Lookup finds a model's price by the name an answer reports, dated snapshot
// names included ("gpt-4o-2024-08-06", "claude-sonnet-4-5-20250929"), by the
// provider that served it and by the service tier the answer reports. A model
// that Lookup does not know is unpriced: it reports false, and a caller should
// count its tokens and report the cost as unknown, never as zero. A Table of
// one's own prices can take the snapshot's place, or take precedence over it
// with Chain.
//
// Prices change, and the snapshot does not: it is as current as SnapshotDate.
// It copies LiteLLM's figures as they are, mistakes included; a Table
// corrects one. Tokens that no field of Tokens counts apart (audio, images)
// are priced as text tokens, and fees that are not per token (a web search,
// a Perplexity request) are not priced.
package prices
