// Package quotabreaker keeps OpenAI clients from retrying an answer that
// says the money ran out.
//
// OpenAI answers two opposite situations with the same HTTP 429:
// rate_limit_exceeded ("slow down": retrying with backoff is right) and
// insufficient_quota ("out of money": retrying never helps, and a person must
// fix billing). SDKs retry both, so a quota outage becomes a retry storm that
// monitoring reports as rate limiting.
//
// A Transport is an http.RoundTripper to set as the transport of any
// OpenAI-compatible SDK's http.Client (openai-go, go-openai, langchaingo, the
// Azure and Anthropic SDKs):
//
//	client := openai.NewClient(option.WithHTTPClient(&http.Client{
//		Transport: quotabreaker.New(http.DefaultTransport),
//	}))
//
// It classifies every error answer with Classify into a provider-neutral
// Class. A ClassQuotaExhausted answer opens a latch for the credentials that
// made the call (host, API key fingerprint, organization, project): a circuit
// breaker, built on github.com/sony/gobreaker/v2, that never closes on its
// own. The tripping answer goes back to the caller marked X-Should-Retry:
// false, so the SDK does not retry it, and OnTrip fires once. While the latch
// is open no request of that scope reaches the network: each receives a copy
// of the tripping answer (or, with WithShortCircuitError, an *OpenError).
// Reset or ResetAll closes it once billing is fixed.
//
// Rate limits, overload and server errors pass through untouched to the
// caller's retry logic, as do transport errors and every answer below 400.
//
// Each attempt records an OpenTelemetry client span whose error.type
// attribute is the Class, so "quota_exhausted" and "rate_limited" read apart
// in traces, and metrics count error answers, short circuits, trips and the
// open latches. The package imports only OpenTelemetry's API; without an SDK
// installed that costs next to nothing. The attribute and metric names are
// listed in the README.
package quotabreaker
