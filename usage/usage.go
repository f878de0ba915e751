package usage

import (
	"github.com/quotabreaker/quotabreaker/balance"
	"github.com/quotabreaker/quotabreaker/internal/jsonscan"
)

// Tokens is what one answer says it used, in tokens, in one shape for every
// provider. The totals count everything: InputTokens includes the tokens read
// from and written to the provider's prompt cache (as OpenTelemetry's GenAI
// conventions ask), and OutputTokens includes reasoning. The other fields are
// parts of those totals, never added to them:
//
//	CacheReadTokens + CacheWriteTokens <= InputTokens
//	ReasoningTokens <= OutputTokens
//
// always hold. Providers report these numbers in different shapes; usage
// normalises them so that a price per token can be applied without counting
// cached or reasoning tokens twice:
//
//   - OpenAI Chat Completions (and the many servers that copy it):
//     prompt_tokens already includes prompt_tokens_details.cached_tokens and
//     cache_write_tokens; completion_tokens already includes
//     completion_tokens_details.reasoning_tokens.
//   - OpenAI Responses: the same, named input_tokens, input_tokens_details,
//     output_tokens and output_tokens_details.
//   - OpenAI Embeddings: prompt_tokens only.
//   - Anthropic Messages: input_tokens excludes cache_read_input_tokens and
//     cache_creation_input_tokens, so InputTokens is their sum;
//     output_tokens includes output_tokens_details.thinking_tokens.
type Tokens struct {
	InputTokens      int64 `json:"input_tokens"`
	CacheReadTokens  int64 `json:"cache_read_tokens"`
	CacheWriteTokens int64 `json:"cache_write_tokens"`
	OutputTokens     int64 `json:"output_tokens"`
	ReasoningTokens  int64 `json:"reasoning_tokens"`
}

// maxTokenCount bounds a token count read from an answer. No answer has used
// a quadrillion tokens; a larger number is garbage, and the bound keeps every
// sum below overflow.
const maxTokenCount = 1 << 50

// usageField names one counter of a provider's usage object.
type usageField uint8

const (
	uPrompt      usageField = iota // prompt_tokens: all input (Chat Completions, Embeddings)
	uCompletion                    // completion_tokens: all output
	uInput                         // input_tokens: all input (Responses) or uncached input (Anthropic)
	uOutput                        // output_tokens: all output
	uCached                        // {prompt,input}_tokens_details.cached_tokens
	uCacheWrite                    // {prompt,input}_tokens_details.cache_write_tokens
	uReasoning                     // {completion,output}_tokens_details.reasoning_tokens
	uCacheRead                     // cache_read_input_tokens (Anthropic)
	uCacheCreate                   // cache_creation_input_tokens (Anthropic)
	uThinking                      // output_tokens_details.thinking_tokens (Anthropic)
	uCacheHit                      // prompt_cache_hit_tokens (DeepSeek, before it sent prompt_tokens_details)
	nUsageFields
)

// usageFields holds the counters one or more usage objects carried, as sent.
// A counter that was absent, null, negative, fractional, not a number or
// implausibly large is not set.
type usageFields struct {
	v    [nUsageFields]int64
	set  uint16
	tier []byte // usage.service_tier (Anthropic puts its tier here), raw
	// cost is what the answer says it cost, in micro-dollars, when costSet:
	// xAI's cost_in_usd_ticks (costTicks) or else OpenRouter's cost.
	cost               int64
	costSet, costTicks bool
}

func (f *usageFields) has(k usageField) bool { return f.set&(1<<k) != 0 }

func (f *usageFields) put(k usageField, n int64) {
	f.v[k] = n
	f.set |= 1 << k
}

// merge replaces the counters that g carries and keeps the others: Anthropic's
// message_delta carries cumulative totals, so a later object replaces an
// earlier one's numbers, and a counter it omits keeps the message_start value.
func (f *usageFields) merge(g *usageFields) {
	for k := usageField(0); k < nUsageFields; k++ {
		if g.has(k) {
			f.put(k, g.v[k])
		}
	}
	if len(g.tier) > 0 {
		f.tier = append(f.tier[:0], g.tier...)
	}
	if g.costSet {
		f.cost, f.costSet, f.costTicks = g.cost, true, g.costTicks
	}
}

// parseUsage reads the usage object raw (a complete JSON value) into f. It
// reports false, leaving f alone, when raw is not an object or is malformed.
func parseUsage(raw []byte, f *usageFields) bool {
	s := jsonscan.Scanner{B: raw}
	s.SkipSpace()
	if s.Peek() != '{' {
		return false
	}
	var g usageFields
	s.Object(func(key []byte) bool {
		switch string(key) {
		case "prompt_tokens":
			g.count(&s, uPrompt)
		case "completion_tokens":
			g.count(&s, uCompletion)
		case "input_tokens":
			g.count(&s, uInput)
		case "output_tokens":
			g.count(&s, uOutput)
		case "cache_read_input_tokens":
			g.count(&s, uCacheRead)
		case "cache_creation_input_tokens":
			g.count(&s, uCacheCreate)
		case "prompt_cache_hit_tokens":
			g.count(&s, uCacheHit)
		case "prompt_tokens_details", "input_tokens_details":
			return g.details(&s, func(key []byte) (usageField, bool) {
				switch string(key) {
				case "cached_tokens":
					return uCached, true
				case "cache_write_tokens":
					return uCacheWrite, true
				}
				return 0, false
			})
		case "completion_tokens_details", "output_tokens_details":
			return g.details(&s, func(key []byte) (usageField, bool) {
				switch string(key) {
				case "reasoning_tokens":
					return uReasoning, true
				case "thinking_tokens":
					return uThinking, true
				}
				return 0, false
			})
		case "service_tier":
			g.tier, _ = s.StringValue()
		case "cost", "cost_in_usd_ticks":
			// What the provider billed, better than any price table.
			ticks := string(key) == "cost_in_usd_ticks"
			start := s.I
			if !s.Skip() {
				return false
			}
			conv := balance.OpenRouterCost
			if ticks {
				conv = balance.XAICost
			}
			if n, ok := conv(s.B[start:s.I]); ok && (ticks || !g.costTicks) {
				g.cost, g.costSet, g.costTicks = n, true, ticks
			}
		default:
			return s.Skip()
		}
		return !s.Bad
	})
	if s.Bad {
		return false
	}
	f.merge(&g)
	return true
}

// count reads a token count at s into field k.
func (f *usageFields) count(s *jsonscan.Scanner, k usageField) {
	if c := s.Peek(); c < '0' || c > '9' {
		s.Skip()
		return
	}
	start := s.I
	if !s.Skip() {
		return
	}
	if n, ok := tokenCount(s.B[start:s.I]); ok {
		f.put(k, n)
	}
}

// details reads a *_details object, whose members field maps to counters.
func (f *usageFields) details(s *jsonscan.Scanner, field func(key []byte) (usageField, bool)) bool {
	if s.Peek() != '{' {
		return s.Skip()
	}
	return s.Object(func(key []byte) bool {
		if k, ok := field(key); ok {
			f.count(s, k)
			return !s.Bad
		}
		return s.Skip()
	})
}

// tokenCount parses a JSON number that is a non-negative integer of at most
// maxTokenCount. "12.0" and "1e3" are refused: no provider sends them.
func tokenCount(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, n <= maxTokenCount
}

// usage normalises the fields; ok is false when they say nothing about the
// answer's size, which is unknown usage, never zero.
func (f *usageFields) usage() (u Tokens, ok bool) {
	v := &f.v
	switch {
	case f.has(uPrompt) || f.has(uCompletion):
		// Chat Completions shape, whatever else a gateway added beside it:
		// prompt_tokens is the whole input.
		u.InputTokens, u.OutputTokens = v[uPrompt], v[uCompletion]
		u.CacheReadTokens, u.CacheWriteTokens = v[uCached], v[uCacheWrite]
		if !f.has(uCached) {
			u.CacheReadTokens = v[uCacheHit]
		}
		u.ReasoningTokens = v[uReasoning]
	case f.has(uInput) || f.has(uOutput):
		u.InputTokens, u.OutputTokens = v[uInput], v[uOutput]
		if f.has(uCacheRead) || f.has(uCacheCreate) {
			// Anthropic: input_tokens counts only what came after the
			// last cache breakpoint.
			u.InputTokens += v[uCacheRead] + v[uCacheCreate]
			u.CacheReadTokens, u.CacheWriteTokens = v[uCacheRead], v[uCacheCreate]
		} else {
			u.CacheReadTokens, u.CacheWriteTokens = v[uCached], v[uCacheWrite]
		}
		u.ReasoningTokens = v[uReasoning]
		if !f.has(uReasoning) {
			u.ReasoningTokens = v[uThinking]
		}
	default:
		return Tokens{}, false
	}
	// The totals are what is billed; a part larger than its total is a
	// provider's inconsistency, and pricing it as sent would charge more
	// than the total.
	u.CacheReadTokens = min(u.CacheReadTokens, u.InputTokens)
	u.CacheWriteTokens = min(u.CacheWriteTokens, u.InputTokens-u.CacheReadTokens)
	u.ReasoningTokens = min(u.ReasoningTokens, u.OutputTokens)
	return u, true
}
