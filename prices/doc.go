// Package prices turns the tokens an LLM answer reports into money.
//
// It holds a dated snapshot of per-token prices of 34 providers (OpenAI,
// Azure OpenAI, Anthropic, Google's Gemini and Vertex AI, AWS Bedrock,
// DeepSeek, xAI, Mistral, Cohere, Moonshot, Zhipu, MiniMax, Perplexity,
// Groq, Together, Fireworks, Cerebras, OpenRouter and more), generated from
// pydantic's genai-prices data (see SnapshotDate, SnapshotCommit and Source).
// It imports only the standard library.
//
// Money is integer micro-dollars (1e-6 USD), so that sums are exact. A Price
// gives each rate in micro-dollars per million tokens, the unit of the
// providers' own price pages times a million: $2.50 per million input tokens
// is Input: 2_500_000.
//
// Lookup finds a model's price by the provider that served it and the name
// an answer reports, as the source data's matchers recognise it, dated
// snapshot names included ("gpt-5-2025-08-07", "claude-sonnet-4-5-20250929").
// The same name can have different prices at different providers (an open
// model at Groq and at Together); a provider that does not price a model
// gives way to the model's maker. A model that Lookup does not know is
// unpriced: it reports false, and a caller should count its tokens and
// report the cost as unknown, never as zero. A Table of one's own prices can
// take the snapshot's place, or take precedence over it with Chain.
//
// Cost applies what the snapshot knows of a provider's billing: cache reads
// and writes at their own rates, one-hour cache writes (Anthropic's
// ephemeral_1h_input_tokens) at theirs, and the higher rates of a prompt
// past a model's size tier (Price.LongContext), which then apply to the
// whole request. Prices that change on a date or with the time of day are
// picked at the time of the lookup (LookupAt).
//
// Prices change, and the snapshot does not: it is as current as SnapshotDate.
// It copies the source's figures as they are, mistakes included; a Table
// corrects one. The source has no prices per service tier (OpenAI's flex and
// priority are priced at the standard rate) and no one-hour cache write
// prices: the snapshot derives those of Claude models from Anthropic's rule,
// twice the input rate. Tokens that no field of Tokens counts apart (audio,
// images) are priced as text tokens, and fees that are not per token (a web
// search, a Perplexity request) are not priced.
package prices
