// Package usage reads what an LLM provider's answer says it used: tokens in
// one shape for every provider (Tokens), the model, the service tier, and the
// errors a provider sends inside a successful answer, from a JSON body, a
// JSON array of answers (Gemini's default stream) or an event stream, as the
// bytes pass (Observer) or from a whole body (Read); a gzip or deflate body
// the caller asked for is kept, bounded, and read through a decoder at its
// end.
// It reads the usage of OpenAI's Chat Completions, Responses and Embeddings,
// of the servers that copy them, of Anthropic's Messages and of Gemini's
// generateContent.
//
// When an answer's usage is unknown, Result.Metering says why (no usage, cut
// short, closed unread, a shape it cannot read, an encoding it does not
// decode), never zero; for an answer cut short, Result.Estimate estimates it
// from the request's size and the text the stream carried.
//
// It also asks OpenAI-compatible streams for their usage chunk
// (AskStreamUsage for a request, RequestStreamUsage for its body) and hides
// that chunk from a caller that did not ask for it (HideUsageChunk), so that
// a stream can be metered without changing what the caller reads; and it
// reads the model a request asks for (ReadRequestModel), for an answer that
// does not name its own.
//
// The package imports only the standard library, classify and its module's
// internal packages. It never keeps a prompt or a completion: it reads
// counters, the model and error fields, counts the bytes of generated text
// without keeping them, and skips the rest in bounded memory.
package usage
