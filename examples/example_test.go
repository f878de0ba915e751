package examples_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	goopenai "github.com/sashabaranov/go-openai"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/examples/internal/fakeopenai"
)

// openai-go retries 429 answers twice by default. With quotabreaker as its
// transport, an insufficient_quota answer is not retried, the latch opens,
// and later calls fail at once without reaching the API.
func Example_openaiGo() {
	// A stand-in for api.openai.com: one success, then no quota left.
	api := fakeopenai.New()
	defer api.Close()
	api.Script("sk-demo", []fakeopenai.Answer{fakeopenai.OK}, fakeopenai.QuotaExhausted)

	qb := quotabreaker.New(http.DefaultTransport,
		quotabreaker.OnTrip(func(ctx context.Context, tr quotabreaker.Trip) {
			fmt.Println("page on-call:", tr.Code)
		}))
	client := openai.NewClient(
		option.WithHTTPClient(&http.Client{Transport: qb}),
		option.WithBaseURL(api.BaseURL()), // leave out for the real API
		option.WithAPIKey("sk-demo"),
	)

	for range 3 {
		resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
		})
		var apiErr *openai.Error
		switch {
		case errors.As(err, &apiErr) && apiErr.Code == "insufficient_quota":
			fmt.Println("out of quota:", apiErr.Response.Status, apiErr.Code)
		case err != nil:
			fmt.Println("error:", err)
		default:
			fmt.Println("reply:", resp.Choices[0].Message.Content)
		}
	}
	fmt.Println("requests that reached the API:", api.Hits())

	// Once billing is fixed:
	n, err := qb.ResetAll(context.Background())
	fmt.Println("latches closed:", n, err)

	// Output:
	// reply: Hello! How can I assist you today?
	// page on-call: insufficient_quota
	// out of quota: 429 Insufficient Quota insufficient_quota
	// out of quota: 429 Insufficient Quota insufficient_quota
	// requests that reached the API: 2
	// latches closed: 1 <nil>
}

// go-openai does not retry, but every call to an exhausted key would still
// reach the API. With quotabreaker, only the first does; the rest get the
// same *openai.APIError from the open latch.
func Example_goOpenAI() {
	api := fakeopenai.New()
	defer api.Close()
	api.Script("sk-demo", nil, fakeopenai.QuotaExhausted)

	cfg := goopenai.DefaultConfig("sk-demo")
	cfg.BaseURL = api.BaseURL() // leave out for the real API
	cfg.HTTPClient = &http.Client{Transport: quotabreaker.New(http.DefaultTransport)}
	client := goopenai.NewClientWithConfig(cfg)

	for range 3 {
		_, err := client.CreateChatCompletion(context.Background(), goopenai.ChatCompletionRequest{
			Model:    goopenai.GPT4oMini,
			Messages: []goopenai.ChatCompletionMessage{{Role: goopenai.ChatMessageRoleUser, Content: "Say hello."}},
		})
		var apiErr *goopenai.APIError
		if errors.As(err, &apiErr) && apiErr.Code == "insufficient_quota" {
			fmt.Println("out of quota:", apiErr.HTTPStatus, apiErr.Code)
		}
	}
	fmt.Println("requests that reached the API:", api.Hits())

	// Output:
	// out of quota: 429 Insufficient Quota insufficient_quota
	// out of quota: 429 Insufficient Quota insufficient_quota
	// out of quota: 429 Insufficient Quota insufficient_quota
	// requests that reached the API: 1
}
