package classify

// codes are the provider codes and types this package knows by name, as the
// providers spell them, with the class each one names. This table is the one
// place a provider code is added: Answer reads a listed code's class before
// any word rule, StreamError sends it with its class's status, and metrics
// carry it verbatim (MetricCode). A code listed with "" names no class of its
// own (a generic type, a status, a number): it is known to metrics, and the
// rules read the other fields, the message and the status instead.
//
// A code that is not listed is still read by its words (see token.meaning),
// so "AccountOverdueError" means an exhausted quota without a line here.
var codes = map[string]Class{
	// OpenAI and the providers that copy its codes.
	"insufficient_quota":                   QuotaExhausted,
	"credit_balance_exhausted":             QuotaExhausted,
	"organization_spend_limit_exceeded":    QuotaExhausted,
	"project_spend_limit_exceeded":         QuotaExhausted,
	"organization_usage_limit_exceeded":    QuotaExhausted,
	"billing_hard_limit_reached":           QuotaExhausted,
	"billing_not_active":                   QuotaExhausted,
	"rate_limit_exceeded":                  RateLimited,
	"requests":                             hintRateLimit, // OpenAI's rate-limit types
	"tokens":                               hintRateLimit,
	"slow_down":                            RateLimited,
	"server_is_overloaded":                 Overloaded,
	"engine_overloaded":                    Overloaded,
	"server_error":                         "",
	"context_length_exceeded":              ContextLengthExceeded,
	"model_not_found":                      ModelNotFound,
	"invalid_api_key":                      Authentication,
	"invalid_authentication":               Authentication,
	"account_deactivated":                  Authentication,
	"invalid_organization":                 Authentication,
	"no_such_organization":                 Authentication,
	"unsupported_country_region_territory": Permission,
	"access_terminated":                    Permission,
	"content_filter":                       ContentFilter,
	"content_policy_violation":             ContentFilter,
	"invalid_request_error":                "",
	// Relays (one-api, new-api) and gateways.
	"insufficient_user_quota": QuotaExhausted,
	"payment_required":        QuotaExhausted,
	"budget_exceeded":         QuotaExhausted, // LiteLLM's key, team and user budgets
	// Anthropic's types and details.error_code.
	"enforced_spend_limit_reached": QuotaExhausted,
	"billing_error":                QuotaExhausted,
	"rate_limit_error":             RateLimited,
	"overloaded_error":             Overloaded,
	"authentication_error":         Authentication,
	"permission_error":             Permission,
	"not_found_error":              "",
	"api_error":                    "",
	"request_too_large":            "",
	// Google's canonical statuses; RESOURCE_EXHAUSTED is read in
	// errorFields.meaning, since its message decides.
	"RESOURCE_EXHAUSTED":  "",
	"UNAVAILABLE":         "",
	"UNAUTHENTICATED":     Authentication,
	"PERMISSION_DENIED":   Permission,
	"INTERNAL":            "",
	"INVALID_ARGUMENT":    "",
	"NOT_FOUND":           "",
	"DEADLINE_EXCEEDED":   "",
	"FAILED_PRECONDITION": "",
	// Self-hosted servers.
	"exceed_context_size_error": ContextLengthExceeded, // llama.cpp's server, as 400 and 500
	"validation":                "",                    // Text Generation Inference's error_type, a 422: read by its message
	// FastChat's error codes (fastchat/constants.py ErrorCode), in its
	// {"object":"error","code":N} answers and {"text":..,"error_code":N}
	// stream chunks; its 5xxxx worker and controller codes name no class.
	"40101": Authentication,        // INVALID_AUTH_KEY
	"40102": Authentication,        // INCORRECT_AUTH_KEY
	"40103": Permission,            // NO_PERMISSION
	"40301": ModelNotFound,         // INVALID_MODEL
	"40303": ContextLengthExceeded, // CONTEXT_OVERFLOW
	"42901": RateLimited,           // RATE_LIMIT
	"42903": Overloaded,            // ENGINE_OVERLOADED
	"50001": "",                    // INTERNAL_ERROR
	// Others.
	"DeploymentNotFound":           ModelNotFound,  // Azure
	"organization_restricted":      Permission,     // Groq
	"exceeded_current_quota_error": QuotaExhausted, // Moonshot
	"1113":                         "",             // Zhipu's arrears, read by its message
	"30011":                        "",             // SiliconFlow's balance, read by its message
}

// codeMeaning is the class the table gives a code or type as sent, and
// whether the table lists it.
func codeMeaning(raw []byte) (Class, bool) {
	c, ok := codes[string(raw)]
	return c, ok
}

// OtherCode replaces, in metrics, a provider code the table does not list.
const OtherCode = "_OTHER"

// MetricCode is code as a metric attribute may carry it: verbatim when it is
// a code this package knows by name (or empty), OtherCode otherwise. A server
// can send any code at all, and each distinct value would be a new metric
// series, so unknown codes are counted together, as OpenTelemetry's
// conventions do for unknown values. Spans keep the verbatim code.
func MetricCode(code string) string {
	if _, ok := codes[code]; ok || code == "" {
		return code
	}
	return OtherCode
}
