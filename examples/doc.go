// Package examples holds runnable examples and integration tests that drive
// quotabreaker with real OpenAI SDKs (github.com/openai/openai-go/v3 and
// github.com/sashabaranov/go-openai) against an in-process fake of OpenAI's
// API. It is a separate module so that the SDKs and the OpenTelemetry SDK
// stay out of quotabreaker's own dependencies.
//
// The demo lives in cmd/quotabreaker-demo:
//
//	go run ./examples/cmd/quotabreaker-demo
package examples
