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
// Azure and Anthropic SDKs). It classifies every error answer with package
// classify's Answer;
// the first answer whose class trips (by default classify.QuotaExhausted) opens
// the latch of the credentials that made the call, a gobreaker circuit
// breaker that never closes on its own. OnTrip pages once; until Reset, no
// request of that scope reaches the network, and each gets an answer its SDK
// raises and does not retry. Rate limits and every other retryable answer
// pass through untouched, for the caller's retry logic. ModeObserve does all
// of this but refuses nothing, for watching production first. With
// WithStore, a fleet of replicas shares its latches, its budgets' spend and,
// with a store that implements ModeStore (redisstore's does), its mode: one
// switch, from any replica's Handler or redisstore's command, reaches them
// all, and a late message never undoes a newer switch.
//
// The Transport also reads the usage that successful answers report (plain
// and streamed, with package usage), prices it, hands it to OnUsage, counts
// it against budgets that warn at thresholds and can stop a key before the
// provider does, and classifies the errors that arrive inside 200 streams.
// RetryPolicy and Permanent tell a retry loop what not to send again.
//
// # Telemetry
//
// Each attempt records one span named after the HTTP method. It is a CLIENT
// span with OpenTelemetry's HTTP client attributes (http.request.method,
// server.address, server.port, url.full with credentials redacted,
// http.response.status_code), or an INTERNAL one when otelhttp's Transport
// sits inside or outside it, so that each attempt has one CLIENT span. It
// ends when the caller closes the body or reads it to the end. These
// attributes are the package's contract:
//
//	error.type                      the classify.Class of an error answer or stream error ("quota_exhausted", "rate_limited", ...)
//	gen_ai.provider.name            the classify.Provider, where known
//	quotabreaker.error.code         the provider's code, verbatim
//	quotabreaker.error.type         the provider's type, verbatim
//	quotabreaker.breaker.state      "closed" or "open"
//	quotabreaker.mode               "enforce" or "observe"
//	quotabreaker.short_circuit      true when the Transport answered without the network
//	quotabreaker.cause              on a refusal or would-be refusal: "answer", "stream" or "budget"
//	quotabreaker.budget             on a budget's refusal: the budget's name
//	quotabreaker.scope              the latch's scope (DefaultScope shows keys as fingerprints)
//	quotabreaker.scope.credential   "none" when the request carries no credential the Transport can find
//	quotabreaker.retry_after_ms     on rate_limited: the wait the provider asked for
//	quotabreaker.request_id         the provider's request id (on a refusal, the tripping answer's)
//	quotabreaker.ratelimit.remaining_requests, quotabreaker.ratelimit.remaining_tokens
//	gen_ai.request.model, gen_ai.response.model
//	gen_ai.usage.input_tokens, gen_ai.usage.output_tokens (cached and reasoning tokens included)
//	gen_ai.usage.cache_read.input_tokens, gen_ai.usage.cache_creation.input_tokens,
//	gen_ai.usage.reasoning.output_tokens
//	quotabreaker.cost.usd           the answer's cost in dollars; absent when its model has no price
//	quotabreaker.metering           on a successful answer: "priced", "unpriced" or "unmetered"
//	quotabreaker.usage.missing      on an unmetered answer, why: "no_usage", "cut_short", "closed_unread", "unknown_shape", "encoded"
//	quotabreaker.estimated          true when the cost is an estimate (an answer cut short), with
//	quotabreaker.estimate.input_tokens, quotabreaker.estimate.output_tokens
//	quotabreaker.would_short_circuit  in observe mode: true when enforcing would have refused the request
//	quotabreaker.store.up           with WithStore: whether the store answers reads (false while it is down)
//
// The tripping attempt's span has a quotabreaker.trip event. A reset is a
// span of its own, quotabreaker.reset, with quotabreaker.scope and
// quotabreaker.trip.class (the class that had tripped; a reset is not a
// failure, so it has no error.type).
//
// Metrics, recorded with the request's context:
//
//	quotabreaker.errors          counter {error}: error answers by error.type, quotabreaker.error.code, gen_ai.provider.name
//	quotabreaker.short_circuits  counter {request}: refusals (in observe mode, would-be refusals) by error.type, quotabreaker.mode, quotabreaker.cause
//	quotabreaker.trips           counter {trip}: latches opened, by error.type, quotabreaker.error.code, quotabreaker.mode
//	quotabreaker.open_latches    up-down counter {latch}: open latches; above 0 means traffic is refused
//	gen_ai.client.token.usage    histogram {token}: tokens per answer, by gen_ai.token.type
//	quotabreaker.cost            counter {USD}: dollars spent, by gen_ai.provider.name, gen_ai.request.model, gen_ai.response.model and quotabreaker.estimated
//	quotabreaker.answers         counter {answer}: successful answers by quotabreaker.metering (and quotabreaker.usage.missing), gen_ai.provider.name and the models
//	gen_ai.client.operation.duration  histogram s: each attempt that reached the network, until its body is done, by gen_ai.operation.name,
//	                             gen_ai.provider.name, gen_ai.request.model, server.address and, on a failure, error.type
//	quotabreaker.budget.spent_ratio  gauge 1: spent share of each budget key's limit, by quotabreaker.budget and quotabreaker.budget.key
//	quotabreaker.store.up        gauge: 1 while the store answers reads, 0 while it is unreachable
//	quotabreaker.store.writable  gauge: 1 while it takes writes too, 0 while it refuses them (a read-only
//	                             replica after a failover, an ACL, a corrupt value) or is unreachable
//	quotabreaker.store.invalid_changes  counter {change}: change messages dropped as invalid
//
// With both gauges the store's state is up (1, 1), read-only (1, 0) or down
// (0, 0), as the Handler's "store" field says; each change of state is
// logged once, with the number of calls that failed in the state it left.
//
// No metric attribute depends on sampling: the request's model is read for
// the metrics whether or not the span records.
//
// A metric's quotabreaker.error.code is the provider's code only when it is
// one the package knows, and "_OTHER" otherwise, so that a server cannot
// create metric series at will. No span, event or metric carries an API
// key, an Authorization header, a prompt or a completion.
package quotabreaker
