package classify_test

import (
	"fmt"
	"net/http"

	"github.com/quotabreaker/quotabreaker/classify"
)

func ExampleAnswer() {
	body := []byte(`{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`)
	c := classify.Answer(http.StatusTooManyRequests, nil, body)
	fmt.Println(c.Class, c.Code, c.Retryable)

	body = []byte(`{"error":{"message":"Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`)
	c = classify.Answer(http.StatusTooManyRequests, nil, body)
	fmt.Println(c.Class, c.Code, c.Retryable)
	// Output:
	// quota_exhausted insufficient_quota false
	// rate_limited rate_limit_exceeded true
}
