// Package classify tells what an LLM provider's error answer means, whatever
// the provider: an exhausted quota (only a person fixing billing helps), a
// rate limit (later is fine), an overload, bad credentials, and so on, as a
// provider-neutral Class that spans, metrics and retry loops can act on.
//
// Answer reads an answer's status, headers and body (any bytes at all, in
// bounded time and memory, without allocating on the common bodies);
// StreamError does the same for an error sent inside a successful stream.
// The provider codes this package knows by name live in one table, which
// also decides which codes MetricCode lets metrics carry. Retryable,
// SDKRetries and RetryAfter say what a retry loop needs to know.
//
// The package imports only the standard library, so that a gateway or an
// SDK can use it without the Transport of the package above it.
package classify
