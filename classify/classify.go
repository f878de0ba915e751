package classify

import (
	"bytes"
	"net/http"
	"sync"

	"github.com/quotabreaker/quotabreaker/internal/jsonscan"
)

// Class is a provider-neutral error class. The values are a public contract:
// they appear as the error.type span attribute, in metrics and in dashboards,
// and they will not change.
type Class string

// The classes Answer returns for an error answer.
const (
	// QuotaExhausted: credit, quota or a spend cap is exhausted. Retrying
	// never helps; only a person fixing billing does.
	QuotaExhausted Class = "quota_exhausted"
	// RateLimited: a per-minute or per-day rate limit. Later is fine.
	RateLimited Class = "rate_limited"
	// Overloaded: the provider is overloaded or out of capacity.
	Overloaded Class = "overloaded"
	// ServerError: any other 5xx answer from the provider.
	ServerError Class = "server_error"
	// ContextLengthExceeded: prompt plus completion exceed the model's window.
	ContextLengthExceeded Class = "context_length_exceeded"
	// ModelNotFound: an unknown, retired or inaccessible model.
	ModelNotFound Class = "model_not_found"
	// Authentication: missing, invalid, revoked or deactivated credentials.
	Authentication Class = "authentication"
	// Permission: forbidden, for example by region or organization.
	Permission Class = "permission"
	// InvalidRequest: any other 4xx answer the caller must fix.
	InvalidRequest Class = "invalid_request"
	// ContentFilter: refused by a content policy.
	ContentFilter Class = "content_filter"
	// Other: an error status with nothing recognisable in the answer.
	Other Class = "other"
)

// Result is what Answer makes of one HTTP answer.
type Result struct {
	Class     Class    // provider-neutral class; "" for a status below 400
	Provider  Provider // "" when unknown
	Code      string   // the provider's own error code, verbatim ("insufficient_quota")
	Type      string   // the provider's own error type, verbatim
	Retryable bool     // whether sending the same request later can succeed
}

// maxMessageScan bounds how much of an error message the text rules look
// at; the phrases they need come first in every real message.
const maxMessageScan = 4 << 10

// Answer turns an HTTP answer into a provider-neutral Result.
// It is pure and safe for concurrent use; body may be a prefix of the real
// body, in any encoding (non-JSON, truncated and empty bodies fall back to the
// status). A status below 400 yields the zero Result.
//
// Answer reads the meaning of the provider's structured fields first:
// code, then Anthropic's details.error_code, type, Google's ErrorInfo reason,
// Azure's inner code and Google's status, each normalised for case and
// separators so that "INSUFFICIENT_BALANCE", "AccountOverdueError" and
// "AllocationQuota.FreeTierOnly" are read by the words they are made of.
// Where those say nothing specific ("invalid_request_error", a number, null)
// it reads the message, in English and Chinese; then the status.
//
// A quota verdict stops all traffic until someone resets the latch, while a
// wrong rate-limit verdict costs a retry, so every quota verdict is vetoed
// when the message speaks of a rate limit (per minute or day, RPM/TPM,
// concurrency, "try again in", ...), and a body that repeats its code or type
// with different values is never a quota verdict. A 429 Answer cannot place
// is RateLimited.
//
// A gateway's answer that wraps the upstream provider's body in
// error.metadata.raw (OpenRouter's "Provider returned error") is classified
// by the upstream body, one level deep; Code and Type are then the upstream's.
//
// A message is read with its JSON escapes applied: Python's and Flask's JSON
// writers send "\u4f59\u989d\u4e0d\u8db3" for 余额不足, and its words must
// count as the UTF-8 ones do.
func Answer(status int, header http.Header, body []byte) Result {
	if status < 400 {
		return Result{}
	}
	var f errorFields
	f.parse(body)
	if f.messageEscaped() {
		return f.answerUnescaped(status, header)
	}
	return f.answer(status, header)
}

// answerUnescaped is answer for a message that holds escapes, read through
// a pooled buffer.
func (f *errorFields) answerUnescaped(status int, header http.Header) Result {
	buf := messageBuffers.Get().(*[maxMessageScan]byte)
	defer messageBuffers.Put(buf)
	f.message = jsonscan.AppendUnescaped(buf[:0], f.scanMessage())
	return f.answer(status, header)
}

// messageBuffers hold the unescaped text of a message while its answer is
// classified: escaped messages are common behind Python relays, and a pooled
// buffer keeps them at no allocation. The text never grows when unescaped,
// so maxMessageScan bytes hold the part of any message the rules read.
var messageBuffers = sync.Pool{New: func() any { return new([maxMessageScan]byte) }}

// answer is Answer's verdict from the parsed fields, or from those of the
// upstream answer a gateway wrapped in metadata.raw when the outer fields
// say nothing specific and the upstream is a provider error.
func (f *errorFields) answer(status int, header http.Header) Result {
	judged := f
	var inner errorFields
	if len(f.raw) > 0 && f.meaning() == "" && inner.nested(f) {
		judged = &inner
	}
	return judged.classification(status, header, f)
}

// messageEscaped reports whether the part of the message the text rules
// read holds a JSON escape.
func (f *errorFields) messageEscaped() bool {
	return bytes.IndexByte(f.scanMessage(), '\\') >= 0
}

// nested fills f from the upstream answer a gateway wrapped in outer's
// metadata.raw and reports whether that is a provider error. The outer
// answer still names the provider and counts for conflicting duplicates.
func (f *errorFields) nested(outer *errorFields) bool {
	f.parseNested(outer.raw, outer.rawEscaped)
	if !f.structured() {
		return false
	}
	if f.messageEscaped() { // a rare path that already allocates
		f.message = jsonscan.AppendUnescaped(nil, f.scanMessage())
	}
	f.conflict = f.conflict || outer.conflict
	return true
}

// classification is Answer's verdict from the fields in f; outer is the
// answer as received, which names the provider.
func (f *errorFields) classification(status int, header http.Header, outer *errorFields) Result {
	c := Result{
		Provider: detectProvider(header, outer),
		Code:     f.codeString(),
		Type:     f.typeString(),
		Class:    f.class(status),
	}
	c.Retryable = c.Class.Retryable(status)
	return c
}

// hintRateLimit is the meaning of OpenAI's rate-limit types "requests" and
// "tokens": a rate limit under 429, and a reason not to read billing words
// in the message under any status.
const hintRateLimit Class = "rate_limit_hint"

// googleStatusClasses maps Google's canonical error status (Gemini's native
// API and its OpenAI-compatible endpoint) to a class. RESOURCE_EXHAUSTED is a
// rate limit even when its message says "exceeded your current quota": Google
// uses it for per-minute and per-day limits that heal by themselves, and for
// models a free tier does not include ("limit: 0"), which the same key can
// live without. Only a message in googleBillingPhrases makes it a quota.
var googleStatusClasses = map[string]Class{
	"RESOURCE_EXHAUSTED": RateLimited,
	"UNAVAILABLE":        Overloaded,
	"UNAUTHENTICATED":    Authentication,
	"PERMISSION_DENIED":  Permission,
	"INTERNAL":           ServerError,
	"DEADLINE_EXCEEDED":  ServerError,
}

// meaning is the class the structured fields name, most specific first:
// "" when none of them says anything specific. Google's status, which says
// less than a message, is read after the message rules, except
// RESOURCE_EXHAUSTED.
func (f *errorFields) meaning() Class {
	var t token
	if !f.codeProse() {
		if m := t.fieldMeaning(f.code, f.codeEscaped); m != "" {
			return m
		}
	}
	for _, v := range [...]struct {
		raw     []byte
		escaped bool
	}{{f.detailCode, false}, {f.typ, f.typEscaped}, {f.reason, false}, {f.innerCode, false}} {
		if m := t.fieldMeaning(v.raw, v.escaped); m != "" {
			return m
		}
	}
	if f.google && string(f.status) == "RESOURCE_EXHAUSTED" {
		// Google's rate limits and per-day quotas: its message may say
		// "quota" and "billing" and mean neither, unless it says that
		// prepaid credit ran out.
		if containsAnyFold(f.scanMessage(), googleBillingPhrases) {
			return QuotaExhausted
		}
		return RateLimited
	}
	return ""
}

// googleBillingPhrases say, in a RESOURCE_EXHAUSTED message, that an
// account's prepaid credit ran out ("Your prepayment credits are depleted"),
// which no wait heals. "billing" alone does not: the free tier's per-minute
// message says "check your plan and billing details".
var googleBillingPhrases = []string{"prepayment", "credits are depleted", "credits have been depleted", "out of credits"}

// codeProse reports whether the code member is a sentence rather than a
// code (xAI sends gRPC's status text there); its words say nothing.
func (f *errorFields) codeProse() bool {
	return bytes.IndexByte(f.code, ' ') >= 0
}

// class decides the Class of an error answer with the given status.
func (f *errorFields) class(status int) Class {
	switch m := f.meaning(); m {
	case QuotaExhausted:
		return f.quota(status)
	case RateLimited, hintRateLimit:
		head := headPhrases(f.message)
		if c, ok := head.refinement(status); ok {
			return c
		}
		if m == RateLimited && head.paid {
			// A rate-limit type whose message says only money unlocks the
			// request (Anthropic's "Extra usage is required for long
			// context requests"); quota vetoes it if it speaks of a rate.
			return f.quota(status)
		}
		if m == RateLimited || status == http.StatusTooManyRequests {
			return RateLimited
		}
		return statusClass(status, f.structured())
	case "":
		if c, ok := f.textClass(status); ok {
			return c
		}
		if c, ok := googleStatusClasses[string(f.status)]; ok && f.google {
			return c
		}
		c := statusClass(status, f.structured())
		if c == QuotaExhausted {
			return f.quota(status)
		}
		return c
	case Permission:
		// xAI's permission-denied covers both a banned account and a
		// refused prompt; the message tells them apart.
		if containsAnyFold(f.scanMessage(), contentPhrases) {
			return ContentFilter
		}
		return m
	default:
		return m
	}
}

// quota returns QuotaExhausted for an answer whose words say credit,
// balance or a spend cap ran out, unless its message speaks of a rate limit
// or its fields contradict each other. A vetoed verdict is a rate limit
// under 429 and the status's class otherwise.
func (f *errorFields) quota(status int) Class {
	rate := rateWords(f.scanMessage())
	if !f.conflict && !rate {
		return QuotaExhausted
	}
	c := statusClass(status, f.structured())
	switch {
	case rate && status < 500:
		return RateLimited
	case c == QuotaExhausted: // a 402 whose fields contradict each other
		return Other
	}
	return c
}

// rateRefinement places a rate-limit answer that is not one: a single
// request larger than the whole per-minute budget (OpenAI's and Groq's
// "Request too large ... on tokens per min") can never succeed by waiting,
// and "overloaded" or "no capacity" under 429 is the provider's load, not
// the caller's rate. It runs on every ordinary 429, so it reads only the
// head of the message, where these phrases stand in every real answer.
func (head head) refinement(status int) (Class, bool) {
	switch {
	case head.tooLarge && (status == http.StatusTooManyRequests || status == http.StatusRequestEntityTooLarge):
		return InvalidRequest, true
	case head.overload && (status == http.StatusTooManyRequests || status >= 500):
		return Overloaded, true
	}
	return "", false
}

// refinementScan is how much of a message headPhrases reads: enough for a
// gateway's prefix ("azure-openai error: ") before the provider's words.
const refinementScan = 80

// head is what the head of a message says, as headPhrases reads it.
type head struct {
	tooLarge bool // "too large": a request larger than the whole budget
	overload bool // "overload", "capacity", "high demand": the provider's load
	paid     bool // "extra usage", "credits are required": only money unlocks it
}

// headPhrases reads the phrases of head from the start of msg, ignoring
// ASCII case. One pass looks for each phrase's least common letter (marked
// in headLetters, so that every other byte costs one load) and compares
// around it.
func headPhrases(msg []byte) (h head) {
	if len(msg) > refinementScan {
		msg = msg[:refinementScan]
	}
	for i, c := range msg {
		if c |= 0x20; !headLetters[c] {
			continue
		}
		switch c {
		case 'g': // too lar[g]e
			h.tooLarge = h.tooLarge || phraseAt(msg, i-7, "too large")
		case 'v': // o[v]erload
			h.overload = h.overload || phraseAt(msg, i-1, "overload")
		case 'y': // capacit[y]
			h.overload = h.overload || phraseAt(msg, i-7, "capacity")
		case 'm': // high de[m]and
			h.overload = h.overload || phraseAt(msg, i-7, "high demand")
		case 'x': // e[x]tra usage
			h.paid = h.paid || phraseAt(msg, i-1, "extra usage")
		case 'q': // credits are re[q]uired
			h.paid = h.paid || phraseAt(msg, i-14, "credits are required")
		}
	}
	return h
}

// headLetters are the letters headPhrases stops at.
var headLetters = [256]bool{'g': true, 'v': true, 'y': true, 'm': true, 'x': true, 'q': true}

// phraseAt reports whether msg holds phrase (lower case) at i, ignoring
// ASCII case.
func phraseAt(msg []byte, i int, phrase string) bool {
	return i >= 0 && i+len(phrase) <= len(msg) && equalFold(msg[i:], phrase)
}

func (f *errorFields) scanMessage() []byte {
	if len(f.message) > maxMessageScan {
		return f.message[:maxMessageScan]
	}
	return f.message
}

// quotaPhrases say in a message that credit, balance or a spend cap ran
// out, in English and Chinese (insufficient balance, in arrears, recharge,
// allowance insufficient). They are the words of the corpus's answers and
// of the messages FINDINGS.md quotes, in the spellings providers use.
var quotaPhrases = []string{
	"insufficient balance", "insufficient account balance", "insufficient credit",
	"insufficient fund", "insufficient quota", "balance is insufficient", "quota is not enough",
	"credit balance is too low", "out of credits", "run out of credits", "no credits remaining",
	"have any credits", "used all available credits", "extra usage", "credits are required",
	"credits are depleted", "prepayment credits",
	"budget has been exceeded", "exceeded budget", "over budget", "budget exceeded",
	"spend limit", "spending limit", "api usage limit",
	"arrears", "overdue", "past due", "pay past invoices", "payment required", "recharge",
	"余额不足", "欠费", "充值", "额度不足", "配额不足", "额度已用尽", "额度已用完", "预扣费额度失败",
}

// ratePhrases speak of a rate limit: a quota verdict is vetoed when its
// message holds one, because providers write "quota" and "billing" into
// per-minute and per-day limits that heal by themselves.
var ratePhrases = []string{
	"per minute", "per_minute", "per min ", "per min.", "/min", "per second", "per hour", "per_hour",
	"per day", "per_day", "per-day", "daily",
	"requests per", "tokens per", "queries per",
	"rate limit", "rate-limit", "rate_limit", "ratelimit",
	"too many requests", "concurren", "throttl", "slow down",
	"try again in", "try again after", "try again later", "retry after", "retry in", "retry shortly", "please retry",
	"token-limit",
	// A quota that says when it comes back heals by itself (Google's
	// QUOTA_EXHAUSTED "Your quota will reset after 161h39m41s").
	"will reset", "reset after", "resets after", "resets in",
	"频率", "并发", "每分钟", "每秒", "每小时", "每天", "每日", "稍后再试", "稍后重试", "限流", "速率",
}

// rateAbbreviations are rate-limit units, matched as whole words only
// ("tpm", not the "tps" in "https").
var rateAbbreviations = []string{"rpm", "tpm", "rpd", "tpd", "qpm", "qps", "ipm"}

// rateWords reports whether a message speaks of a rate limit.
func rateWords(msg []byte) bool {
	if len(msg) == 0 {
		return false
	}
	if containsAnyFold(msg, ratePhrases) {
		return true
	}
	for _, w := range rateAbbreviations {
		if containsWordFold(msg, w) {
			return true
		}
	}
	return false
}

// overloadPhrases, contentPhrases, locationPhrases and modelGonePhrases are
// the message rules for the other classes, read only when the structured
// fields say nothing specific.
var (
	overloadPhrases  = []string{"overload", "no capacity", "capacity exceeded", "at capacity", "out of capacity", "high demand"}
	contentPhrases   = []string{"safety system", "usage policy", "content policy", "content management policy", "content exists risk", "inappropriate content", "sensitive words", "sensitive content", "content filter", "usage guidelines", "不安全", "敏感"}
	locationPhrases  = []string{"location is not supported", "not available in your region", "country, region, or territory"}
	modelGonePhrases = []string{"has been decommissioned", "has been deprecated", "model not exist"}
	// contextPhrases say that prompt and completion exceed the window: OpenAI
	// before its code (and vLLM), Anthropic (twice), Text Generation
	// Inference's validation error and SGLang.
	contextPhrases = []string{"maximum context length", "prompt is too long", "exceed context limit", "`max_new_tokens` must be <=",
		"is longer than the model"} // SGLang: "The input (61709 tokens) is longer than the model's context length"
	// permissionPhrases: an account refused as a whole under a generic type.
	permissionPhrases = []string{"organization has been disabled"}
)

// textClass holds the message rules, for answers whose structured fields
// say nothing more specific than "invalid request" or "server error".
// Each rule is tied to statuses and to phrases seen in real answers.
func (f *errorFields) textClass(status int) (Class, bool) {
	msg := f.scanMessage()
	if len(msg) == 0 {
		return "", false
	}
	if containsAnyFold(msg, quotaPhrases) {
		// Trusted under any error status, 5xx included: MiniMax sends its
		// "insufficient balance (1008)" as 500, and a retry never helps.
		return f.quota(status), true
	}
	if c, ok := headPhrases(f.message).refinement(status); ok {
		return c, true
	}
	switch {
	case status >= 500:
		if containsAnyFold(msg, overloadPhrases) {
			return Overloaded, true
		}
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge || status == http.StatusUnprocessableEntity:
		if containsAnyFold(msg, contextPhrases) ||
			(containsFold(msg, "input token count") && containsFold(msg, "exceeds the maximum")) { // Gemini
			return ContextLengthExceeded, true
		}
	case status == http.StatusNotFound:
		if f.anthropic && bytes.HasPrefix(msg, []byte("model:")) {
			return ModelNotFound, true
		}
		if containsFold(msg, "model") && (containsFold(msg, "does not exist") || containsFold(msg, "not found")) {
			return ModelNotFound, true
		}
	}
	if status == http.StatusBadRequest || status == http.StatusForbidden || status == http.StatusUnprocessableEntity {
		switch {
		case containsAnyFold(msg, contentPhrases):
			return ContentFilter, true
		case containsAnyFold(msg, locationPhrases), containsAnyFold(msg, permissionPhrases):
			return Permission, true
		case containsFold(msg, "api key was reported as leaked"): // Gemini revokes such keys
			return Authentication, true
		case containsAnyFold(msg, modelGonePhrases) && containsFold(msg, "model"):
			return ModelNotFound, true
		}
	}
	return "", false
}

// statusClass is the fallback when the body names nothing more specific.
// structured reports whether the body was a recognisable provider error:
// then any other 4xx is the caller's to fix; otherwise (an HTML page from a
// proxy, an empty body) it is Other. A 5xx is a server error either way,
// and a provider's own 503 means it is overloaded.
func statusClass(status int, structured bool) Class {
	switch status {
	case http.StatusTooManyRequests:
		return RateLimited
	case http.StatusUnauthorized:
		return Authentication
	case http.StatusForbidden:
		return Permission
	case http.StatusRequestEntityTooLarge:
		return InvalidRequest
	case 529: // Anthropic's "overloaded"
		return Overloaded
	case http.StatusRequestTimeout, http.StatusConflict:
		return Other
	}
	switch {
	case status == http.StatusPaymentRequired && structured:
		// "Payment Required" from the provider itself; an HTML page from
		// something in between is not enough to stop all traffic.
		return QuotaExhausted
	case status == http.StatusServiceUnavailable && structured:
		return Overloaded
	case status >= 500:
		return ServerError
	case structured:
		return InvalidRequest
	}
	return Other
}

func (f *errorFields) structured() bool {
	return f.errorObject || f.flat
}

// codeString returns the provider's code verbatim: Google's status for
// Google's shape; Anthropic's details.error_code where it refines the type;
// the type for providers whose errors have no code member at
// all (Anthropic, Moonshot), whose type is their code; otherwise the code,
// "" when it is null.
func (f *errorFields) codeString() string {
	switch {
	case f.google && len(f.status) > 0:
		return fieldString(f.status, false)
	case len(f.detailCode) > 0: // Anthropic's refinement of its type
		return fieldString(f.detailCode, false)
	case !f.codePresent:
		return fieldString(f.typ, f.typEscaped)
	}
	return fieldString(f.code, f.codeEscaped)
}

func (f *errorFields) typeString() string {
	return fieldString(f.typ, f.typEscaped)
}

// fieldString returns a code or type as a bounded string; the common ones
// are constants, which spares the hot path (an ordinary 429) its
// allocations.
func fieldString(raw []byte, escaped bool) string {
	if !escaped {
		if s, ok := intern(raw); ok {
			return s
		}
	}
	return jsonscan.Text(raw, escaped)
}

func containsAnyFold(s []byte, substrs []string) bool {
	for _, sub := range substrs {
		if containsFold(s, sub) {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains substr, ignoring ASCII case.
// substr must be lower case.
func containsFold(s []byte, substr string) bool {
	n := len(substr)
	for i := 0; i+n <= len(s); i++ {
		j := 0
		for ; j < n; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != substr[j] {
				break
			}
		}
		if j == n {
			return true
		}
	}
	return false
}

// intern returns the common codes and types as constants, which spares the
// hot path (an ordinary 429) its allocations.
func intern(raw []byte) (string, bool) {
	switch string(raw) {
	case "rate_limit_exceeded":
		return "rate_limit_exceeded", true
	case "tokens":
		return "tokens", true
	case "requests":
		return "requests", true
	case "insufficient_quota":
		return "insufficient_quota", true
	case "invalid_request_error":
		return "invalid_request_error", true
	case "rate_limit_error":
		return "rate_limit_error", true
	case "overloaded_error":
		return "overloaded_error", true
	case "server_error":
		return "server_error", true
	case "api_error":
		return "api_error", true
	case "RESOURCE_EXHAUSTED":
		return "RESOURCE_EXHAUSTED", true
	case "429":
		return "429", true
	}
	return "", false
}

// tokenLen bounds a normalised code or type; longer ones carry no meaning.
const tokenLen = 64

// token is a code or type normalised to lower-case words joined by '_', so
// that its words can be read whatever the provider's spelling:
// "AccountOverdueError" is account_overdue, "AllocationQuota.FreeTierOnly"
// allocation_quota_free_tier_only, "INSUFFICIENT_BALANCE" insufficient_balance
// and "insufficient_balance_error" insufficient_balance. It lives on the
// stack.
type token struct {
	b [tokenLen]byte
	n int
}

// set normalises raw into t; t.n is 0 when raw is empty or too long.
func (t *token) set(raw []byte, escaped bool) {
	t.n = 0
	if len(raw) == 0 || len(raw) > tokenLen {
		return
	}
	if escaped {
		raw = jsonscan.Unescape(raw)
	}
	const (
		sep = iota
		lower
		upper
	)
	prev := sep
	for i, c := range raw {
		switch {
		case 'A' <= c && c <= 'Z':
			// A word starts at an upper-case letter after a lower-case one
			// ("accountOverdue"), or at the last capital of an acronym
			// before a lower-case letter ("AIPolicy").
			if prev == lower || (prev == upper && i+1 < len(raw) && 'a' <= raw[i+1] && raw[i+1] <= 'z') {
				t.put('_')
			}
			t.put(c + 'a' - 'A')
			prev = upper
		case c == '_' || c == '-' || c == '.' || c == ' ' || c == '/' || c == ':':
			if prev != sep && t.n > 0 {
				t.put('_')
			}
			prev = sep
		default: // lower-case letters, digits, and any other byte as it is
			t.put(c)
			prev = lower
		}
	}
	if t.n > tokenLen { // overflowed: no meaning
		t.n = 0
		return
	}
	for t.n > 0 && t.b[t.n-1] == '_' {
		t.n--
	}
	if t.n > len("_error") && string(t.b[t.n-len("_error"):t.n]) == "_error" {
		t.n -= len("_error")
	}
}

// put appends c; past the buffer it only counts, so that set can tell.
func (t *token) put(c byte) {
	if t.n < tokenLen {
		t.b[t.n] = c
	}
	t.n++
}

// fieldMeaning is the class one code or type names: the table's, as it
// was sent or normalised, else its words'; "" when it names none.
func (t *token) fieldMeaning(raw []byte, escaped bool) Class {
	if len(raw) == 0 {
		return ""
	}
	if m, ok := codeMeaning(raw); ok && m != "" {
		return m
	}
	if t.set(raw, escaped); t.n == 0 {
		return ""
	}
	return t.meaning()
}

// meaningOf is the class a single code or type names by its words, as
// Answer reads it, and "" when it names none: "insufficient_quota" and
// "AccountOverdueError" name QuotaExhausted, "requests" and
// "rate_limit_error" RateLimited.
func meaningOf(k string) Class {
	var t token
	t.set([]byte(k), false)
	switch m := t.meaning(); m {
	case hintRateLimit:
		return RateLimited
	default:
		return m
	}
}

// meaning is the class a code or type's words name, "" for generic ones
// ("invalid_request", "api", "forbidden", numbers). Rate-limit words are read
// before billing words: "Throttling.AllocationQuota" is DashScope's
// per-minute throttle.
func (t *token) meaning() Class {
	w := t.b[:t.n]
	if m, ok := codeMeaning(w); ok && m != "" {
		return m
	}
	switch {
	case has(w, "rate_limit") || has(w, "ratelimit") || has(w, "throttl") ||
		has(w, "too_many_requests") || has(w, "slow_down") || has(w, "concurren"):
		return RateLimited
	case has(w, "overload") || has(w, "capacity") || has(w, "service_unavailable"):
		return Overloaded
	case quotaWords(w):
		return QuotaExhausted
	case has(w, "context_length") || has(w, "context_size") || has(w, "context_window"):
		return ContextLengthExceeded
	case has(w, "model_not_found") || has(w, "deployment_not_found") || has(w, "decommission") ||
		(has(w, "model") && (has(w, "not_found") || has(w, "not_exist") || has(w, "deprecated"))):
		return ModelNotFound
	case has(w, "authentic") || has(w, "unauthorized") || has(w, "deactivated") || has(w, "invalid_key") ||
		(has(w, "api_key") && (has(w, "invalid") || has(w, "expired") || has(w, "revoked") || has(w, "leaked"))) ||
		has(w, "invalid_organization") || has(w, "no_such_organization"):
		return Authentication
	case has(w, "permission") || has(w, "access_terminated") || has(w, "access_denied") ||
		has(w, "unsupported_country") || has(w, "restricted") || has(w, "request_forbidden"):
		return Permission
	case has(w, "content_filter") || has(w, "content_policy") || has(w, "policy_violation") ||
		has(w, "responsible_ai") || has(w, "inspection") || has(w, "sensitive") ||
		has(w, "moderation") || has(w, "safety") || has(w, "unsafe"):
		return ContentFilter
	}
	return ""
}

// quotaWords reports whether a normalised code or type says that credit,
// balance or a spend cap ran out: insufficient quota, balance, credit or
// funds; arrears; overdue; payment required; billing; spend limits; credits
// exhausted; a quota exhausted or not enough.
func quotaWords(w []byte) bool {
	switch {
	case has(w, "insufficient"):
		return has(w, "quota") || has(w, "balance") || has(w, "credit") || has(w, "fund")
	case has(w, "arrear") || has(w, "overdue") || has(w, "payment_required") || has(w, "billing") ||
		has(w, "spend_limit") || has(w, "spending_limit") || has(w, "budget_exceeded") || has(w, "exceeded_budget"):
		return true
	case has(w, "credit"):
		return has(w, "exhausted") || has(w, "balance")
	case has(w, "quota"):
		return has(w, "exhausted") || has(w, "current_quota") || has(w, "not_enough") || has(w, "free_tier")
	}
	return false
}

// has reports whether the normalised token w contains sub.
func has(w []byte, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(w); i++ {
		if string(w[i:i+n]) == sub {
			return true
		}
	}
	return false
}

// containsWordFold reports whether s contains the lower-case word w,
// ignoring ASCII case, with no letter or digit on either side.
func containsWordFold(s []byte, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if !equalFold(s[i:i+len(w)], w) {
			continue
		}
		if (i == 0 || !isAlnum(s[i-1])) && (i+len(w) == len(s) || !isAlnum(s[i+len(w)])) {
			return true
		}
	}
	return false
}

func equalFold(b []byte, lower string) bool {
	for j := 0; j < len(lower); j++ {
		c := b[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[j] {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
