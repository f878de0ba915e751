package examples_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/classify"
)

// A 200 stream can still fail. Each real stream below carries an error
// inside it; through the Transport the caller reads every byte as sent, the
// attempt's span says what the error was (error.type, with
// quotabreaker.cause=stream), the error counter counts it, and only a
// tripping class opens the latch.
func TestErrorsInsideStreams(t *testing.T) {
	for _, tt := range []struct {
		fixture string
		url     string
		class   classify.Class
		code    string
		trips   bool
	}{
		// Anthropic's documented overloaded_error event.
		{"anthropic-stream-error-overloaded-docs.sse", "http://api.anthropic.com/v1/messages",
			classify.Overloaded, "overloaded_error", false},
		// A recorded Anthropic stream that fails after message_start: an
		// api_error whose message says "Overloaded".
		{"anthropic-stream-error-mid-stream.sse", "http://api.anthropic.com/v1/messages",
			classify.Overloaded, "api_error", false},
		// The end of a real Anthropic stream, pasted in an issue.
		{"anthropic-stream-error-api-error.sse", "http://api.anthropic.com/v1/messages",
			classify.ServerError, "api_error", false},
		// The Responses API's documented response.failed, with its code.
		{"openai-responses-stream-failed-docs.sse", "http://api.openai.com/v1/responses",
			classify.ServerError, "server_error", false},
		// The Responses API's documented error event.
		{"openai-responses-stream-error-docs.sse", "http://api.openai.com/v1/responses",
			classify.ServerError, "ERR_SOMETHING", false},
		// A recorded Chat Completions stream ending in a data: {"error":...}
		// chunk.
		{"openai-chat-stream-error-chunk.sse", "http://api.openai.com/v1/chat/completions",
			classify.ServerError, "server_error", false},
		// Groq's event: error with its own status_code 400.
		{"groq-chat-stream-error-tool-use-failed.sse", "http://api.groq.com/openai/v1/chat/completions",
			classify.InvalidRequest, "tool_use_failed", false},
		// Gemini's raw JSON error after its data: lines.
		{"gemini-stream-trailing-error.sse", "http://generativelanguage.googleapis.com/v1beta/models/gemma-4-31b-it:streamGenerateContent?alt=sse",
			classify.Overloaded, "UNAVAILABLE", false},
		// The in-band insufficient_quota event OpenAI sent when credit ran
		// out: it trips.
		{"openai-responses-stream-error-insufficient-quota.sse", "http://api.openai.com/v1/responses",
			classify.QuotaExhausted, "insufficient_quota", true},
	} {
		t.Run(tt.fixture, func(t *testing.T) {
			h := newAPIHost(t, func([]byte) string { return tt.fixture })
			tel := newTelemetry(t)
			qb := quotabreaker.New(h.base, tel.options()...)
			client := &http.Client{Transport: qb}

			got := postRead(t, client, tt.url)
			if want := fixture(t, tt.fixture); !bytes.Equal(got, want) {
				t.Errorf("the caller read %d bytes that differ from the %d the server sent", len(got), len(want))
			}

			spans := tel.ours()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			a := map[attribute.Key]string{}
			for _, kv := range spans[0].Attributes() {
				a[kv.Key] = kv.Value.String()
			}
			if a["error.type"] != string(tt.class) || a["quotabreaker.cause"] != "stream" || a["quotabreaker.error.code"] != tt.code ||
				a["http.response.status_code"] != "200" {
				t.Errorf("span: error.type %q cause %q code %q status %q; want %q stream %q 200",
					a["error.type"], a["quotabreaker.cause"], a["quotabreaker.error.code"], a["http.response.status_code"], tt.class, tt.code)
			}
			if spans[0].Status().Code != codes.Error {
				t.Errorf("span status %v, want Error", spans[0].Status())
			}
			if n := streamErrorsCounted(t, tel, tt.class); n != 1 {
				t.Errorf("quotabreaker.errors{error.type=%s, quotabreaker.cause=stream} = %d, want 1", tt.class, n)
			}

			trips, err := qb.OpenLatches(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if (len(trips) == 1) != tt.trips || len(trips) > 1 {
				t.Fatalf("open latches %+v, want a latch: %v", trips, tt.trips)
			}
			// The next request of the same key: refused without the network
			// if the error tripped, sent otherwise.
			req, _ := http.NewRequest(http.MethodPost, tt.url, strings.NewReader(`{}`))
			req.Header.Set("Authorization", "Bearer "+streamKey)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			wantHits := int64(2)
			if tt.trips {
				wantHits = 1
				tr := trips[0]
				if tr.Cause != quotabreaker.CauseStream || tr.Class != tt.class || tr.Code != tt.code || tr.StatusCode != http.StatusTooManyRequests {
					t.Errorf("trip %+v, want cause stream, %s, %s, 429", tr, tt.class, tt.code)
				}
				if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get(quotabreaker.HeaderShortCircuit) != "true" ||
					resp.Header.Get(quotabreaker.HeaderShouldRetry) != "false" {
					t.Errorf("next answer %s, %s %q, %s %q; want a refused 429 not to retry", resp.Status,
						quotabreaker.HeaderShortCircuit, resp.Header.Get(quotabreaker.HeaderShortCircuit),
						quotabreaker.HeaderShouldRetry, resp.Header.Get(quotabreaker.HeaderShouldRetry))
				}
			}
			if got := h.hits.Load(); got != wantHits {
				t.Errorf("server hits = %d, want %d", got, wantHits)
			}
		})
	}
}

const streamKey = "sk-proj-stream-errors"

// postRead posts to url through client and reads the answer to its end.
func postRead(t *testing.T, client *http.Client, url string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"model":"m","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+streamKey)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s, want 200", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// streamErrorsCounted returns the error counter's value for class with
// quotabreaker.cause=stream.
func streamErrorsCounted(t *testing.T, tel *telemetry, class classify.Class) int64 {
	t.Helper()
	var n int64
	for _, m := range tel.collect(t) {
		if m.Name != "quotabreaker.errors" {
			continue
		}
		for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
			et, _ := p.Attributes.Value("error.type")
			cause, _ := p.Attributes.Value("quotabreaker.cause")
			if et.AsString() == string(class) && cause.AsString() == "stream" {
				n += p.Value
			}
		}
	}
	return n
}

// openai-go reads the insufficient_quota event of a Responses stream as the
// stream's error. The latch it opened refuses the next call without
// reaching OpenAI, and openai-go raises that answer without retrying it.
func TestOpenAIGoQuotaInsideResponsesStream(t *testing.T) {
	h := newAPIHost(t, func([]byte) string { return "openai-responses-stream-error-insufficient-quota.sse" })
	qb := quotabreaker.New(h.base)
	client := openaiClient(h, qb)
	params := responses.ResponseNewParams{
		Model: "gpt-5",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello.")},
	}

	stream := client.Responses.NewStreaming(context.Background(), params)
	for stream.Next() {
	}
	if err := stream.Err(); err == nil || !strings.Contains(err.Error(), "quota") {
		t.Errorf("stream error %v, want the SDK's reading of the quota event", err)
	}
	stream.Close()

	_, err := client.Responses.New(context.Background(), params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests || apiErr.Code != "insufficient_quota" {
		t.Fatalf("next call: %v, want openai-go's 429 insufficient_quota", err)
	}
	if got := apiErr.Response.Header.Get(quotabreaker.HeaderShortCircuit); got != "true" {
		t.Errorf("next call not refused by the latch (%s %q)", quotabreaker.HeaderShortCircuit, got)
	}
	if got := h.hits.Load(); got != 1 {
		t.Errorf("server hits = %d, want 1: the refused call was sent or retried", got)
	}
}
