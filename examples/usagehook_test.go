package examples_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	goopenai "github.com/sashabaranov/go-openai"
	"go.opentelemetry.io/otel/attribute"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/prices"
	"github.com/quotabreaker/quotabreaker/usage"
)

// This file drives the real SDKs through a Transport with an OnUsage hook
// against servers that replay real answers (see usage_test.go), and checks
// that the hook is handed, once per answer and on the call's context, the
// tokens and cost the Transport's span records: what an application needs
// to bill its own users. The expected numbers are worked out by hand in
// TestUsageThroughSDKs.

// tenantKey is a context key an application would use to say whom a call
// is for.
type tenantKey struct{}

const tenant = "tenant-42"

// hookCall is one call of OnUsage.
type hookCall struct {
	u      quotabreaker.Usage
	tenant any // the tenantKey value of the hook's context
	// ended is how many of the Transport's spans had ended when the hook
	// ran: it runs before the answer's span ends.
	ended int
}

// usageHook keeps the calls of an OnUsage hook.
type usageHook struct {
	tel *telemetry

	mu    sync.Mutex
	calls []hookCall // guarded by mu
}

func (h *usageHook) option() quotabreaker.Option {
	return quotabreaker.OnUsage(func(ctx context.Context, u quotabreaker.Usage) {
		c := hookCall{u: u, tenant: ctx.Value(tenantKey{}), ended: len(h.tel.ours())}
		h.mu.Lock()
		h.calls = append(h.calls, c)
		h.mu.Unlock()
	})
}

// only returns the hook's one call, failing the test unless it ran exactly
// once, on the call's context, before the span ended.
func (h *usageHook) only(t *testing.T) quotabreaker.Usage {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) != 1 {
		t.Fatalf("OnUsage ran %d times for one answer, want once", len(h.calls))
	}
	c := h.calls[0]
	if c.tenant != tenant {
		t.Errorf("OnUsage's context carries tenant %v, want the call's %q", c.tenant, tenant)
	}
	if c.ended != 0 {
		t.Errorf("%d spans had ended when OnUsage ran, want 0 (it runs before the answer's span ends)", c.ended)
	}
	return c.u
}

// spanInt returns an int64 attribute of the span, failing the test unless
// it is there.
func spanInt(t *testing.T, a map[attribute.Key]attribute.Value, k attribute.Key) int64 {
	t.Helper()
	v, ok := a[k]
	if !ok || v.Type() != attribute.INT64 {
		t.Errorf("span has no int attribute %s (%v)", k, v.String())
	}
	return v.AsInt64()
}

// checkMetered compares what the hook was handed with what the span
// recorded, and both with the answer's worked-out usage.
func checkMetered(t *testing.T, u quotabreaker.Usage, a map[attribute.Key]attribute.Value, provider classify.Provider, want spent) {
	t.Helper()
	if !u.Metered {
		t.Fatalf("OnUsage: %+v is unmetered, want the answer's usage", u)
	}
	wantTokens := usage.Tokens{InputTokens: want.input, CacheReadTokens: want.cacheRead, CacheWriteTokens: want.cacheWrite,
		OutputTokens: want.output, ReasoningTokens: want.reasoning}
	if u.Tokens != wantTokens {
		t.Errorf("OnUsage tokens %+v, want %+v", u.Tokens, wantTokens)
	}
	spanTokens := usage.Tokens{
		InputTokens:      spanInt(t, a, "gen_ai.usage.input_tokens"),
		CacheReadTokens:  spanInt(t, a, "gen_ai.usage.cache_read.input_tokens"),
		CacheWriteTokens: spanInt(t, a, "gen_ai.usage.cache_creation.input_tokens"),
		OutputTokens:     spanInt(t, a, "gen_ai.usage.output_tokens"),
		ReasoningTokens:  spanInt(t, a, "gen_ai.usage.reasoning.output_tokens"),
	}
	if u.Tokens != spanTokens {
		t.Errorf("OnUsage tokens %+v, the span's %+v", u.Tokens, spanTokens)
	}

	cost, hasCost := a["quotabreaker.cost.usd"]
	switch {
	case u.Priced != want.priced:
		t.Errorf("OnUsage Priced = %v, want %v", u.Priced, want.priced)
	case u.Priced && (!hasCost || cost.AsFloat64() != u.Cost):
		t.Errorf("OnUsage cost %v, the span's %v (present %v)", u.Cost, cost.AsFloat64(), hasCost)
	case u.Priced && u.Cost != want.usd:
		t.Errorf("OnUsage cost %v, want %v", u.Cost, want.usd)
	case u.Priced && float64(u.Price.Cost(prices.Tokens{Input: u.Tokens.InputTokens, CacheRead: u.Tokens.CacheReadTokens,
		CacheWrite: u.Tokens.CacheWriteTokens, Output: u.Tokens.OutputTokens}))/1e6 != u.Cost:
		t.Errorf("OnUsage Price %+v does not give its Cost %v", u.Price, u.Cost)
	case !u.Priced && (hasCost || u.Cost != 0 || u.Price != (prices.Price{})):
		t.Errorf("unpriced: OnUsage cost %v price %+v, span cost present %v; want none", u.Cost, u.Price, hasCost)
	}

	if got := a["gen_ai.response.model"].AsString(); u.Model != got || u.Model != want.responseModel {
		t.Errorf("OnUsage Model %q, the span's %q, want %q", u.Model, got, want.responseModel)
	}
	checkWho(t, u, a, provider)
}

// checkWho checks the provider and scope the hook was handed against the
// span's.
func checkWho(t *testing.T, u quotabreaker.Usage, a map[attribute.Key]attribute.Value, provider classify.Provider) {
	t.Helper()
	if got := a["gen_ai.provider.name"].AsString(); u.Provider != provider || got != string(provider) {
		t.Errorf("OnUsage Provider %q, the span's %q, want %q", u.Provider, got, provider)
	}
	if got := a["quotabreaker.scope"].AsString(); u.Scope == "" || u.Scope != got {
		t.Errorf("OnUsage Scope %q, the span's %q", u.Scope, got)
	}
}

func goOpenAIClient(rt http.RoundTripper) *goopenai.Client {
	cfg := goopenai.DefaultConfig("sk-proj-usagehook")
	cfg.BaseURL = "http://api.openai.com/v1"
	cfg.HTTPClient = &http.Client{Transport: rt}
	return goopenai.NewClientWithConfig(cfg)
}

// The usage hook: through openai-go, go-openai and anthropic-sdk-go, plain
// and streamed, OnUsage is handed once per answer, on the call's context and
// before the span ends, the tokens, model, provider, scope and cost the span
// records.
func TestUsageHookThroughSDKs(t *testing.T) {
	for _, tt := range []struct {
		name    string
		fixture string
		// streamUsage is WithStreamUsage: the Transport asks OpenAI for
		// the usage chunk the caller did not.
		streamUsage bool
		opts        []quotabreaker.Option
		call        func(ctx context.Context, t *testing.T, rt http.RoundTripper)
		provider    classify.Provider
		want        spent
	}{
		{
			name: "openai-go chat", fixture: "openai-chat-reasoning.json",
			call: func(ctx context.Context, t *testing.T, rt http.RoundTripper) {
				if _, err := openaiClient(nil, rt).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
					Model:    "o3-mini",
					Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the capital of France?")},
				}); err != nil {
					t.Fatal(err)
				}
			},
			provider: classify.ProviderOpenAI,
			want: spent{input: 31, output: 467, reasoning: 448, responseModel: "o3-mini-2025-01-31", requestModel: "o3-mini",
				usd: 0.002089, priced: true},
		},
		{
			name: "openai-go chat streamed", fixture: "openai-chat-stream-usage.sse",
			call: func(ctx context.Context, t *testing.T, rt http.RoundTripper) {
				stream := openaiClient(nil, rt).Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
					Model:         "gpt-4o",
					Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
				})
				defer stream.Close()
				for stream.Next() {
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
			},
			provider: classify.ProviderOpenAI,
			want:     spent{input: 14, output: 30, responseModel: "gpt-4o-2024-08-06", requestModel: "gpt-4o", usd: 0.000335, priced: true},
		},
		{
			name: "openai-go Responses streamed, cached input", fixture: "openai-responses-stream-cached.sse",
			call: func(ctx context.Context, t *testing.T, rt http.RoundTripper) {
				responsesStreamCtx(ctx, t, rt, "gpt-5.2-codex")
			},
			provider: classify.ProviderOpenAI,
			want: spent{input: 16909, cacheRead: 15744, output: 54, responseModel: "gpt-5.2-codex", requestModel: "gpt-5.2-codex",
				usd: 0.00555, priced: true},
		},
		{
			name: "go-openai chat", fixture: "openai-chat-reasoning.json",
			call: func(ctx context.Context, t *testing.T, rt http.RoundTripper) {
				if _, err := goOpenAIClient(rt).CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{
					Model:    goopenai.O3Mini,
					Messages: []goopenai.ChatCompletionMessage{{Role: goopenai.ChatMessageRoleUser, Content: "What is the capital of France?"}},
				}); err != nil {
					t.Fatal(err)
				}
			},
			provider: classify.ProviderOpenAI,
			want: spent{input: 31, output: 467, reasoning: 448, responseModel: "o3-mini-2025-01-31", requestModel: "o3-mini",
				usd: 0.002089, priced: true},
		},
		{
			// go-openai cannot ask for the usage chunk; the Transport
			// does, and hides the chunk from it again.
			name: "go-openai chat streamed, WithStreamUsage", fixture: "openai-chat-stream-usage.sse", streamUsage: true,
			call: func(ctx context.Context, t *testing.T, rt http.RoundTripper) {
				stream, err := goOpenAIClient(rt).CreateChatCompletionStream(ctx, goopenai.ChatCompletionRequest{
					Model:    goopenai.GPT4o,
					Messages: []goopenai.ChatCompletionMessage{{Role: goopenai.ChatMessageRoleUser, Content: "Say hello."}},
					Stream:   true,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer stream.Close()
				for {
					if _, err := stream.Recv(); errors.Is(err, io.EOF) {
						break
					} else if err != nil {
						t.Fatal(err)
					}
				}
			},
			provider: classify.ProviderOpenAI,
			want:     spent{input: 14, output: 30, responseModel: "gpt-4o-2024-08-06", requestModel: "gpt-4o", usd: 0.000335, priced: true},
		},
		{
			name: "anthropic-sdk-go message", fixture: "anthropic-message-cache.json",
			call: func(ctx context.Context, t *testing.T, rt http.RoundTripper) {
				if _, err := anthropicClient(nil, rt).Messages.New(ctx, anthropicParams); err != nil {
					t.Fatal(err)
				}
			},
			provider: classify.ProviderAnthropic,
			want: spent{input: 1532, cacheRead: 1111, cacheWrite: 418, output: 33, responseModel: "claude-sonnet-4-5-20250929",
				requestModel: "claude-sonnet-4-5-20250929", usd: 0.002405, priced: true},
		},
		{
			name: "anthropic-sdk-go streamed", fixture: "anthropic-stream-docs-basic.sse",
			call: func(ctx context.Context, t *testing.T, rt http.RoundTripper) {
				stream := anthropicClient(nil, rt).Messages.NewStreaming(ctx, anthropicParams)
				defer stream.Close()
				for stream.Next() {
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
			},
			provider: classify.ProviderAnthropic,
			want: spent{input: 25, output: 15, responseModel: "claude-opus-4-1-20250805", requestModel: "claude-sonnet-4-5-20250929",
				usd: 0.0015, priced: true},
		},
		{
			name: "anthropic-sdk-go streamed, thinking", fixture: "anthropic-stream-advisor-thinking.sse",
			call: func(ctx context.Context, t *testing.T, rt http.RoundTripper) {
				stream := anthropicClient(nil, rt).Messages.NewStreaming(ctx, anthropicParams)
				defer stream.Close()
				for stream.Next() {
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
			},
			provider: classify.ProviderAnthropic,
			want: spent{input: 2411, output: 145, reasoning: 47, responseModel: "claude-sonnet-5", requestModel: "claude-sonnet-4-5-20250929",
				usd: 0.009408, priced: true},
		},
		{
			// Prices of one's own that lack the model: the hook gets the
			// tokens and no cost (unknown, not zero), as the span does.
			name: "anthropic-sdk-go message, a model the prices lack", fixture: "anthropic-message-cache.json",
			opts: []quotabreaker.Option{quotabreaker.WithPrices(prices.Table{"gpt-4o": {Input: 1}}.Lookup)},
			call: func(ctx context.Context, t *testing.T, rt http.RoundTripper) {
				if _, err := anthropicClient(nil, rt).Messages.New(ctx, anthropicParams); err != nil {
					t.Fatal(err)
				}
			},
			provider: classify.ProviderAnthropic,
			want: spent{input: 1532, cacheRead: 1111, cacheWrite: 418, output: 33, responseModel: "claude-sonnet-4-5-20250929",
				requestModel: "claude-sonnet-4-5-20250929"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newAPIHost(t, func([]byte) string { return tt.fixture })
			tel := newTelemetry(t)
			hook := &usageHook{tel: tel}
			opts := append(tel.options(), hook.option(), quotabreaker.WithStreamUsage(tt.streamUsage))
			qb := quotabreaker.New(h.base, append(opts, tt.opts...)...)

			tt.call(context.WithValue(context.Background(), tenantKey{}, tenant), t, qb)

			if got := h.hits.Load(); got != 1 {
				t.Fatalf("server hits = %d, want 1", got)
			}
			u := hook.only(t)
			checkMetered(t, u, tel.onlySpan(t), tt.provider, tt.want)
		})
	}
}

func responsesStreamCtx(ctx context.Context, t *testing.T, rt http.RoundTripper, model string) {
	t.Helper()
	stream := openaiClient(nil, rt).Responses.NewStreaming(ctx, responses.ResponseNewParams{
		Model: model,
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello.")},
	})
	defer stream.Close()
	for stream.Next() {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
}

// The usage hook, for an answer the caller closes without reading: it is
// reported too, once, as unmetered (unknown, not free: no tokens, no cost),
// with the model the request asked for, and the span records no usage
// either.
func TestUsageHookBodyClosedUnread(t *testing.T) {
	for _, tt := range []struct {
		name     string
		fixture  string
		call     func(ctx context.Context, t *testing.T, rt http.RoundTripper)
		provider classify.Provider
		model    string
	}{
		{
			// openai-go sends the request when the stream is made; the
			// caller gives up before the first event.
			name: "openai-go chat stream closed at once", fixture: "openai-chat-stream-usage.sse",
			call: func(ctx context.Context, t *testing.T, rt http.RoundTripper) {
				stream := openaiClient(nil, rt).Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
					Model:    "gpt-4o",
					Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
				})
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				if err := stream.Close(); err != nil {
					t.Fatal(err)
				}
			},
			provider: classify.ProviderOpenAI, model: "gpt-4o",
		},
		{
			name: "go-openai chat stream closed at once", fixture: "openai-chat-stream-usage.sse",
			call: func(ctx context.Context, t *testing.T, rt http.RoundTripper) {
				stream, err := goOpenAIClient(rt).CreateChatCompletionStream(ctx, goopenai.ChatCompletionRequest{
					Model:    goopenai.GPT4o,
					Messages: []goopenai.ChatCompletionMessage{{Role: goopenai.ChatMessageRoleUser, Content: "Say hello."}},
					Stream:   true,
				})
				if err != nil {
					t.Fatal(err)
				}
				stream.Close()
			},
			provider: classify.ProviderOpenAI, model: "gpt-4o",
		},
		{
			// A plain JSON answer, through the client's transport by hand:
			// the caller looks at the status and closes the body.
			name: "raw Messages request, body closed unread", fixture: "anthropic-message-cache.json",
			call: func(ctx context.Context, t *testing.T, rt http.RoundTripper) {
				body, _ := json.Marshal(map[string]any{
					"model": "claude-sonnet-4-5-20250929", "max_tokens": 1024,
					"messages": []map[string]string{{"role": "user", "content": "Say hello."}},
				})
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://api.anthropic.com/v1/messages", strings.NewReader(string(body)))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("x-api-key", "sk-ant-usagehook")
				req.Header.Set("anthropic-version", "2023-06-01")
				req.Header.Set("content-type", "application/json")
				resp, err := (&http.Client{Transport: rt}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %s", resp.Status)
				}
				resp.Body.Close()
				resp.Body.Close() // a second Close reports nothing more
			},
			provider: classify.ProviderAnthropic, model: "claude-sonnet-4-5-20250929",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newAPIHost(t, func([]byte) string { return tt.fixture })
			tel := newTelemetry(t)
			hook := &usageHook{tel: tel}
			qb := quotabreaker.New(h.base, append(tel.options(), hook.option(), quotabreaker.WithStreamUsage(true))...)

			tt.call(context.WithValue(context.Background(), tenantKey{}, tenant), t, qb)

			if got := h.hits.Load(); got != 1 {
				t.Fatalf("server hits = %d, want 1", got)
			}
			u := hook.only(t)
			if u.Metered || u.Tokens != (usage.Tokens{}) || u.Priced || u.Cost != 0 || u.Price != (prices.Price{}) {
				t.Errorf("OnUsage %+v, want unmetered: no tokens, unpriced", u)
			}
			if u.Model != tt.model {
				t.Errorf("OnUsage Model %q, want the request's %q", u.Model, tt.model)
			}
			a := tel.onlySpan(t)
			for k := range a {
				if strings.HasPrefix(string(k), "gen_ai.usage.") || k == "quotabreaker.cost.usd" {
					t.Errorf("span records %s = %v for an answer nobody read", k, a[k].String())
				}
			}
			checkWho(t, u, a, tt.provider)
		})
	}
}
