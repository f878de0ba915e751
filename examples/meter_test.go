package examples_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/quotabreaker/quotabreaker"
)

// The default streaming call of openai-go does not ask for usage. Under a
// budget the Transport asks for it all the same (the server sees
// stream_options.include_usage), hides the usage chunk from the SDK, which
// did not ask, and prices the stream: gpt-4o, 14 input and 30 output tokens
// at $2.50 and $10 per million, 14 × 2.5 + 30 × 10 = 335 µ$. Before, such a
// stream was counted nowhere.
func TestDefaultOpenAIStreamMeteredUnderBudget(t *testing.T) {
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
	qb := quotabreaker.New(h.base, append(tel.options(),
		quotabreaker.WithBudget(quotabreaker.Budget{Name: "team", Limit: 1, HardLimit: true}))...)
	stream := openaiClient(h, qb).Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
	})
	chunks := 0
	for stream.Next() {
		c := stream.Current()
		chunks++
		if len(c.Choices) == 0 {
			t.Errorf("chunk %d has no choice: the usage chunk reached an SDK that did not ask", chunks)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	stream.Close()
	st, err := qb.Budgets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Priced != 1 || st[0].Unmetered != 0 || st[0].Spent != 335e-6 {
		t.Errorf("Budgets() = %+v, want one stream priced at 335 µ$", st)
	}
	a := tel.onlySpan(t)
	if a["gen_ai.usage.input_tokens"].AsInt64() != 14 || a["gen_ai.usage.output_tokens"].AsInt64() != 30 || a["quotabreaker.metering"].AsString() != "priced" {
		t.Errorf("span attributes %v, want 14 in, 30 out, priced", a)
	}
}
