package usage

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/internal/corpus"
)

// streamCase is one real answer from testdata/streams (sources in
// SOURCES.md) and what the observer must read from it. The numbers were
// worked out by hand from the fixture.
type streamCase struct {
	file       string
	usage      Tokens
	known      bool
	model      string
	tier       string
	id         string
	terminated bool
	events     int
	// The most severe error inside the answer, if any.
	errClass  classify.Class
	errCode   string
	errStatus int
	errs      int
}

var streamCases = []streamCase{
	// Chat Completions: prompt_tokens already includes cached and
	// cache-write tokens; completion_tokens already includes reasoning.
	{file: "openai-chat-cache-write.json", usage: Tokens{InputTokens: 4020, CacheWriteTokens: 4012, OutputTokens: 4},
		known: true, model: "gpt-5.6-sol", tier: "default", id: "chatcmpl-E1mBLGr3Ql1FsH8cdc76XdGw3PleH", terminated: true},
	{file: "openai-chat-cached.json", usage: Tokens{InputTokens: 4020, CacheReadTokens: 4012, OutputTokens: 4},
		known: true, model: "gpt-5.6-sol", tier: "default", id: "chatcmpl-E1mBQt42vYTsKNd5wnyJlT0db7v9S", terminated: true},
	{file: "openai-chat-reasoning.json", usage: Tokens{InputTokens: 31, OutputTokens: 467, ReasoningTokens: 448},
		known: true, model: "o3-mini-2025-01-31", tier: "default", id: "chatcmpl-BfUgyreG4fpnDXvHKXtRkevWb6i3p", terminated: true},
	{file: "deepseek-chat-cached-reasoning.json", usage: Tokens{InputTokens: 563, CacheReadTokens: 512, OutputTokens: 116, ReasoningTokens: 60},
		known: true, model: "deepseek-v4-flash", id: "0841b0a3-0321-47fa-a8a5-f08e5a4b3cb3", terminated: true},
	{file: "openai-embeddings.json", usage: Tokens{InputTokens: 4},
		known: true, model: "text-embedding-3-small", terminated: true},
	// Responses: input_tokens includes input_tokens_details.cached_tokens.
	{file: "openai-responses-cached.json", usage: Tokens{InputTokens: 4020, CacheReadTokens: 4012, OutputTokens: 5},
		known: true, model: "gpt-5.6-sol", tier: "default", id: "resp_0dec647b9ff1df8d006a5716666d8c8199aaf0491f9a22e34d", terminated: true},
	// Anthropic: input_tokens excludes the cache; 4 + 14210 + 426 = 14640.
	{file: "anthropic-message-cache-thinking.json", usage: Tokens{InputTokens: 14640, CacheReadTokens: 14210, CacheWriteTokens: 426, OutputTokens: 290, ReasoningTokens: 15},
		known: true, model: "claude-sonnet-5", tier: "standard", id: "msg_01H7NtUz7QsvB8EUJQ6ucHXj", terminated: true},
	{file: "anthropic-message-cache.json", usage: Tokens{InputTokens: 1532, CacheReadTokens: 1111, CacheWriteTokens: 418, OutputTokens: 33},
		known: true, model: "claude-sonnet-4-5-20250929", tier: "standard", id: "msg_01KPaKTJSqAKoZri7Ujrny58", terminated: true},

	// Streams. Chat Completions with include_usage: the last chunk.
	{file: "openai-chat-stream-usage.sse", usage: Tokens{InputTokens: 14, OutputTokens: 30},
		known: true, model: "gpt-4o-2024-08-06", id: "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL", terminated: true, events: 34},
	// Without it: unknown, never zero.
	{file: "openai-chat-stream-no-usage.sse",
		model: "gpt-4o-2024-08-06", id: "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL", terminated: true, events: 33},
	// Groq sends usage in the finish chunk, whose choices are not empty.
	{file: "groq-chat-stream-usage-in-finish-chunk.sse", usage: Tokens{InputTokens: 304, OutputTokens: 49, ReasoningTokens: 23},
		known: true, model: "openai/gpt-oss-120b", id: "chatcmpl-e35442a8-12c0-4fb4-8be4-0e51727ce7b7", terminated: true, events: 26},
	// Responses: the terminal event's response.usage, and the tier the
	// answer was served with (response.created said "auto").
	{file: "openai-responses-stream-reasoning.sse", usage: Tokens{InputTokens: 53, OutputTokens: 469, ReasoningTokens: 448},
		known: true, model: "gpt-5-2025-08-07", tier: "flex", id: "resp_0050471a34b36ae60068c97b94a480819587a9d70cf2979b33", terminated: true, events: 14},
	{file: "openai-responses-stream-cached.sse", usage: Tokens{InputTokens: 16909, CacheReadTokens: 15744, OutputTokens: 54},
		known: true, model: "gpt-5.2-codex", tier: "default", id: "resp_05080461b406f3f501696a1409d34c8195a40ff4b092145c35", terminated: true, events: 13},
	// Anthropic: message_delta usage is cumulative and replaces
	// message_start's: input 2411, not 1128 + 2411.
	{file: "anthropic-stream-advisor-thinking.sse", usage: Tokens{InputTokens: 2411, OutputTokens: 145, ReasoningTokens: 47},
		known: true, model: "claude-sonnet-5", tier: "standard", id: "msg_011CdD8kd2BCHcbXAHcYxvaf", terminated: true, events: 21},
	// An older message_delta carries output_tokens only: input stays 25.
	{file: "anthropic-stream-docs-basic.sse", usage: Tokens{InputTokens: 25, OutputTokens: 15},
		known: true, model: "claude-opus-4-1-20250805", id: "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", terminated: true, events: 8},
	// Compaction: message_delta's top-level usage (181 input, 0 cache
	// read) replaces message_start's, as the SDK's accumulator does.
	{file: "anthropic-stream-compaction-cache.sse", usage: Tokens{InputTokens: 181, OutputTokens: 8},
		known: true, model: "claude-sonnet-4-6", tier: "standard", id: "msg_011CduoCRono7pFKoTWpPAia", terminated: true, events: 12},

	// Errors inside 200 streams.
	{file: "anthropic-stream-error-overloaded-docs.sse", events: 1,
		errClass: classify.Overloaded, errCode: "overloaded_error", errStatus: 503, errs: 1},
	{file: "anthropic-stream-error-api-error.sse", events: 3,
		errClass: classify.ServerError, errCode: "api_error", errStatus: 500, errs: 1},
	{file: "openai-responses-stream-error-insufficient-quota.sse", events: 1,
		errClass: classify.QuotaExhausted, errCode: "insufficient_quota", errStatus: 429, errs: 1},
	{file: "openai-responses-stream-error-docs.sse", events: 1,
		errClass: classify.ServerError, errCode: "ERR_SOMETHING", errStatus: 500, errs: 1},
	{file: "openai-responses-stream-failed-docs.sse", events: 1, terminated: true,
		model: "gpt-4o-mini-2024-07-18", id: "resp_123",
		errClass: classify.ServerError, errCode: "server_error", errStatus: 500, errs: 1},
	{file: "groq-chat-stream-error-tool-use-failed.sse", events: 95,
		model: "openai/gpt-oss-120b", id: "chatcmpl-4f39f3af-3267-4ac1-a0cf-6aa7451877dc",
		errClass: classify.InvalidRequest, errCode: "tool_use_failed", errStatus: 400, errs: 1},
	// Gemini's raw JSON error after its data: lines, with its own code;
	// the usage of the events before it is read.
	{file: "gemini-stream-trailing-error.sse", events: 2, usage: Tokens{InputTokens: 22786, OutputTokens: 38, ReasoningTokens: 38},
		known: true, model: "gemma-4-31b-it", tier: "standard", id: "JPozaonvK7yzvdIPrJ7FyAk",
		errClass: classify.Overloaded, errCode: "UNAVAILABLE", errStatus: 503, errs: 1},
	// Other servers' errors (issue 19). Anthropic's content filter under
	// invalid_request_error: the message decides.
	{file: "anthropic-stream-error-content-filter.sse", events: 1,
		errClass: classify.ContentFilter, errCode: "invalid_request_error", errStatus: 400, errs: 1},
	// FastChat's worker error as a chunk of its own, then [DONE]: its code
	// 50001 is a server error.
	{file: "fastchat-chat-stream-error-code.sse", events: 3, terminated: true,
		model: "7597c2a3-b186-4bac-b2e4-21ff56413f7f", id: "chatcmpl-3Lo28HviQo8949WkJyfFzJ",
		errClass: classify.ServerError, errCode: "50001", errStatus: 500, errs: 1},
	// Text Generation Inference's validation error: error_type validation
	// is a 422, and its message says the context overflowed.
	{file: "tgi-chat-stream-validation-error.sse", events: 2,
		errClass: classify.ContextLengthExceeded, errCode: "validation", errStatus: 422, errs: 1},
	// Ollama's newline-delimited JSON: every line an event, the last an
	// error that names nothing, so the server failed mid-answer.
	{file: "ollama-generate-stream-error.ndjson", events: 5, model: "gemma4",
		errClass: classify.ServerError, errStatus: 500, errs: 1},

	// Gemini's usageMetadata: promptTokenCount includes the cached
	// content; candidatesTokenCount excludes thoughts (total 3564 = 3520 +
	// 2 + 42), which are billed as output.
	{file: "gemini-generate-cached-thoughts.json", usage: Tokens{InputTokens: 3520, CacheReadTokens: 3512, OutputTokens: 44, ReasoningTokens: 42},
		known: true, model: "gemini-2.5-flash", tier: "standard", id: "_VQYaqvRGbW6qtsPg4TDoAg", terminated: true},
	// Tool-use prompts (Google Search results) are input beside the
	// prompt: total 550 = 17 + 119 + 201 + 213.
	{file: "gemini-generate-tool-use.json", usage: Tokens{InputTokens: 136, OutputTokens: 414, ReasoningTokens: 213},
		known: true, model: "gemini-2.5-pro", id: "btnJaOrqE4_6qtsP7bOboQs", terminated: true},
	// streamGenerateContent?alt=sse: usageMetadata on every event,
	// cumulative; the thoughts grow from 759 to 787 in the last events.
	// No end marker: the stream ends with its connection.
	{file: "gemini-stream-thoughts.sse", usage: Tokens{InputTokens: 34, OutputTokens: 469 + 787, ReasoningTokens: 787},
		known: true, model: "gemini-2.5-pro", id: "beHBaJfEMIi-qtsP3769-Q8", events: 23},
	// streamGenerateContent without alt=sse: one JSON array, its elements
	// the events; as recorded, and gzip-encoded as it was sent.
	{file: "gemini-stream-array-thoughts.json", usage: Tokens{InputTokens: 11, OutputTokens: 2 + 291, ReasoningTokens: 291},
		known: true, model: "gemini-3.6-flash", tier: "standard", id: "IopyaseNCL-s-8YP7urOoAY", terminated: true, events: 3},
	{file: "gemini-stream-array-thoughts.json.gz", usage: Tokens{InputTokens: 11, OutputTokens: 2 + 291, ReasoningTokens: 291},
		known: true, model: "gemini-3.6-flash", tier: "standard", id: "IopyaseNCL-s-8YP7urOoAY", terminated: true, events: 3},
}

// observe feeds body to a new observer in pieces of the given sizes
// (cycled), and returns the result.
func observe(h http.Header, body []byte, sizes ...int) Result {
	o := NewObserver(h)
	for i, k := 0, 0; i < len(body); k++ {
		n := len(body) - i
		if len(sizes) > 0 {
			n = min(n, sizes[k%len(sizes)])
		}
		o.Write(body[i : i+n])
		i += n
	}
	return o.Result()
}

// comparable returns r with StreamErr dereferenced, for comparison.
func comparable(r Result) any {
	type flat struct {
		Result
		Err StreamError
	}
	f := flat{Result: r}
	if r.StreamErr != nil {
		f.Err = *r.StreamErr
	}
	f.StreamErr = nil
	return f
}

func TestObserverFixtures(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "streams", "*.*"))
	covered := map[string]bool{}
	for _, c := range streamCases {
		covered[c.file] = true
	}
	for _, f := range files {
		if base := filepath.Base(f); !covered[base] && base != "SOURCES.md" {
			t.Errorf("fixture %s has no case", base)
		}
	}
	for _, c := range streamCases {
		t.Run(c.file, func(t *testing.T) {
			body, h := corpus.ReadStream(t, c.file)
			orig := bytes.Clone(body)
			r := observe(h, body)
			if !bytes.Equal(body, orig) {
				t.Fatal("the observer changed the bytes it was given")
			}
			if r.Tokens != c.usage || r.Known != c.known {
				t.Errorf("usage = %+v known %v, want %+v known %v", r.Tokens, r.Known, c.usage, c.known)
			}
			if (r.Metering == Metered) != c.known {
				t.Errorf("metering %v with known %v", r.Metering, r.Known)
			}
			if r.Model != c.model || r.ServiceTier != c.tier || r.ResponseID != c.id {
				t.Errorf("model, tier, id = %q %q %q, want %q %q %q", r.Model, r.ServiceTier, r.ResponseID, c.model, c.tier, c.id)
			}
			if r.Terminated != c.terminated || r.Events != c.events {
				t.Errorf("terminated %v events %d, want %v %d", r.Terminated, r.Events, c.terminated, c.events)
			}
			if r.StreamErrs != c.errs {
				t.Errorf("errors = %d, want %d", r.StreamErrs, c.errs)
			}
			if c.errs > 0 {
				if r.StreamErr == nil {
					t.Fatal("no stream error")
				}
				e := r.StreamErr
				if e.Result.Class != c.errClass || e.Result.Code != c.errCode || e.Status != c.errStatus {
					t.Errorf("stream error = %+v, want class %q code %q status %d", *e, c.errClass, c.errCode, c.errStatus)
				}
			} else if r.StreamErr != nil {
				t.Errorf("unexpected stream error %+v", *r.StreamErr)
			}

			// The same answer read in any pieces gives the same result.
			want := comparable(r)
			rng := rand.New(rand.NewPCG(uint64(len(body)), 7))
			splits := [][]int{{1}, {2}, {3}, {7}, {64}, {4096}}
			for range 8 {
				splits = append(splits, []int{1 + rng.IntN(40), 1 + rng.IntN(300), 1 + rng.IntN(5)})
			}
			for _, sizes := range splits {
				if got := comparable(observe(h, body, sizes...)); !reflect.DeepEqual(got, want) {
					t.Fatalf("pieces %v: %+v, want %+v", sizes, got, want)
				}
			}
		})
	}
}

// TestUsageNeverCountedTwice states the classic bug directly: the parts
// (cached, cache-write, reasoning tokens) are inside the totals, and a
// stream's cumulative usage replaces, never adds.
func TestUsageNeverCountedTwice(t *testing.T) {
	for _, c := range []struct {
		file                       string
		rawInput, rawOutput        int64 // the totals as the answer states them, where they are totals
		input, output, parts, reas int64
	}{
		{file: "openai-chat-cached.json", rawInput: 4020, rawOutput: 4, input: 4020, output: 4, parts: 4012},
		{file: "openai-chat-cache-write.json", rawInput: 4020, rawOutput: 4, input: 4020, output: 4, parts: 4012},
		{file: "openai-chat-reasoning.json", rawInput: 31, rawOutput: 467, input: 31, output: 467, reas: 448},
		{file: "openai-responses-stream-reasoning.sse", rawInput: 53, rawOutput: 469, input: 53, output: 469, reas: 448},
		{file: "openai-responses-stream-cached.sse", rawInput: 16909, rawOutput: 54, input: 16909, output: 54, parts: 15744},
		// Anthropic's input_tokens (4) is not a total: the sum is.
		{file: "anthropic-message-cache-thinking.json", rawInput: 4 + 14210 + 426, rawOutput: 290, input: 14640, output: 290, parts: 14210 + 426, reas: 15},
		// message_start said 1128 in, 2 out; message_delta 2411 in, 145 out.
		{file: "anthropic-stream-advisor-thinking.sse", rawInput: 2411, rawOutput: 145, input: 2411, output: 145, reas: 47},
	} {
		t.Run(c.file, func(t *testing.T) {
			body, h := corpus.ReadStream(t, c.file)
			u := observe(h, body).Tokens
			if u.InputTokens != c.input || u.InputTokens != c.rawInput {
				t.Errorf("input = %d, want %d", u.InputTokens, c.input)
			}
			if u.OutputTokens != c.output || u.OutputTokens != c.rawOutput {
				t.Errorf("output = %d, want %d", u.OutputTokens, c.output)
			}
			if got := u.CacheReadTokens + u.CacheWriteTokens; got != c.parts || got > u.InputTokens {
				t.Errorf("cache parts = %d, want %d, within input %d", got, c.parts, u.InputTokens)
			}
			if u.ReasoningTokens != c.reas || u.ReasoningTokens > u.OutputTokens {
				t.Errorf("reasoning = %d, want %d, within output %d", u.ReasoningTokens, c.reas, u.OutputTokens)
			}
		})
	}
}

// TestParseUsageBadInput feeds usage objects with counts in other types,
// out of range or malformed: a count sent as a string or as a whole float
// is read; one that is not a count makes the usage unreadable (bad), never
// zero; nothing panics, and usage without a total is unknown.
func TestParseUsageBadInput(t *testing.T) {
	for _, c := range []struct {
		name       string
		raw        string
		want       Tokens
		known, bad bool
	}{
		{"strings", `{"prompt_tokens":"12","completion_tokens":"3"}`, Tokens{InputTokens: 12, OutputTokens: 3}, true, false},
		{"whole floats", `{"prompt_tokens":12.0,"completion_tokens":"3.00"}`, Tokens{InputTokens: 12, OutputTokens: 3}, true, false},
		{"gemini strings", `{"promptTokenCount":"7","candidatesTokenCount":2.0,"thoughtsTokenCount":"5"}`, Tokens{InputTokens: 7, OutputTokens: 7, ReasoningTokens: 5}, true, false},
		{"negative", `{"prompt_tokens":-12,"completion_tokens":3}`, Tokens{}, false, true},
		{"fraction", `{"input_tokens":1.5,"output_tokens":3}`, Tokens{}, false, true},
		{"fraction in a string", `{"prompt_tokens":"10","completion_tokens":"2.5"}`, Tokens{}, false, true},
		{"exponent", `{"input_tokens":2,"output_tokens":1e3}`, Tokens{}, false, true},
		{"a part is fractional", `{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":0.5}}`, Tokens{}, false, true},
		{"not a number", `{"prompt_tokens":"ten","completion_tokens":5}`, Tokens{}, false, true},
		{"a bool", `{"prompt_tokens":true,"completion_tokens":5}`, Tokens{}, false, true},
		{"huge", `{"prompt_tokens":99999999999999999999999,"completion_tokens":1125899906842625}`, Tokens{}, false, true},
		{"at the bound", `{"prompt_tokens":1125899906842624,"completion_tokens":0}`, Tokens{InputTokens: 1 << 50}, true, false},
		{"null counts are absent", `{"prompt_tokens":10,"completion_tokens":null,"prompt_tokens_details":{"cached_tokens":null}}`, Tokens{InputTokens: 10}, true, false},
		{"null", `null`, Tokens{}, false, false},
		{"empty object", `{}`, Tokens{}, false, false},
		{"only a total", `{"totalTokenCount":3512}`, Tokens{}, false, false},
		{"details not objects", `{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":7,"completion_tokens_details":[1]}`, Tokens{InputTokens: 10, OutputTokens: 5}, true, false},
		{"parts larger than totals", `{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":50,"cache_write_tokens":3},"completion_tokens_details":{"reasoning_tokens":9}}`,
			Tokens{InputTokens: 10, CacheReadTokens: 10, OutputTokens: 5, ReasoningTokens: 5}, true, false},
		{"truncated", `{"prompt_tokens":10,"completion_tok`, Tokens{}, false, false},
		{"anthropic sums cannot overflow", `{"input_tokens":1125899906842624,"cache_read_input_tokens":1125899906842624,"cache_creation_input_tokens":1125899906842624,"output_tokens":1}`,
			Tokens{InputTokens: 3 << 50, CacheReadTokens: 1 << 50, CacheWriteTokens: 1 << 50, OutputTokens: 1}, true, false},
		{"gemini sums cannot overflow", `{"promptTokenCount":1125899906842624,"toolUsePromptTokenCount":1125899906842624,"candidatesTokenCount":1125899906842624,"thoughtsTokenCount":1125899906842624}`,
			Tokens{InputTokens: 2 << 50, OutputTokens: 2 << 50, ReasoningTokens: 1 << 50}, true, false},
		// Anthropic's one-hour cache writes are a part of its cache writes.
		{"anthropic one-hour cache writes", `{"input_tokens":10,"cache_creation_input_tokens":600,"cache_creation":{"ephemeral_5m_input_tokens":200,"ephemeral_1h_input_tokens":400},"output_tokens":1}`,
			Tokens{InputTokens: 610, CacheWriteTokens: 600, CacheWrite1hTokens: 400, OutputTokens: 1}, true, false},
		{"one-hour writes larger than all writes", `{"input_tokens":10,"cache_creation_input_tokens":6,"cache_creation":{"ephemeral_1h_input_tokens":400},"output_tokens":1}`,
			Tokens{InputTokens: 16, CacheWriteTokens: 6, CacheWrite1hTokens: 6, OutputTokens: 1}, true, false},
		{"duplicate key: the last wins", `{"prompt_tokens":1,"prompt_tokens":2,"completion_tokens":0}`, Tokens{InputTokens: 2}, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f usageFields
			parseUsage([]byte(c.raw), &f)
			got, known, bad := f.usage()
			if got != c.want || known != c.known || bad != c.bad {
				t.Errorf("usage(%s) = %+v known %v bad %v, want %+v %v %v", c.raw, got, known, bad, c.want, c.known, c.bad)
			}
		})
	}
}

// TestObserverTruncated cuts every fixture at many points: no panic, and a
// cut never invents numbers. A JSON answer cut short has unknown usage or
// the whole answer's; a stream cut short has the usage of the events it
// carried whole.
func TestObserverTruncated(t *testing.T) {
	for _, c := range streamCases {
		body, h := corpus.ReadStream(t, c.file)
		possible := map[Tokens]bool{c.usage: true}
		if h.Get("Content-Encoding") == "gzip" {
			// The usage of each prefix of the decoded body.
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			plain, _ := io.ReadAll(zr)
			hp := http.Header{"Content-Type": {"application/json"}}
			for k := range plain {
				possible[observe(hp, plain[:k]).Tokens] = true
			}
		}
		if h.Get("Content-Encoding") == "" && (h.Get("Content-Type") != "application/json" || body[0] == '[') {
			// A stream: the usage of every prefix ending a line,
			// where its events (or array elements) end.
			for k := 0; k < len(body); {
				e := bytes.IndexByte(body[k:], '\n')
				if e < 0 {
					break
				}
				k += e + 1
				possible[observe(h, body[:k]).Tokens] = true
			}
		}
		step := max(1, len(body)/97)
		for cut := 0; cut < len(body); cut += step {
			r := observe(h, body[:cut], 13)
			if r.Known && !possible[r.Tokens] {
				t.Errorf("%s cut at %d: usage %+v was never whole in the answer", c.file, cut, r.Tokens)
			}
		}
	}
}

// TestObserverEncodedBody reads a gzip or deflate body the caller asked for through
// a decoder, and reports an encoding it does not decode as such.
func TestObserverEncodedBody(t *testing.T) {
	gz, h := corpus.ReadStream(t, "gemini-stream-array-thoughts.json.gz")
	plain, hp := corpus.ReadStream(t, "gemini-stream-array-thoughts.json")
	want := observe(hp, plain)
	for _, sizes := range [][]int{nil, {1}, {7, 100}} {
		if got := observe(h, gz, sizes...); got.Tokens != want.Tokens || !got.Known || got.Model != want.Model {
			t.Errorf("gzip in pieces %v: %+v, want %+v", sizes, got, want)
		}
	}
	// Cut short: what was decoded before the cut is read, and the answer
	// is cut short, not free.
	r := observe(h, gz[:200])
	if r.Known || r.Metering != CutShort || r.TextBytes == 0 {
		t.Errorf("half a gzip stream: %+v, want cut short with text counted", r)
	}
	// Not gzip after all: nothing is read, and nothing is taken as zero.
	h.Set("Content-Encoding", "gzip")
	if r := observe(h, plain); r.Known || r.Metering != CutShort {
		t.Errorf("a body that is not gzip: %+v", r)
	}
	// deflate, as the standard wraps it (zlib) and as some servers send it
	// (raw).
	var zl, raw bytes.Buffer
	zw := zlib.NewWriter(&zl)
	zw.Write(plain)
	zw.Close()
	fw, _ := flate.NewWriter(&raw, flate.BestSpeed)
	fw.Write(plain)
	fw.Close()
	hd := hp.Clone()
	hd.Set("Content-Encoding", "Deflate")
	for name, b := range map[string][]byte{"zlib": zl.Bytes(), "raw": raw.Bytes()} {
		if got := observe(hd, b, 7, 100); got.Tokens != want.Tokens || !got.Known || got.Model != want.Model {
			t.Errorf("deflate (%s): %+v, want %+v", name, got, want)
		}
	}
	body, h := corpus.ReadStream(t, "openai-chat-reasoning.json")
	h.Set("Content-Encoding", "br")
	if r := observe(h, body); r.Known || r.Model != "" || r.Metering != Encoded {
		t.Errorf("a br body was read: %+v", r)
	}
}

// TestObserverMetering checks why usage is unknown, on real answers cut,
// closed and read whole.
func TestObserverMetering(t *testing.T) {
	noUsage, sse := corpus.ReadStream(t, "openai-chat-stream-no-usage.sse")
	withUsage, _ := corpus.ReadStream(t, "openai-chat-stream-usage.sse")
	gemini, _ := corpus.ReadStream(t, "gemini-stream-thoughts.sse")
	chat, js := corpus.ReadStream(t, "openai-chat-reasoning.json")
	for _, c := range []struct {
		name string
		h    http.Header
		body []byte
		eof  bool
		want Metering
	}{
		{"whole with usage", sse, withUsage, true, Metered},
		{"whole without usage", sse, noUsage, true, NoUsage},
		{"ended by [DONE], not yet EOF", sse, noUsage, false, NoUsage},
		{"closed after 2 KB", sse, withUsage[:2048], false, CutShort},
		{"broken after 2 KB, then EOF", sse, withUsage[:2048], true, NoUsage},
		{"gemini to its end", sse, gemini, true, Metered},
		{"gemini cut before its first usage", sse, gemini[:100], false, CutShort},
		{"closed unread", sse, nil, false, ClosedUnread},
		{"empty body", sse, nil, true, NoUsage},
		{"json cut", js, chat[:100], false, CutShort},
		{"json without usage", js, []byte(`{"id":"x","choices":[]}`), true, NoUsage},
		{"json with usage of an unknown shape", js, []byte(`{"id":"x","usage":{"tokens":5}}`), true, UnknownShape},
		{"json with a fractional count", js, []byte(`{"id":"x","usage":{"prompt_tokens":5,"completion_tokens":2.5}}`), true, UnknownShape},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := NewObserver(c.h)
			o.Write(c.body)
			if c.eof {
				o.EOF()
			}
			if r := o.Result(); r.Metering != c.want || r.Known != (c.want == Metered) {
				t.Errorf("metering %v known %v, want %v", r.Metering, r.Known, c.want)
			}
		})
	}
}

func TestObserverResultTwice(t *testing.T) {
	body, h := corpus.ReadStream(t, "anthropic-stream-advisor-thinking.sse")
	o := NewObserver(h)
	o.Write(body)
	first := comparable(o.Result())
	o.Write([]byte("event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":1}}\n\n"))
	if second := comparable(o.Result()); !reflect.DeepEqual(first, second) {
		t.Errorf("second result differs: %+v, first %+v", second, first)
	}
}

// TestObserverBoundedMemory feeds bodies that never end, or end only after
// a very long line or deep nesting, and checks that the observer allocates
// next to nothing while doing so.
func TestObserverBoundedMemory(t *testing.T) {
	chat, _ := corpus.ReadStream(t, "openai-chat-reasoning.json")
	piece := bytes.Repeat([]byte("x"), 64<<10)
	for _, c := range []struct {
		name  string
		ct    string
		head  []byte
		fill  []byte
		total int
	}{
		// A real answer whose content is 1 GiB long.
		{"1 GiB string in a JSON answer", "application/json", chat[:bytes.Index(chat, []byte("The capital"))], piece, 1 << 30},
		// A data: line of 100 MiB: a JSON string that never closes.
		{"100 MiB data line", "text/event-stream", []byte(`data: {"choices":[{"delta":{"content":"`), piece, 100 << 20},
		// An event stream of nothing but brackets.
		{"deep nesting", "text/event-stream", []byte("data: "), bytes.Repeat([]byte("[{\"usage\":"), 4<<10), 64 << 20},
		// A stream that never ends: the same real chunk forever.
		{"endless usage chunks", "text/event-stream", nil, corpus.ChunkOf(t, "openai-chat-stream-usage.sse", `"usage":{`), 64 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && c.total > 100<<20 {
				t.Skip("long")
			}
			h := http.Header{"Content-Type": {c.ct}}
			o := NewObserver(h)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			o.Write(c.head)
			for n := 0; n < c.total; n += len(c.fill) {
				o.Write(c.fill)
			}
			_ = o.Result()
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("allocated %d bytes while reading %d", grew, c.total)
			}
		})
	}
}

// TestObserverStreamErrorRank checks that a tripping error is reported even
// when a milder one comes after it, and that the first of equals is kept.
func TestObserverStreamErrorRank(t *testing.T) {
	quota, h := corpus.ReadStream(t, "openai-responses-stream-error-insufficient-quota.sse")
	failed, _ := corpus.ReadStream(t, "openai-responses-stream-failed-docs.sse")
	overloaded, _ := corpus.ReadStream(t, "anthropic-stream-error-overloaded-docs.sse")
	for _, c := range []struct {
		name string
		body []byte
		want classify.Class
	}{
		{"quota then server error", append(bytes.Clone(quota), failed...), classify.QuotaExhausted},
		{"server error then quota", append(bytes.Clone(failed), quota...), classify.QuotaExhausted},
		{"overloaded then server error", append(bytes.Clone(overloaded), failed...), classify.Overloaded},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := observe(h, c.body)
			if r.StreamErrs != 2 || r.StreamErr == nil || r.StreamErr.Result.Class != c.want {
				t.Errorf("errors %d, worst %+v, want 2 and %q", r.StreamErrs, r.StreamErr, c.want)
			}
		})
	}
}

// TestObserverCRLF reads streams whose lines end in CRLF, as some servers
// send them, exactly as the same streams with LF.
func TestObserverCRLF(t *testing.T) {
	for _, file := range []string{"openai-chat-stream-usage.sse", "anthropic-stream-advisor-thinking.sse", "gemini-stream-trailing-error.sse", "openai-responses-stream-error-insufficient-quota.sse"} {
		t.Run(file, func(t *testing.T) {
			body, h := corpus.ReadStream(t, file)
			crlf := bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n"))
			want := comparable(observe(h, body))
			for _, sizes := range [][]int{nil, {1}, {5, 3}} {
				if got := comparable(observe(h, crlf, sizes...)); !reflect.DeepEqual(got, want) {
					t.Errorf("CRLF in pieces %v: %+v, want %+v", sizes, got, want)
				}
			}
		})
	}
}

func TestContainsError(t *testing.T) {
	for _, s := range []string{"", "error\"", "rror\"", "xerror\"", "errorr\"", "error", "\"rr\"error\"x", "error'", "erro\"", "eerror\"", "rrr", "error_code\"", "error_cod\"", "error_code", "\"error_type\""} {
		if got, want := containsError([]byte(s)), bytes.Contains([]byte(s), keyError) || bytes.Contains([]byte(s), keyErrorCode); got != want {
			t.Errorf("containsError(%q) = %v, want %v", s, got, want)
		}
	}
}

// FuzzObserver feeds arbitrary bodies, as an event stream and as JSON: no
// panic, and the result of one write equals the result of the same bytes
// fed one at a time or in uneven pieces. The usage-chunk filter is held to
// the same: its output does not depend on how its input was cut, and a
// stream without "usage" in it passes unchanged.
func FuzzObserver(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "streams", "*.*"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil && !strings.HasSuffix(file, ".md") {
			if len(b) > 8<<10 {
				b = b[len(b)-8<<10:] // the end holds the usage and errors
			}
			f.Add(b, uint8(len(b)))
		}
	}
	f.Add([]byte("data: {\"usage\":{\"prompt_tokens\":1}}\r\n\r\ndata: [DONE]"), uint8(3))
	f.Add([]byte("{\n  \"error\": {\n    \"code\": 429\n  }\n}\ndata: {\"choices\":[]}\n\n"), uint8(5))
	f.Fuzz(func(t *testing.T, body []byte, cut uint8) {
		sizes := []int{1 + int(cut%7), 1 + int(cut/7)}
		for _, ct := range []string{"text/event-stream", "application/json", "application/x-ndjson"} {
			h := http.Header{"Content-Type": {ct}}
			want := comparable(observe(h, body))
			if got := comparable(searchAll(h, body)); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s searching every line: %+v\nwant %+v", ct, got, want)
			}
			if got := comparable(observe(h, body, 1)); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s byte by byte: %+v\nwant %+v", ct, got, want)
			}
			if got := comparable(observe(h, body, sizes...)); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s in pieces %v: %+v\nwant %+v", ct, sizes, got, want)
			}
		}
		whole := filterAll(body)
		if got := filterAll(body, 1); !bytes.Equal(got, whole) {
			t.Fatalf("filter byte by byte:\n%q\nwant\n%q", got, whole)
		}
		if got := filterAll(body, sizes...); !bytes.Equal(got, whole) {
			t.Fatalf("filter in pieces %v:\n%q\nwant\n%q", sizes, got, whole)
		}
		if containsError(body) != (bytes.Contains(body, keyError) || bytes.Contains(body, keyErrorCode)) {
			t.Fatal("containsError disagrees with bytes.Contains")
		}
		if !bytes.Contains(body, keyUsage) && !bytes.Equal(whole, body) {
			t.Fatalf("a stream without usage changed:\n%q\nwant\n%q", whole, body)
		}
	})
}

// TestObserverOtherServersErrors: errors in the shapes other servers send
// inside a 200 stream, however the stream is cut. The Python bytes literal
// (data: b'{...}') is what a gateway writes when it formats bytes into its
// data: line, as the review of one such gateway quotes it; the value inside
// is Text Generation Inference's chunk from testdata/streams.
func TestObserverOtherServersErrors(t *testing.T) {
	tgi := `{"error":"Input validation error: ` + "`inputs` tokens + `max_new_tokens` must be <= 4096. Given: 6 `inputs` tokens and 4091 `max_new_tokens`" + `","error_type":"validation"}`
	tests := []struct {
		name, ct, body string
		class          classify.Class
		status         int
	}{
		{"bytes literal", "text/event-stream", "data: {\"choices\":[]}\n\ndata: b'" + tgi + "'\n\n", classify.ContextLengthExceeded, 422},
		{"bytes literal, CRLF", "text/event-stream", "data: {\"choices\":[]}\r\n\r\ndata: b'" + tgi + "'\r\n\r\n", classify.ContextLengthExceeded, 422},
		{"FastChat quota code", "text/event-stream", "data: {\"choices\":[]}\n\ndata: {\"text\": \"rate limited\", \"error_code\": 42901}\n\n", classify.RateLimited, 429},
		{"FastChat context overflow", "text/event-stream", "data: {\"choices\":[]}\n\ndata: {\"text\": \"This model's maximum context length is 4096 tokens.\", \"error_code\": 40303}\n\n", classify.ContextLengthExceeded, 400},
		{"NDJSON quota", "application/x-ndjson", "{\"model\":\"m\",\"done\":false}\n{\"error\":\"\\u4f59\\u989d\\u4e0d\\u8db3\"}\n", classify.QuotaExhausted, 500},
		{"NDJSON without a final newline", "application/x-ndjson", "{\"model\":\"m\",\"done\":false}\r\n\r\n{\"error\":\"an error was encountered while running the model\"}", classify.ServerError, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Content-Type": {tt.ct}}
			want := comparable(observe(h, []byte(tt.body)))
			r := observe(h, []byte(tt.body))
			if r.StreamErr == nil || r.StreamErr.Class != tt.class || r.StreamErr.Status != tt.status {
				t.Fatalf("stream error = %+v, want %q at %d", r.StreamErr, tt.class, tt.status)
			}
			for _, sizes := range [][]int{{1}, {2}, {3}, {5, 1, 9}} {
				if got := comparable(observe(h, []byte(tt.body), sizes...)); !reflect.DeepEqual(got, want) {
					t.Fatalf("pieces %v: %+v, want %+v", sizes, got, want)
				}
			}
		})
	}
	// A chunk without an error code, or with 0, is no error.
	r := observe(http.Header{"Content-Type": {"text/event-stream"}}, []byte("data: {\"text\": \"hi\", \"error_code\": 0}\n\n"))
	if r.StreamErr != nil {
		t.Errorf("error_code 0 read as %+v", *r.StreamErr)
	}
}

// TestObserverSameShape holds the shortcut of sameShape to the search it
// skips: chunks that repeat the last one searched up to their content, and
// differ after it (usage, an error, JSON continued on the next line) or
// inside it (escaped quotes, a backslash before the closing quote), are read
// as the search would read them, whole or cut at any byte, with LF or CRLF.
func TestObserverSameShape(t *testing.T) {
	const head = `data: {"id":"c1","object":"chat.completion.chunk","model":"m1","choices":[{"index":0,"delta":{"content":"`
	chunk := func(content, tail string) string { return head + content + `"}}]` + tail + "}\n\n" }
	plain := chunk("Hi", "")
	for _, c := range []struct {
		name   string
		body   string
		known  bool
		errs   int
		tokens int64 // InputTokens
	}{
		{"repeated", chunk("a", "") + plain + chunk("b", "") + chunk("c", "") + "data: [DONE]\n\n", false, 0, 0},
		{"usage after the content", plain + chunk("a", "") + chunk("b", `,"usage":{"prompt_tokens":7,"completion_tokens":2}`) + "data: [DONE]\n\n", true, 0, 7},
		{"usage chunk", plain + chunk("a", "") + `data: {"id":"c1","object":"chat.completion.chunk","model":"m1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}` + "\n\ndata: [DONE]\n\n", true, 0, 5},
		{"error after the content", plain + chunk("a", "") + chunk("b", `,"error":{"message":"overloaded","type":"server_error"}`) + "data: [DONE]\n\n", false, 1, 0},
		{"error_code after the content", plain + chunk("a", "") + chunk("b", `,"error_code":50001`), false, 1, 0},
		{"error event", plain + chunk("a", "") + "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n" + chunk("b", ""), false, 1, 0},
		{"null usage after the content", plain + chunk("a", "") + chunk("b", `,"usage":null`) + chunk("c", `,"usage":null`), false, 0, 0},
		{"continued on the next line", plain + chunk("a", "") + head + "b\"}}]\ndata: ,\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1}}\n\n", true, 0, 9},
		{"keys in the content", plain + chunk("a", "") + chunk(`\",\"usage\":{\"prompt_tokens\":3},\"error\":{\"x\":1}`, "") + chunk(`error`, "") + chunk(`\\`, ""), false, 0, 0},
		{"longer than the line kept", plain + chunk(strings.Repeat("x", maxShape), "") + chunk(strings.Repeat("y", maxShape), `,"usage":{"prompt_tokens":2,"completion_tokens":1}`), true, 0, 2},
		// The value closes early, and what follows ends as the last did.
		{"a quote ends the content early", plain + chunk("a", "") + head + `b"}}],"usage":{"prompt_tokens":4,"completion_tokens":1},"more":[{"delta":{"content":"` + "\"}}]}\n\n", true, 0, 4},
	} {
		for _, crlf := range []bool{false, true} {
			body := []byte(c.body)
			name := c.name
			if crlf {
				body, name = bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n")), name+", CRLF"
			}
			t.Run(name, func(t *testing.T) {
				h := http.Header{"Content-Type": {"text/event-stream"}}
				r := observe(h, body)
				if r.Known != c.known || r.Tokens.InputTokens != c.tokens || r.StreamErrs != c.errs || r.Model != "m1" {
					t.Fatalf("known %v input %d errors %d model %q, want %v %d %d m1", r.Known, r.Tokens.InputTokens, r.StreamErrs, r.Model, c.known, c.tokens, c.errs)
				}
				want := comparable(r)
				if got := comparable(searchAll(h, body)); !reflect.DeepEqual(got, want) {
					t.Fatalf("searching every line: %+v, want %+v", got, want)
				}
				for k := 1; k < len(body); k++ {
					o := NewObserver(h)
					o.Write(body[:k])
					o.Write(body[k:])
					if got := comparable(o.Result()); !reflect.DeepEqual(got, want) {
						t.Fatalf("cut at %d: %+v, want %+v", k, got, want)
					}
				}
				if got := comparable(observe(h, body, 1)); !reflect.DeepEqual(got, want) {
					t.Fatalf("byte by byte: %+v, want %+v", got, want)
				}
			})
		}
	}
}

// TestObserverRelease reads every fixture, in two orders, through one
// observer released and reused between answers: each result is the one a
// new observer gives, and a result stays the same once its observer is
// reused.
func TestObserverRelease(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "streams", "*.*"))
	type answer struct {
		body []byte
		h    http.Header
		want any
	}
	var answers []answer
	for _, f := range files {
		if strings.HasSuffix(f, ".md") {
			continue
		}
		body, h := corpus.ReadStream(t, filepath.Base(f))
		fresh := new(Observer)
		fresh.init(h, true)
		fresh.Write(body)
		answers = append(answers, answer{body, h, comparable(fresh.Result())})
	}
	if len(answers) < 10 {
		t.Fatalf("%d fixtures", len(answers))
	}
	o := new(Observer)
	var kept []Result
	for round := range 2 {
		for i := range answers {
			if round == 1 {
				i = len(answers) - 1 - i // the other order
			}
			a := answers[i]
			o.init(a.h, true)
			for k := 0; k < len(a.body); k += 100 {
				o.Write(a.body[k:min(k+100, len(a.body))])
			}
			r := o.Result()
			if got := comparable(r); !reflect.DeepEqual(got, a.want) {
				t.Fatalf("round %d, answer %d: %+v, want %+v", round, i, got, a.want)
			}
			kept = append(kept, r)
			o.reset()
		}
	}
	for i, r := range kept {
		a := answers[i%len(answers)]
		if i >= len(answers) {
			a = answers[len(answers)-1-i%len(answers)]
		}
		if got := comparable(r); !reflect.DeepEqual(got, a.want) {
			t.Fatalf("result %d changed once its observer was reused: %+v, want %+v", i, got, a.want)
		}
	}
	// Through the pool, as the Transport uses it.
	for _, a := range answers {
		o := NewObserver(a.h)
		o.Write(a.body)
		if got := comparable(o.Result()); !reflect.DeepEqual(got, a.want) {
			t.Fatalf("pooled: %+v, want %+v", got, a.want)
		}
		o.Release()
	}
}

// searchAll observes body in one write without sameShape's shortcut.
func searchAll(h http.Header, body []byte) Result {
	o := new(Observer)
	o.init(h, true)
	o.noShape = true
	o.Write(body)
	return o.Result()
}
