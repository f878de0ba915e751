package prices

import (
	"math"
	"math/bits"
)

// Price is what one model costs at one service tier. Every rate is in
// micro-dollars per million tokens, which is also pico-dollars (1e-12 USD)
// per token: $2.50 per million tokens is 2_500_000. The zero Price prices
// everything at zero; Lookup never returns one.
//
// A zero cache rate means the provider sets no separate price for that kind
// of token, and Cost falls back as the providers bill: cache reads and cache
// writes at the Input rate, one-hour cache writes at the CacheWrite rate.
// Input and Output have no fallback: zero there means free.
type Price struct {
	// Input is the rate of an input token that is neither read from nor
	// written to the prompt cache.
	Input int64
	// CachedInput is the rate of an input token read from the prompt
	// cache (OpenAI's cached_tokens, Anthropic's cache_read_input_tokens).
	CachedInput int64
	// CacheWrite is the rate of an input token written to the prompt cache
	// (Anthropic's cache_creation_input_tokens, five-minute lifetime).
	CacheWrite int64
	// CacheWrite1h is the rate of an input token written to the prompt
	// cache with a one-hour lifetime (Anthropic's ephemeral_1h_input_tokens).
	CacheWrite1h int64
	// Output is the rate of an output token, reasoning tokens included.
	Output int64

	// LongContext, when positive, is an input size in tokens. A request
	// whose input (Tokens.Input, cached tokens included) exceeds it is
	// billed wholly at the Long rates below, as the source data's
	// prompt-size tiers say: past 200,000 input tokens for some of
	// Anthropic's and Google's models, past 272,000 for some of OpenAI's.
	// A zero Long rate keeps the rate above.
	LongContext int64
	// LongInput, LongCachedInput, LongCacheWrite, LongCacheWrite1h and
	// LongOutput replace Input, CachedInput, CacheWrite, CacheWrite1h and
	// Output past LongContext.
	LongInput, LongCachedInput, LongCacheWrite, LongCacheWrite1h, LongOutput int64
}

// Tokens counts the tokens of one answer, normalised across providers as
// OpenTelemetry's GenAI conventions count them. Each field after Input is a
// part of Input or of Output, never an addition to them: a cached token is
// counted in both Input and CacheRead, and priced once.
type Tokens struct {
	// Input is every input token, cached ones included: OpenAI's
	// prompt_tokens or input_tokens; Anthropic's input_tokens plus
	// cache_read_input_tokens plus cache_creation_input_tokens; Gemini's
	// promptTokenCount.
	Input int64
	// CacheRead is the part of Input read from the prompt cache (OpenAI's
	// cached_tokens, Anthropic's cache_read_input_tokens, Gemini's
	// cachedContentTokenCount).
	CacheRead int64
	// CacheWrite is the part of Input written to the prompt cache
	// (Anthropic's cache_creation_input_tokens), one-hour writes included.
	CacheWrite int64
	// CacheWrite1h is the part of CacheWrite written with a one-hour
	// lifetime (Anthropic's cache_creation.ephemeral_1h_input_tokens).
	CacheWrite1h int64
	// Output is every output token, reasoning included: OpenAI's
	// completion_tokens or output_tokens, Anthropic's output_tokens, Gemini's
	// candidatesTokenCount plus thoughtsTokenCount (Gemini counts thoughts
	// apart). Reasoning tokens are billed at the output rate and have no field
	// here: adding OpenAI's reasoning_tokens to Output would count them twice.
	Output int64
}

// Cost returns what the tokens cost at p, in micro-dollars, rounded up to a
// whole micro-dollar so that a sum of costs never falls short of the bill.
// It is computed as:
//
//	(Input - CacheRead - CacheWrite) × Input rate
//	+ CacheRead × CachedInput rate
//	+ (CacheWrite - CacheWrite1h) × CacheWrite rate
//	+ CacheWrite1h × CacheWrite1h rate
//	+ Output × Output rate
//
// with the Long rates past LongContext and the fallbacks that Price
// describes. Cost never panics: negative counts or rates count as zero, an
// Input smaller than CacheRead plus CacheWrite counts as their sum,
// CacheWrite1h counts at most CacheWrite, and a result past math.MaxInt64
// is math.MaxInt64.
func (p Price) Cost(t Tokens) int64 {
	read, write, out := pos(t.CacheRead), pos(t.CacheWrite), pos(t.Output)
	write1h := min(pos(t.CacheWrite1h), write)
	input := max(pos(t.Input), sat(read+write))
	uncached := max(input-read-write, 0)

	in, cached, cw, cw1h, o := p.Input, p.CachedInput, p.CacheWrite, p.CacheWrite1h, p.Output
	if p.LongContext > 0 && input > p.LongContext {
		in, cached, cw, cw1h, o = or(p.LongInput, in), or(p.LongCachedInput, cached),
			or(p.LongCacheWrite, cw), or(p.LongCacheWrite1h, cw1h), or(p.LongOutput, o)
	}
	in, o = pos(in), pos(o)
	cached = or(pos(cached), in)
	cw = or(pos(cw), in)
	cw1h = or(pos(cw1h), cw)

	// The sum of products is in pico-dollars and may not fit in 64 bits.
	var s sum
	s.add(uncached, in)
	s.add(read, cached)
	s.add(write-write1h, cw)
	s.add(write1h, cw1h)
	s.add(out, o)
	return s.micros()
}

// sum is an unsigned 128-bit accumulator of pico-dollars; over records
// that it overflowed even that.
type sum struct {
	hi, lo uint64
	over   bool
}

// add adds n tokens at rate, both non-negative.
func (s *sum) add(n, rate int64) {
	hi, lo := bits.Mul64(uint64(n), uint64(rate))
	var carry uint64
	s.lo, carry = bits.Add64(s.lo, lo, 0)
	s.hi, carry = bits.Add64(s.hi, hi, carry)
	s.over = s.over || carry != 0
}

// micros divides by a million, rounding up, and saturates at math.MaxInt64.
func (s sum) micros() int64 {
	const perMicro = 1e6
	if s.over || s.hi >= perMicro { // the quotient would not fit in 64 bits
		return math.MaxInt64
	}
	q, r := bits.Div64(s.hi, s.lo, perMicro)
	if r != 0 {
		q++ // q < 2^64/1e6 here, so this cannot wrap
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// pos clamps a count or a rate from outside at zero.
func pos(n int64) int64 { return max(n, 0) }

// sat adds without wrapping: its argument is a sum of two non-negative
// int64s, which is negative only when it overflowed.
func sat(n int64) int64 {
	if n < 0 {
		return math.MaxInt64
	}
	return n
}

// or returns rate, or fallback when rate is zero.
func or(rate, fallback int64) int64 {
	if rate == 0 {
		return fallback
	}
	return rate
}
