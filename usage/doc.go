// Package usage reads what an LLM provider's answer says it used: tokens in
// one shape for every provider (Tokens), the model, the service tier, and the
// errors a provider sends inside a successful answer, from a JSON body or an
// event stream, as the bytes pass (Observer) or from a whole body (Read).
//
// It also asks OpenAI-compatible streams for their usage chunk
// (RequestStreamUsage) and hides that chunk from a caller that did not ask
// for it (HideUsageChunk), so that a stream can be metered without changing
// what the caller reads.
//
// The package imports only the standard library and classify. It never
// keeps a prompt or a completion: it reads counters, the model and error
// fields, and skips the rest in bounded memory.
package usage
