package usage

import (
	"bytes"

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
//     output_tokens includes output_tokens_details.thinking_tokens. The
//     cache writes of the one-hour cache are
//     cache_creation.ephemeral_1h_input_tokens (CacheWrite1hTokens), a part
//     of cache_creation_input_tokens.
//   - Gemini (generateContent and streamGenerateContent, usageMetadata):
//     promptTokenCount includes cachedContentTokenCount, and
//     toolUsePromptTokenCount (the results of Google's own tools, fed to
//     the model) is billed as input beside it, so InputTokens is
//     promptTokenCount + toolUsePromptTokenCount. candidatesTokenCount
//     excludes thoughtsTokenCount (totalTokenCount is the sum of all four),
//     and thoughts are billed as output, so OutputTokens is
//     candidatesTokenCount + thoughtsTokenCount and ReasoningTokens is
//     thoughtsTokenCount.
//
// A count may be sent as a JSON number or as a string holding one ("12"),
// and as a float with no fractional part (12.0); a count that is negative,
// fractional, larger than 2^50 or of another type makes the whole usage
// unreadable (see UnknownShape), never zero.
type Tokens struct {
	InputTokens      int64 `json:"input_tokens"`
	CacheReadTokens  int64 `json:"cache_read_tokens"`
	CacheWriteTokens int64 `json:"cache_write_tokens"`
	// CacheWrite1hTokens are the part of CacheWriteTokens written to
	// Anthropic's one-hour cache, which is priced higher than its
	// five-minute cache (CacheWriteTokens - CacheWrite1hTokens). It is 0
	// for every other provider.
	CacheWrite1hTokens int64 `json:"cache_write_1h_tokens"`
	OutputTokens       int64 `json:"output_tokens"`
	ReasoningTokens    int64 `json:"reasoning_tokens"`
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
	uCache1h                       // cache_creation.ephemeral_1h_input_tokens (Anthropic)
	uCache5m                       // cache_creation.ephemeral_5m_input_tokens (Anthropic)
	gPrompt                        // promptTokenCount: all input but tool use (Gemini)
	gCandidates                    // candidatesTokenCount: output without thoughts
	gCached                        // cachedContentTokenCount
	gThoughts                      // thoughtsTokenCount
	gToolUse                       // toolUsePromptTokenCount
	nUsageFields
)

// usageFields holds the counters one or more usage objects carried, as sent.
// A counter that was absent or null is not set; one that was negative,
// fractional, not a number or implausibly large is bad, which makes the
// usage unreadable.
type usageFields struct {
	v    [nUsageFields]int64
	set  uint32
	bad  uint32
	tier []byte // usage.service_tier (Anthropic) or usageMetadata.serviceTier (Gemini), raw
	// cost is what the answer says it cost, in micro-dollars, when costSet:
	// xAI's cost_in_usd_ticks (costTicks) or else OpenRouter's cost.
	cost               int64
	costSet, costTicks bool
}

func (f *usageFields) has(k usageField) bool { return f.set&(1<<k) != 0 }

func (f *usageFields) put(k usageField, n int64) {
	f.v[k] = n
	f.set |= 1 << k
	f.bad &^= 1 << k
}

func (f *usageFields) spoil(k usageField) {
	f.v[k] = 0
	f.set &^= 1 << k
	f.bad |= 1 << k
}

// merge replaces the counters that g carries and keeps the others: Anthropic's
// message_delta carries cumulative totals, so a later object replaces an
// earlier one's numbers, and a counter it omits keeps the message_start value.
func (f *usageFields) merge(g *usageFields) {
	for k := usageField(0); k < nUsageFields; k++ {
		switch {
		case g.has(k):
			f.put(k, g.v[k])
		case g.bad&(1<<k) != 0:
			f.spoil(k)
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
	var g usageFields
	if !readUsage(&s, &g) {
		return false
	}
	f.merge(&g)
	return true
}

// readUsage reads the usage object at s into g, which is zero, and leaves s
// past it. It reports false when the value is not an object or is
// malformed: g and s.I then mean nothing.
func readUsage(s *jsonscan.Scanner, g *usageFields) bool {
	if s.Peek() != '{' {
		return false
	}
	s.Object(func(key []byte) bool {
		switch string(key) {
		case "prompt_tokens":
			g.count(s, uPrompt)
		case "completion_tokens":
			g.count(s, uCompletion)
		case "input_tokens":
			g.count(s, uInput)
		case "output_tokens":
			g.count(s, uOutput)
		case "cache_read_input_tokens":
			g.count(s, uCacheRead)
		case "cache_creation_input_tokens":
			g.count(s, uCacheCreate)
		case "prompt_cache_hit_tokens":
			g.count(s, uCacheHit)
		case "prompt_tokens_details", "input_tokens_details":
			return g.details(s, func(key []byte) (usageField, bool) {
				switch string(key) {
				case "cached_tokens":
					return uCached, true
				case "cache_write_tokens":
					return uCacheWrite, true
				}
				return 0, false
			})
		case "completion_tokens_details", "output_tokens_details":
			return g.details(s, func(key []byte) (usageField, bool) {
				switch string(key) {
				case "reasoning_tokens":
					return uReasoning, true
				case "thinking_tokens":
					return uThinking, true
				}
				return 0, false
			})
		case "cache_creation":
			return g.details(s, func(key []byte) (usageField, bool) {
				switch string(key) {
				case "ephemeral_1h_input_tokens":
					return uCache1h, true
				case "ephemeral_5m_input_tokens":
					return uCache5m, true
				}
				return 0, false
			})
		case "promptTokenCount":
			g.count(s, gPrompt)
		case "candidatesTokenCount":
			g.count(s, gCandidates)
		case "cachedContentTokenCount":
			g.count(s, gCached)
		case "thoughtsTokenCount":
			g.count(s, gThoughts)
		case "toolUsePromptTokenCount":
			g.count(s, gToolUse)
		case "service_tier", "serviceTier":
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
	return !s.Bad
}

// count reads a token count at s into field k: a number, or a string
// holding one. null leaves k unset; anything that is not a count spoils it.
func (f *usageFields) count(s *jsonscan.Scanner, k usageField) {
	start := s.I
	if !s.Skip() {
		return
	}
	v := s.B[start:s.I]
	switch {
	case string(v) == "null":
		return
	case len(v) >= 2 && v[0] == '"':
		v = v[1 : len(v)-1]
	}
	if n, ok := tokenCount(v); ok {
		f.put(k, n)
	} else {
		f.spoil(k)
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
// maxTokenCount: digits, then optionally a fraction of zeros ("12.0"). An
// exponent, a sign or a fractional part is refused: a count is whole.
func tokenCount(b []byte) (int64, bool) {
	if i := bytes.IndexByte(b, '.'); i >= 0 {
		for _, c := range b[i+1:] {
			if c != '0' {
				return 0, false
			}
		}
		if i+1 == len(b) {
			return 0, false // "12." is no JSON number
		}
		b = b[:i]
	}
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

// usage normalises the fields. It reports unknown usage (ok false, which
// is never zero) when they say nothing about the answer's size, and
// unreadable usage (bad true) when a counter it would use is not a count.
func (f *usageFields) usage() (u Tokens, ok, bad bool) {
	v := &f.v
	var used uint32
	switch {
	case f.has(uPrompt) || f.has(uCompletion) || f.bad&(1<<uPrompt|1<<uCompletion) != 0:
		// Chat Completions shape, whatever else a gateway added beside it:
		// prompt_tokens is the whole input.
		used = 1<<uPrompt | 1<<uCompletion | 1<<uCached | 1<<uCacheWrite | 1<<uReasoning
		u.InputTokens, u.OutputTokens = v[uPrompt], v[uCompletion]
		u.CacheReadTokens, u.CacheWriteTokens = v[uCached], v[uCacheWrite]
		if !f.has(uCached) {
			used |= 1 << uCacheHit
			u.CacheReadTokens = v[uCacheHit]
		}
		u.ReasoningTokens = v[uReasoning]
	case f.has(uInput) || f.has(uOutput) || f.bad&(1<<uInput|1<<uOutput) != 0:
		used = 1<<uInput | 1<<uOutput | 1<<uReasoning | 1<<uThinking
		u.InputTokens, u.OutputTokens = v[uInput], v[uOutput]
		if f.has(uCacheRead) || f.has(uCacheCreate) || f.bad&(1<<uCacheRead|1<<uCacheCreate) != 0 {
			// Anthropic: input_tokens counts only what came after the
			// last cache breakpoint.
			used |= 1<<uCacheRead | 1<<uCacheCreate | 1<<uCache1h
			u.InputTokens += v[uCacheRead] + v[uCacheCreate]
			u.CacheReadTokens, u.CacheWriteTokens = v[uCacheRead], v[uCacheCreate]
			u.CacheWrite1hTokens = v[uCache1h]
		} else {
			used |= 1<<uCached | 1<<uCacheWrite
			u.CacheReadTokens, u.CacheWriteTokens = v[uCached], v[uCacheWrite]
		}
		u.ReasoningTokens = v[uReasoning]
		if !f.has(uReasoning) {
			u.ReasoningTokens = v[uThinking]
		}
	case f.has(gPrompt) || f.has(gCandidates) || f.bad&(1<<gPrompt|1<<gCandidates) != 0:
		// Gemini: thoughts and tool-use prompts are beside the counts
		// they are billed with, not inside them.
		used = 1<<gPrompt | 1<<gCandidates | 1<<gCached | 1<<gThoughts | 1<<gToolUse
		u.InputTokens = v[gPrompt] + v[gToolUse]
		u.CacheReadTokens = v[gCached]
		u.OutputTokens = v[gCandidates] + v[gThoughts]
		u.ReasoningTokens = v[gThoughts]
	default:
		return Tokens{}, false, false
	}
	if f.bad&used != 0 {
		return Tokens{}, false, true
	}
	// The totals are what is billed; a part larger than its total is a
	// provider's inconsistency, and pricing it as sent would charge more
	// than the total.
	u.CacheReadTokens = min(u.CacheReadTokens, u.InputTokens)
	u.CacheWriteTokens = min(u.CacheWriteTokens, u.InputTokens-u.CacheReadTokens)
	u.CacheWrite1hTokens = min(u.CacheWrite1hTokens, u.CacheWriteTokens)
	u.ReasoningTokens = min(u.ReasoningTokens, u.OutputTokens)
	return u, true, false
}
