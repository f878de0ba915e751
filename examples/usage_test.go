package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	goopenai "github.com/sashabaranov/go-openai"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/prices"
)

// This file drives the real SDKs through a Transport against servers that
// answer with real answers (testdata/streams of the root module, and
// examples/testdata/streams; sources in their SOURCES.md), and checks what
// the Transport recorded: tokens, model and cost on the span, in the token
// histogram and in the cost counter. Every cost is worked out by hand below
// from the rates in prices/snapshot.go (micro-dollars per million tokens,
// quoted here in dollars per million), rounded up to the micro-dollar as
// prices.Price.Cost documents.

// apiHost is an httptest server standing in for a provider's API host. The
// SDKs address it by the provider's real host name, so that the Transport
// recognises the provider as it does in production (WithStreamUsage acts on
// OpenAI's host only); the base transport dials the server whatever the
// host.
type apiHost struct {
	srv  *httptest.Server
	base *http.Transport
	// answer chooses the fixture file for a request body.
	answer func(body []byte) string

	hits   atomic.Int64
	mu     sync.Mutex
	bodies [][]byte // guarded by mu
}

func newAPIHost(t *testing.T, answer func(body []byte) string) *apiHost {
	t.Helper()
	h := &apiHost{answer: answer}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, body)
		h.mu.Unlock()
		serveFixture(w, h.answer(body))
	}))
	addr := h.srv.Listener.Addr().String()
	h.base = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}}
	t.Cleanup(func() {
		h.base.CloseIdleConnections()
		h.srv.Close()
	})
	return h
}

func (h *apiHost) lastBody() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.bodies) == 0 {
		return nil
	}
	return h.bodies[len(h.bodies)-1]
}

// fixture returns a real answer: a file of the root module's
// testdata/streams, or of this module's when it is there.
func fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	for _, dir := range []string{filepath.Join("testdata", "streams"), filepath.Join("..", "testdata", "streams")} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			return b
		}
	}
	tb.Fatalf("no fixture %s", name)
	return nil
}

func fixtureType(name string) string {
	if strings.HasSuffix(name, ".sse") {
		return "text/event-stream; charset=utf-8"
	}
	return "application/json"
}

// serveFixture writes the fixture name as a provider sends it.
func serveFixture(w http.ResponseWriter, name string) {
	for _, dir := range []string{filepath.Join("testdata", "streams"), filepath.Join("..", "testdata", "streams")} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			w.Header().Set("Content-Type", fixtureType(name))
			w.Write(b)
			return
		}
	}
	http.Error(w, "no fixture "+name, http.StatusInternalServerError)
}

// telemetry is a real OpenTelemetry SDK pipeline that keeps what the
// Transport records.
type telemetry struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
}

func newTelemetry(t *testing.T) *telemetry {
	tel := &telemetry{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		tel.tp.Shutdown(context.Background())
		tel.mp.Shutdown(context.Background())
	})
	return tel
}

func (tel *telemetry) options() []quotabreaker.Option {
	return []quotabreaker.Option{quotabreaker.WithTracerProvider(tel.tp), quotabreaker.WithMeterProvider(tel.mp)}
}

// ours returns the ended spans of the Transport.
func (tel *telemetry) ours() []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tel.spans.Ended() {
		if s.InstrumentationScope().Name == qbScope {
			out = append(out, s)
		}
	}
	return out
}

// onlySpan returns the Transport's one ended span.
func (tel *telemetry) onlySpan(t *testing.T) map[attribute.Key]attribute.Value {
	t.Helper()
	spans := tel.ours()
	if len(spans) != 1 {
		t.Fatalf("%d spans ended, want 1 (the span ends when the SDK is done with the body)", len(spans))
	}
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range spans[0].Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func (tel *telemetry) collect(t *testing.T) []metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var out []metricdata.Metrics
	for _, sm := range rm.ScopeMetrics {
		out = append(out, sm.Metrics...)
	}
	return out
}

// spent is what one answer used and cost, as the test works it out.
type spent struct {
	input, cacheRead, cacheWrite, output, reasoning int64
	responseModel, requestModel                     string
	// usd is the cost in dollars; unpriced answers have none, which is
	// not zero.
	usd    float64
	priced bool
}

// check compares what the Transport recorded for one answer with want.
func (tel *telemetry) check(t *testing.T, want spent) {
	t.Helper()
	a := tel.onlySpan(t)
	ints := map[attribute.Key]int64{
		"gen_ai.usage.input_tokens":                want.input,
		"gen_ai.usage.output_tokens":               want.output,
		"gen_ai.usage.cache_read.input_tokens":     want.cacheRead,
		"gen_ai.usage.cache_creation.input_tokens": want.cacheWrite,
		"gen_ai.usage.reasoning.output_tokens":     want.reasoning,
	}
	for k, n := range ints {
		if v, ok := a[k]; !ok || v.Type() != attribute.INT64 || v.AsInt64() != n {
			t.Errorf("span %s = %v (present %v), want %d", k, v.String(), ok, n)
		}
	}
	if got := a["gen_ai.response.model"].AsString(); got != want.responseModel {
		t.Errorf("span gen_ai.response.model = %q, want %q", got, want.responseModel)
	}
	if got := a["gen_ai.request.model"].AsString(); got != want.requestModel {
		t.Errorf("span gen_ai.request.model = %q, want %q", got, want.requestModel)
	}
	cost, ok := a["quotabreaker.cost.usd"]
	switch {
	case want.priced && (!ok || cost.Type() != attribute.FLOAT64 || cost.AsFloat64() != want.usd):
		t.Errorf("span quotabreaker.cost.usd = %v (present %v), want %v", cost.String(), ok, want.usd)
	case !want.priced && ok:
		t.Errorf("span quotabreaker.cost.usd = %v for an unpriced model, want no attribute (unpriced is not zero)", cost.String())
	}

	var sawTokens, sawCost bool
	for _, m := range tel.collect(t) {
		switch m.Name {
		case "gen_ai.client.token.usage":
			sawTokens = true
			if m.Unit != "{token}" {
				t.Errorf("%s unit %q, want {token}", m.Name, m.Unit)
			}
			h, ok := m.Data.(metricdata.Histogram[int64])
			if !ok {
				t.Fatalf("%s is a %T, want a histogram", m.Name, m.Data)
			}
			byType := map[string]metricdata.HistogramDataPoint[int64]{}
			for _, p := range h.DataPoints {
				typ, _ := p.Attributes.Value("gen_ai.token.type")
				byType[typ.AsString()] = p
				if model, _ := p.Attributes.Value("gen_ai.response.model"); model.AsString() != want.responseModel {
					t.Errorf("%s point has gen_ai.response.model %q, want %q", m.Name, model.AsString(), want.responseModel)
				}
			}
			for typ, n := range map[string]int64{"input": want.input, "output": want.output} {
				if p, ok := byType[typ]; !ok || p.Count != 1 || p.Sum != n {
					t.Errorf("%s{gen_ai.token.type=%s}: count %d sum %d, want 1 and %d", m.Name, typ, p.Count, p.Sum, n)
				}
			}
			if len(byType) != 2 {
				t.Errorf("%s has token types %v, want input and output", m.Name, byType)
			}
		case "quotabreaker.cost":
			s, ok := m.Data.(metricdata.Sum[float64])
			if !ok || !s.IsMonotonic {
				t.Fatalf("%s is a %T, want a monotonic float sum", m.Name, m.Data)
			}
			var total float64
			for _, p := range s.DataPoints {
				total += p.Value
				sawCost = true
			}
			if want.priced && total != want.usd {
				t.Errorf("%s = %v, want %v", m.Name, total, want.usd)
			}
		}
	}
	if !sawTokens {
		t.Error("no gen_ai.client.token.usage recorded")
	}
	if sawCost != want.priced {
		t.Errorf("quotabreaker.cost recorded: %v, want %v", sawCost, want.priced)
	}
}

func openaiClient(h *apiHost, rt http.RoundTripper) *openai.Client {
	c := openai.NewClient(
		option.WithBaseURL("http://api.openai.com/v1/"),
		option.WithAPIKey("sk-proj-usage"),
		option.WithHTTPClient(&http.Client{Transport: rt}),
	)
	return &c
}

func anthropicClient(h *apiHost, rt http.RoundTripper) *anthropic.Client {
	c := anthropic.NewClient(
		anthropicoption.WithBaseURL("http://api.anthropic.com/"),
		anthropicoption.WithAPIKey("sk-ant-usage"),
		anthropicoption.WithHTTPClient(&http.Client{Transport: rt}),
	)
	return &c
}

var anthropicParams = anthropic.MessageNewParams{
	Model:     "claude-sonnet-4-5-20250929", // the model of the recorded answer
	MaxTokens: 1024,
	Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello."))},
}

func TestUsageThroughSDKs(t *testing.T) {
	for _, tt := range []struct {
		name    string
		fixture string
		// call makes the SDK call and returns the SDK's own reading of
		// the usage, input and output tokens as the provider stated them.
		call func(t *testing.T, rt http.RoundTripper, h *apiHost) (sdkIn, sdkOut int64)
		opts []quotabreaker.Option
		want spent
	}{
		{
			// o3-mini: $1.10 in, $4.40 out per million. The 448 reasoning
			// tokens are inside the 467 completion tokens:
			//   31 × 1.10 + 467 × 4.40 = 34.1 + 2054.8 = 2088.9 µ$ → 2089 µ$.
			// Adding the reasoning again would give 4060.1 µ$.
			name: "openai-go chat", fixture: "openai-chat-reasoning.json",
			call: func(t *testing.T, rt http.RoundTripper, h *apiHost) (int64, int64) {
				res, err := openaiClient(h, rt).Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
					Model:    "o3-mini",
					Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the capital of France?")},
				})
				if err != nil {
					t.Fatal(err)
				}
				return res.Usage.PromptTokens, res.Usage.CompletionTokens
			},
			want: spent{input: 31, output: 467, reasoning: 448, responseModel: "o3-mini-2025-01-31", requestModel: "o3-mini",
				usd: 0.002089, priced: true},
		},
		{
			// The caller asks for the usage chunk itself. gpt-4o (dated
			// 2024-08-06): $2.50 in, $10 out per million:
			//   14 × 2.50 + 30 × 10 = 35 + 300 = 335 µ$.
			name: "openai-go chat streamed with include_usage", fixture: "openai-chat-stream-usage.sse",
			call: func(t *testing.T, rt http.RoundTripper, h *apiHost) (int64, int64) {
				stream := openaiClient(h, rt).Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
					Model:         "gpt-4o",
					Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
				})
				defer stream.Close()
				var acc openai.ChatCompletionAccumulator
				for stream.Next() {
					acc.AddChunk(stream.Current())
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				return acc.Usage.PromptTokens, acc.Usage.CompletionTokens
			},
			want: spent{input: 14, output: 30, responseModel: "gpt-4o-2024-08-06", requestModel: "gpt-4o", usd: 0.000335, priced: true},
		},
		{
			// gpt-5.6-sol: $5 in, $0.50 cached in, $30 out per million
			// (below its 272k tier). The 4012 cached tokens are inside the
			// 4020 input:
			//   8 × 5 + 4012 × 0.50 + 5 × 30 = 40 + 2006 + 150 = 2196 µ$.
			name: "openai-go Responses, cached input", fixture: "openai-responses-cached.json",
			call: func(t *testing.T, rt http.RoundTripper, h *apiHost) (int64, int64) {
				res, err := openaiClient(h, rt).Responses.New(context.Background(), responses.ResponseNewParams{
					Model: "gpt-5.6-sol",
					Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say OK.")},
				})
				if err != nil {
					t.Fatal(err)
				}
				return res.Usage.InputTokens, res.Usage.OutputTokens
			},
			want: spent{input: 4020, cacheRead: 4012, output: 5, responseModel: "gpt-5.6-sol", requestModel: "gpt-5.6-sol",
				usd: 0.002196, priced: true},
		},
		{
			// The same answer priced by a Table of one's own that lacks
			// gpt-5.6-sol: its tokens count, and it has no cost.
			name: "openai-go Responses, a model the prices lack", fixture: "openai-responses-cached.json",
			call: func(t *testing.T, rt http.RoundTripper, h *apiHost) (int64, int64) {
				res, err := openaiClient(h, rt).Responses.New(context.Background(), responses.ResponseNewParams{
					Model: "gpt-5.6-sol",
					Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say OK.")},
				})
				if err != nil {
					t.Fatal(err)
				}
				return res.Usage.InputTokens, res.Usage.OutputTokens
			},
			opts: []quotabreaker.Option{quotabreaker.WithPrices(prices.Table{"gpt-4o": {Input: 1}}.Lookup)},
			want: spent{input: 4020, cacheRead: 4012, output: 5, responseModel: "gpt-5.6-sol", requestModel: "gpt-5.6-sol"},
		},
		{
			// gpt-5 answered at the flex tier (the terminal event says
			// so). The price snapshot has no prices per service tier: the
			// standard $1.25 in, $10 out per million apply, 448 reasoning
			// tokens inside the 469 output tokens:
			//   53 × 1.25 + 469 × 10 = 66.25 + 4690 = 4756.25 µ$ → 4757 µ$
			// (at OpenAI's flex rates it would be 2379 µ$).
			name: "openai-go Responses streamed, flex tier", fixture: "openai-responses-stream-reasoning.sse",
			call: func(t *testing.T, rt http.RoundTripper, h *apiHost) (int64, int64) {
				return responsesStream(t, rt, h, "gpt-5")
			},
			want: spent{input: 53, output: 469, reasoning: 448, responseModel: "gpt-5-2025-08-07", requestModel: "gpt-5",
				usd: 0.004757, priced: true},
		},
		{
			// gpt-5.2-codex: $1.75 in, $0.175 cached in, $14 out per
			// million. 15744 of the 16909 input tokens were cached:
			//   (16909 - 15744) × 1.75 + 15744 × 0.175 + 54 × 14
			//   = 2038.75 + 2755.2 + 756 = 5549.95 µ$ → 5550 µ$.
			// Pricing the cached tokens twice would add 15744 × 1.75 µ$.
			name: "openai-go Responses streamed, cached input", fixture: "openai-responses-stream-cached.sse",
			call: func(t *testing.T, rt http.RoundTripper, h *apiHost) (int64, int64) {
				return responsesStream(t, rt, h, "gpt-5.2-codex")
			},
			want: spent{input: 16909, cacheRead: 15744, output: 54, responseModel: "gpt-5.2-codex", requestModel: "gpt-5.2-codex",
				usd: 0.00555, priced: true},
		},
		{
			// text-embedding-3-small: $0.02 per million input tokens:
			//   4 × 0.02 = 0.08 µ$ → 1 µ$ (rounded up, never down).
			name: "openai-go embeddings", fixture: "openai-embeddings.json",
			call: func(t *testing.T, rt http.RoundTripper, h *apiHost) (int64, int64) {
				res, err := openaiClient(h, rt).Embeddings.New(context.Background(), openai.EmbeddingNewParams{
					Model:          openai.EmbeddingModelTextEmbedding3Small,
					Input:          openai.EmbeddingNewParamsInputUnion{OfString: openai.String("Hello")},
					EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64,
				})
				if err != nil {
					t.Fatal(err)
				}
				return res.Usage.PromptTokens, 0
			},
			want: spent{input: 4, responseModel: "text-embedding-3-small", requestModel: "text-embedding-3-small", usd: 0.000001, priced: true},
		},
		{
			// Anthropic's input_tokens (3) leaves out the cache: the input
			// is 3 + 1111 read + 418 written = 1532. claude-sonnet-4-5: $3
			// in, $0.30 cache read, $3.75 cache write, $15 out per million:
			//   3 × 3 + 1111 × 0.30 + 418 × 3.75 + 33 × 15
			//   = 9 + 333.3 + 1567.5 + 495 = 2404.8 µ$ → 2405 µ$.
			name: "anthropic-sdk-go message", fixture: "anthropic-message-cache.json",
			call: func(t *testing.T, rt http.RoundTripper, h *apiHost) (int64, int64) {
				res, err := anthropicClient(h, rt).Messages.New(context.Background(), anthropicParams)
				if err != nil {
					t.Fatal(err)
				}
				u := res.Usage
				return u.InputTokens + u.CacheReadInputTokens + u.CacheCreationInputTokens, u.OutputTokens
			},
			want: spent{input: 1532, cacheRead: 1111, cacheWrite: 418, output: 33, responseModel: "claude-sonnet-4-5-20250929",
				requestModel: "claude-sonnet-4-5-20250929", usd: 0.002405, priced: true},
		},
		{
			// message_start says 25 in, 1 out; message_delta's cumulative
			// 15 out replaces the 1 (16 would be the classic bug).
			// claude-opus-4-1: $15 in, $75 out per million:
			//   25 × 15 + 15 × 75 = 375 + 1125 = 1500 µ$.
			name: "anthropic-sdk-go streamed", fixture: "anthropic-stream-docs-basic.sse",
			call: func(t *testing.T, rt http.RoundTripper, h *apiHost) (int64, int64) {
				return anthropicStream(t, rt, h)
			},
			want: spent{input: 25, output: 15, responseModel: "claude-opus-4-1-20250805", requestModel: "claude-sonnet-4-5-20250929",
				usd: 0.0015, priced: true},
		},
		{
			// message_delta's input 2411 replaces message_start's 1128
			// (never 3539); 47 thinking tokens inside the 145 output.
			// claude-sonnet-5, from 2026-09-01: $3 in, $15 out per million:
			//   2411 × 3 + 145 × 15 = 7233 + 2175 = 9408 µ$.
			name: "anthropic-sdk-go streamed, thinking", fixture: "anthropic-stream-advisor-thinking.sse",
			call: func(t *testing.T, rt http.RoundTripper, h *apiHost) (int64, int64) {
				return anthropicStream(t, rt, h)
			},
			want: spent{input: 2411, output: 145, reasoning: 47, responseModel: "claude-sonnet-5", requestModel: "claude-sonnet-4-5-20250929",
				usd: 0.009408, priced: true},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newAPIHost(t, func([]byte) string { return tt.fixture })
			tel := newTelemetry(t)
			qb := quotabreaker.New(h.base, append(tel.options(), tt.opts...)...)
			in, out := tt.call(t, qb, h)
			// The SDK read the same numbers the Transport did: the body
			// reached it whole.
			if in != tt.want.input || out != tt.want.output {
				t.Errorf("the SDK read %d in, %d out; want %d, %d", in, out, tt.want.input, tt.want.output)
			}
			tel.check(t, tt.want)
			if got := h.hits.Load(); got != 1 {
				t.Errorf("server hits = %d, want 1", got)
			}
		})
	}
}

func responsesStream(t *testing.T, rt http.RoundTripper, h *apiHost, model string) (int64, int64) {
	t.Helper()
	stream := openaiClient(h, rt).Responses.NewStreaming(context.Background(), responses.ResponseNewParams{
		Model: model,
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello.")},
	})
	defer stream.Close()
	var in, out int64
	for stream.Next() {
		if ev := stream.Current(); ev.Type == "response.completed" {
			in, out = ev.Response.Usage.InputTokens, ev.Response.Usage.OutputTokens
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return in, out
}

func anthropicStream(t *testing.T, rt http.RoundTripper, h *apiHost) (int64, int64) {
	t.Helper()
	stream := anthropicClient(h, rt).Messages.NewStreaming(context.Background(), anthropicParams)
	defer stream.Close()
	var msg anthropic.Message
	for stream.Next() {
		if err := msg.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	u := msg.Usage
	return u.InputTokens + u.CacheReadInputTokens + u.CacheCreationInputTokens, u.OutputTokens
}

// recordingTransport keeps the request the SDK handed to the next
// transport, with its body as the SDK wrote it.
type recordingTransport struct {
	next http.RoundTripper

	mu     sync.Mutex
	req    *http.Request
	body   []byte
	header http.Header
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.GetBody != nil {
		if rc, err := req.GetBody(); err == nil {
			b, _ := io.ReadAll(rc)
			r.mu.Lock()
			r.req, r.body, r.header = req, b, req.Header.Clone()
			r.mu.Unlock()
		}
	}
	return r.next.RoundTrip(req)
}

// go-openai's stream reader hands every chunk to its caller, who indexes
// Choices[0]. With WithStreamUsage the Transport asks OpenAI for the usage
// chunk (whose choices are empty) and removes it again before go-openai sees
// it, since the caller had not asked: the server sees include_usage, the
// caller's request is untouched, no chunk reaches the caller without a
// choice, and the usage is recorded and priced all the same.
func TestGoOpenAIStreamUsageAdded(t *testing.T) {
	h := newAPIHost(t, func(body []byte) string {
		var req struct {
			StreamOptions struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		if json.Unmarshal(body, &req) == nil && req.StreamOptions.IncludeUsage {
			return "openai-chat-stream-usage.sse"
		}
		return "openai-chat-stream-no-usage.sse"
	})
	tel := newTelemetry(t)
	qb := quotabreaker.New(h.base, append(tel.options(), quotabreaker.WithStreamUsage(true))...)
	rec := &recordingTransport{next: qb}
	cfg := goopenai.DefaultConfig("sk-proj-gostream")
	cfg.BaseURL = "http://api.openai.com/v1"
	cfg.HTTPClient = &http.Client{Transport: rec}
	client := goopenai.NewClientWithConfig(cfg)

	request := goopenai.ChatCompletionRequest{
		Model:    goopenai.GPT4o,
		Messages: []goopenai.ChatCompletionMessage{{Role: goopenai.ChatMessageRoleUser, Content: "Say hello."}},
		Stream:   true,
	}
	stream, err := client.CreateChatCompletionStream(context.Background(), request)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	chunks := 0
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		chunks++
		if len(chunk.Choices) == 0 {
			t.Fatalf("chunk %d has no choice: the usage chunk reached a caller that did not ask for it", chunks)
		}
		text.WriteString(chunk.Choices[0].Delta.Content) // what go-openai's callers do
		if chunk.Usage != nil {
			t.Errorf("chunk %d carries usage %+v", chunks, *chunk.Usage)
		}
	}
	stream.Close()

	// The stream the caller read is the one without include_usage: every
	// chunk of it, in order.
	want := fixture(t, "openai-chat-stream-no-usage.sse")
	if n := bytes.Count(want, []byte("\ndata: {")) + 1; chunks != n {
		t.Errorf("the caller received %d chunks, want %d (all but the usage chunk)", chunks, n)
	}
	if text.Len() == 0 {
		t.Error("no text streamed")
	}

	var sent struct {
		StreamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.Unmarshal(h.lastBody(), &sent); err != nil || sent.StreamOptions == nil || !sent.StreamOptions.IncludeUsage {
		t.Errorf("the server received %s, want stream_options.include_usage=true", h.lastBody())
	}
	rec.mu.Lock()
	callerBody, callerReq, callerHeader := rec.body, rec.req, rec.header
	rec.mu.Unlock()
	if bytes.Contains(callerBody, []byte("stream_options")) || !bytes.Contains(callerBody, []byte(`"stream":true`)) {
		t.Errorf("the caller's request body was %s before the Transport; the test expects it without stream_options", callerBody)
	}
	if rc, err := callerReq.GetBody(); err != nil {
		t.Fatal(err)
	} else if after, _ := io.ReadAll(rc); !bytes.Equal(after, callerBody) || callerReq.ContentLength != int64(len(callerBody)) {
		t.Errorf("the caller's request changed: body %s (Content-Length %d), was %s", after, callerReq.ContentLength, callerBody)
	}
	for k, v := range callerReq.Header {
		if strings.Join(v, ",") != strings.Join(callerHeader[k], ",") {
			t.Errorf("the caller's header %s changed: %q, was %q", k, v, callerHeader[k])
		}
	}

	// gpt-4o (dated 2024-08-06): 14 × 2.50 + 30 × 10 = 335 µ$.
	tel.check(t, spent{input: 14, output: 30, responseModel: "gpt-4o-2024-08-06", requestModel: "gpt-4o", usd: 0.000335, priced: true})
}

// A hard budget refuses the next call with a 402 that openai-go raises
// without retrying it: one attempt, and the server is not reached.
func TestOpenAIGoBudgetRefusal(t *testing.T) {
	h := newAPIHost(t, func([]byte) string { return "openai-chat-reasoning.json" })
	var fired []float64
	// One o3-mini answer costs 2089 µ$ (see TestUsageThroughSDKs); the
	// limit is spent by the second.
	qb := quotabreaker.New(h.base,
		quotabreaker.WithBudget(quotabreaker.Budget{Name: "daily", Limit: 0.004, HardLimit: true}),
		quotabreaker.OnBudget(func(_ context.Context, st quotabreaker.BudgetStatus) { fired = append(fired, st.Threshold) }))
	attempts := &recorder{next: qb}
	client := openaiClient(h, attempts)
	params := openai.ChatCompletionNewParams{
		Model:    "o3-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the capital of France?")},
	}
	for i := range 2 {
		if _, err := client.Chat.Completions.New(context.Background(), params); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := client.Chat.Completions.New(context.Background(), params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusPaymentRequired || apiErr.Code != "budget_exhausted" {
		t.Fatalf("third call: %v, want openai-go's 402 budget_exhausted", err)
	}
	if got := apiErr.Response.Header.Get(quotabreaker.HeaderBudget); got != "daily" {
		t.Errorf("%s = %q, want daily", quotabreaker.HeaderBudget, got)
	}
	if got := attempts.attempts(); got != 3 {
		t.Errorf("SDK attempts = %d, want 3 (the refusal is not retried)", got)
	}
	if got := h.hits.Load(); got != 2 {
		t.Errorf("server hits = %d, want 2", got)
	}
	if want := []float64{0.5, 0.8, 0.95, 1}; !slices.Equal(fired, want) {
		t.Errorf("OnBudget thresholds %v, want %v", fired, want)
	}
}
