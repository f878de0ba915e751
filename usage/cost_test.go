package usage

import (
	"net/http"
	"testing"
)

// TestProviderCost reads the cost an answer states: OpenRouter's usage.cost
// (https://openrouter.ai/docs/use-cases/usage-accounting) and xAI's
// usage.cost_in_usd_ticks (https://docs.x.ai/developers/cost-tracking), in
// a JSON body and in the last chunk of a stream.
func TestProviderCost(t *testing.T) {
	jsonH := http.Header{"Content-Type": {"application/json"}}
	sseH := http.Header{"Content-Type": {"text/event-stream"}}
	for _, tc := range []struct {
		name   string
		h      http.Header
		body   string
		ok     bool
		micros int64
	}{
		{"openrouter", jsonH, `{"id":"gen-1","model":"openai/gpt-4o","choices":[],"usage":{"prompt_tokens":194,"completion_tokens":2,"total_tokens":196,"cost":0.95,"cost_details":{"upstream_inference_cost":19}}}`, true, 950000},
		{"xai", jsonH, `{"model":"grok-4","choices":[],"usage":{"prompt_tokens":37,"completion_tokens":530,"total_tokens":567,"cost_in_usd_ticks":37756000}}`, true, 3776},
		{"both: ticks win", jsonH, `{"usage":{"prompt_tokens":1,"completion_tokens":1,"cost_in_usd_ticks":10000,"cost":5}}`, true, 1},
		{"stream", sseH, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"cost\":0.000012}}\n\ndata: [DONE]\n\n", true, 12},
		{"none", jsonH, `{"usage":{"prompt_tokens":3,"completion_tokens":1}}`, false, 0},
		{"not a cost", jsonH, `{"usage":{"prompt_tokens":3,"completion_tokens":1,"cost":"0.5"}}`, false, 0},
		{"negative", jsonH, `{"usage":{"prompt_tokens":3,"completion_tokens":1,"cost":-1}}`, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Read(tc.h, []byte(tc.body))
			if !r.Known || r.ProviderCost != tc.ok || r.ProviderCostMicros != tc.micros {
				t.Errorf("Read = known %v, cost %v %d; want %v %d", r.Known, r.ProviderCost, r.ProviderCostMicros, tc.ok, tc.micros)
			}
		})
	}
}
