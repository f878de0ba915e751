package quotabreaker

import (
	"bytes"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Class is a provider-neutral error class. The values are a public contract:
// they appear as the error.type span attribute, in metrics and in dashboards,
// and they will not change.
type Class string

// The classes Classify returns for an error answer.
const (
	// ClassQuotaExhausted: credit, quota or a spend cap is exhausted. Retrying
	// never helps; only a person fixing billing does.
	ClassQuotaExhausted Class = "quota_exhausted"
	// ClassRateLimited: a per-minute or per-day rate limit. Later is fine.
	ClassRateLimited Class = "rate_limited"
	// ClassOverloaded: the provider is overloaded or out of capacity.
	ClassOverloaded Class = "overloaded"
	// ClassServerError: any other 5xx answer from the provider.
	ClassServerError Class = "server_error"
	// ClassContextLengthExceeded: prompt plus completion exceed the model's window.
	ClassContextLengthExceeded Class = "context_length_exceeded"
	// ClassModelNotFound: an unknown, retired or inaccessible model.
	ClassModelNotFound Class = "model_not_found"
	// ClassAuthentication: missing, invalid, revoked or deactivated credentials.
	ClassAuthentication Class = "authentication"
	// ClassPermission: forbidden, for example by region or organization.
	ClassPermission Class = "permission"
	// ClassInvalidRequest: any other 4xx answer the caller must fix.
	ClassInvalidRequest Class = "invalid_request"
	// ClassContentFilter: refused by a content policy.
	ClassContentFilter Class = "content_filter"
	// ClassOther: an error status with nothing recognisable in the answer.
	ClassOther Class = "other"
)

// Classification is what Classify makes of one HTTP answer.
type Classification struct {
	Class     Class    // provider-neutral class; "" for a status below 400
	Provider  Provider // "" when unknown
	Code      string   // the provider's own error code, verbatim ("insufficient_quota")
	Type      string   // the provider's own error type, verbatim
	Retryable bool     // whether sending the same request later can succeed
}

// maxFieldLen bounds Code and Type, which end up as span and metric
// attributes; real codes are a few dozen bytes at most.
const maxFieldLen = 128

// maxMessageScan bounds how much of an error message the narrow text rules
// look at; the phrases they need come first in every real message.
const maxMessageScan = 4 << 10

// Classify turns an HTTP answer into a provider-neutral Classification.
// It is pure and safe for concurrent use; body may be a prefix of the real
// body, in any encoding (non-JSON, truncated and empty bodies fall back to the
// status). A status below 400 yields the zero Classification.
//
// Classify decides on the provider's structured fields (code, type, Google's
// status) first, then on the status, and reads message text only where a
// provider gives no structured signal. A 429 it cannot place is ClassRateLimited,
// never ClassQuotaExhausted: a wrong quota verdict would stop all traffic
// until someone resets the latch, while a wrong rate-limit verdict costs a retry.
func Classify(status int, header http.Header, body []byte) Classification {
	if status < 400 {
		return Classification{}
	}
	var f errorFields
	f.parse(body)
	c := Classification{
		Provider: detectProvider(header, &f),
		Code:     f.codeString(),
		Type:     f.typeString(),
	}
	c.Class = f.class(status)
	c.Retryable = c.Class.retryable(status)
	return c
}

// retryable reports whether an answer of class c and the given status can
// succeed when sent again later.
func (c Class) retryable(status int) bool {
	switch c {
	case ClassRateLimited, ClassOverloaded, ClassServerError:
		return true
	case ClassOther:
		return status == http.StatusRequestTimeout || status == http.StatusConflict ||
			status == http.StatusTooManyRequests || status >= 500
	}
	return false
}

// codeClasses maps a provider's error code (OpenAI's error.code, and the same
// field of providers that copy its shape) to a class. Only codes that mean
// one thing belong here; generic ones such as "invalid_request_error" or an
// HTTP status written as a string are left to the status.
var codeClasses = map[string]Class{
	// OpenAI billing: the organization or project cannot pay, or hit a cap
	// it or OpenAI set. All come as 429 (billing_hard_limit_reached as 400),
	// often with type insufficient_quota.
	"insufficient_quota":                ClassQuotaExhausted,
	"credit_balance_exhausted":          ClassQuotaExhausted,
	"organization_spend_limit_exceeded": ClassQuotaExhausted,
	"project_spend_limit_exceeded":      ClassQuotaExhausted,
	"organization_usage_limit_exceeded": ClassQuotaExhausted,
	"billing_hard_limit_reached":        ClassQuotaExhausted,
	"billing_not_active":                ClassQuotaExhausted,

	"rate_limit_exceeded": ClassRateLimited,
	"rate_limit_error":    ClassRateLimited, // Anthropic's OpenAI-compatible endpoint
	"slow_down":           ClassRateLimited,

	"server_is_overloaded": ClassOverloaded,
	"engine_overloaded":    ClassOverloaded,

	"context_length_exceeded": ClassContextLengthExceeded,

	"model_not_found":    ClassModelNotFound,
	"DeploymentNotFound": ClassModelNotFound, // Azure

	"invalid_api_key":        ClassAuthentication,
	"invalid_authentication": ClassAuthentication,
	"account_deactivated":    ClassAuthentication,
	"invalid_organization":   ClassAuthentication,
	"no_such_organization":   ClassAuthentication,

	"unsupported_country_region_territory": ClassPermission,
	"access_terminated":                    ClassPermission, // OpenAI sends it as 429
	"organization_restricted":              ClassPermission, // Groq

	"content_filter":           ClassContentFilter,
	"content_policy_violation": ClassContentFilter,
}

// detailCodeClasses maps the code Anthropic puts in error.details.error_code,
// which refines a type that says less: its monthly spend cap arrives as a
// rate_limit_error.
var detailCodeClasses = map[string]Class{
	"enforced_spend_limit_reached": ClassQuotaExhausted,
}

// typeClasses maps an error type (OpenAI's error.type, Anthropic's
// error.type, Mistral's top-level type) to a class. It is consulted only when
// the code said nothing, so a specific code always wins over a type.
var typeClasses = map[string]Class{
	"insufficient_quota":           ClassQuotaExhausted,
	"billing_error":                ClassQuotaExhausted, // Anthropic, 402
	"exceeded_current_quota_error": ClassQuotaExhausted, // Moonshot, 403 and 429

	"rate_limit_error": ClassRateLimited,
	"rate_limited":     ClassRateLimited, // Mistral

	"overloaded_error":          ClassOverloaded,
	"service_unavailable_error": ClassOverloaded,

	"authentication_error": ClassAuthentication,
	"permission_error":     ClassPermission,
	"request_forbidden":    ClassPermission,
	"access_terminated":    ClassPermission, // OpenAI before it was a code
}

// numericQuotaCodes are providers' numeric codes for an unpaid balance
// (Zhipu's 1113, SiliconFlow's 30011). A bare number means different things
// to different providers, so these count only together with one of
// balancePhrases in the message.
var numericQuotaCodes = map[string]bool{"1113": true, "30011": true}

// balancePhrases say "balance" in the languages these providers answer in:
// English, and Chinese for "insufficient balance", "in arrears", "recharge".
var balancePhrases = []string{"balance", "余额不足", "欠费", "充值"}

// googleReasonClasses maps Google's ErrorInfo reason, which refines its
// status: RESOURCE_EXHAUSTED is a rate limit unless the reason says the
// credits ran out.
var googleReasonClasses = map[string]Class{
	"API_KEY_INVALID":                 ClassAuthentication,
	"API_KEY_EXPIRED":                 ClassAuthentication,
	"INSUFFICIENT_G1_CREDITS_BALANCE": ClassQuotaExhausted,
}

// googleStatusClasses maps Google's canonical error status (Gemini's native
// API and its OpenAI-compatible endpoint) to a class. RESOURCE_EXHAUSTED is a
// rate limit even when its message says "exceeded your current quota": Google
// uses it for per-minute and per-day limits that heal by themselves.
var googleStatusClasses = map[string]Class{
	"RESOURCE_EXHAUSTED": ClassRateLimited,
	"UNAVAILABLE":        ClassOverloaded,
	"UNAUTHENTICATED":    ClassAuthentication,
	"PERMISSION_DENIED":  ClassPermission,
	"INTERNAL":           ClassServerError,
	"DEADLINE_EXCEEDED":  ClassServerError,
}

// class decides the Class of an error answer with the given status.
func (f *errorFields) class(status int) Class {
	// A quota verdict needs a 4xx: a 5xx carrying a billing code is a
	// gateway's confusion, and a false quota verdict stops all traffic.
	quotaOK := func(c Class) bool { return c != ClassQuotaExhausted || isClientError(status) }
	if c, ok := lookup(codeClasses, f.code, f.codeEscaped); ok && quotaOK(c) {
		return c
	}
	if c, ok := detailCodeClasses[string(f.detailCode)]; ok && quotaOK(c) {
		return c
	}
	if c, ok := lookup(typeClasses, f.typ, f.typEscaped); ok && quotaOK(c) {
		return c
	}
	if numericQuotaCodes[string(f.code)] && isClientError(status) && containsAnyFold(f.message, balancePhrases) {
		return ClassQuotaExhausted
	}
	if c, ok := googleReasonClasses[string(f.reason)]; ok && quotaOK(c) {
		return c
	}
	if string(f.innerCode) == "ResponsibleAIPolicyViolation" { // Azure
		return ClassContentFilter
	}
	if c, ok := f.textClass(status); ok {
		return c
	}
	if c, ok := googleStatusClasses[string(f.status)]; ok {
		return c
	}
	return statusClass(status, f.structured())
}

// textClass holds the narrow message rules, for answers whose structured
// fields say nothing more specific than "invalid request" or "server error".
// Each rule is tied to a status and a phrase seen in real answers.
func (f *errorFields) textClass(status int) (Class, bool) {
	msg := f.message
	if len(msg) == 0 {
		return "", false
	}
	if len(msg) > maxMessageScan {
		msg = msg[:maxMessageScan]
	}
	switch {
	case status >= 500:
		if containsFold(msg, "overloaded") {
			return ClassOverloaded, true
		}
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge:
		// Anthropic reports exhausted prepaid credit and its console's
		// spend limits as plain invalid_request_errors.
		if f.anthropic && (containsFold(msg, "credit balance is too low") ||
			(containsFold(msg, "reached your specified") && containsFold(msg, "usage limits"))) {
			return ClassQuotaExhausted, true
		}
		if containsFold(msg, "maximum context length") || // OpenAI before code context_length_exceeded
			containsFold(msg, "prompt is too long") || // Anthropic
			(containsFold(msg, "input token count") && containsFold(msg, "exceeds the maximum")) { // Gemini
			return ClassContextLengthExceeded, true
		}
	case status == http.StatusForbidden:
		if containsFold(msg, "doesn't have any credits") { // xAI, whose code is gRPC prose
			return ClassQuotaExhausted, true
		}
		if containsFold(msg, "api key was reported as leaked") { // Gemini revokes such keys
			return ClassAuthentication, true
		}
	case status == http.StatusNotFound:
		if f.anthropic && bytes.HasPrefix(msg, []byte("model:")) {
			return ClassModelNotFound, true
		}
		if containsFold(msg, "model") && (containsFold(msg, "does not exist") || containsFold(msg, "not found")) {
			return ClassModelNotFound, true
		}
	}
	return "", false
}

// statusClass is the fallback when the body names nothing more specific.
// structured reports whether the body was a recognisable provider error:
// then any other 4xx is the caller's to fix; otherwise (an HTML page from a
// proxy, an empty body) it is ClassOther. A 5xx is a server error either way,
// and a provider's own 503 means it is overloaded.
func statusClass(status int, structured bool) Class {
	switch status {
	case http.StatusTooManyRequests:
		return ClassRateLimited
	case http.StatusUnauthorized:
		return ClassAuthentication
	case http.StatusForbidden:
		return ClassPermission
	case http.StatusRequestEntityTooLarge:
		return ClassInvalidRequest
	case 529: // Anthropic's "overloaded"
		return ClassOverloaded
	case http.StatusRequestTimeout, http.StatusConflict:
		return ClassOther
	}
	switch {
	case status == http.StatusPaymentRequired && structured:
		// "Payment Required" from the provider itself; an HTML page from
		// something in between is not enough to stop all traffic.
		return ClassQuotaExhausted
	case status == http.StatusServiceUnavailable && structured:
		return ClassOverloaded
	case status >= 500:
		return ClassServerError
	case structured:
		return ClassInvalidRequest
	}
	return ClassOther
}

func lookup(m map[string]Class, raw []byte, escaped bool) (Class, bool) {
	if escaped {
		raw = unescape(raw)
	}
	c, ok := m[string(raw)]
	return c, ok
}

func isClientError(status int) bool { return status >= 400 && status < 500 }

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

// fieldString copies a raw JSON string body (or number literal) into a valid
// UTF-8 string of at most maxFieldLen bytes.
func fieldString(raw []byte, escaped bool) string {
	if len(raw) == 0 {
		return ""
	}
	if escaped {
		raw = unescape(raw)
	}
	s := string(raw)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) > maxFieldLen {
		cut := maxFieldLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
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
