package quotabreaker

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/internal/jsonscan"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// This file holds the attributes the Transport's spans and metrics carry:
// their names, which are a public contract documented in the package
// overview, and how they are built from a request, an answer and a trip.

// The span attributes this package adds. Their names and values are a
// public contract, documented in the package overview.
const (
	attrBreakerState      = attribute.Key("quotabreaker.breaker.state")
	attrShortCircuit      = attribute.Key("quotabreaker.short_circuit")
	attrMode              = attribute.Key("quotabreaker.mode")
	attrScope             = attribute.Key("quotabreaker.scope")
	attrScopeCredential   = attribute.Key("quotabreaker.scope.credential")
	attrErrorCode         = attribute.Key("quotabreaker.error.code")
	attrErrorType         = attribute.Key("quotabreaker.error.type")
	attrTripClass         = attribute.Key("quotabreaker.trip.class")
	attrCause             = attribute.Key("quotabreaker.cause")
	attrBudget            = attribute.Key("quotabreaker.budget")
	attrBudgetKey         = attribute.Key("quotabreaker.budget.key")
	attrCostUSD           = attribute.Key("quotabreaker.cost.usd")
	attrStoreUp           = attribute.Key("quotabreaker.store.up")
	attrRetryAfterMS      = attribute.Key("quotabreaker.retry_after_ms")
	attrRequestID         = attribute.Key("quotabreaker.request_id")
	attrRemainingRequests = attribute.Key("quotabreaker.ratelimit.remaining_requests")
	attrRemainingTokens   = attribute.Key("quotabreaker.ratelimit.remaining_tokens")
	attrWouldShortCircuit = attribute.Key("quotabreaker.would_short_circuit")
	attrMetering          = attribute.Key("quotabreaker.metering")
	attrUsageMissing      = attribute.Key("quotabreaker.usage.missing")
	attrEstimated         = attribute.Key("quotabreaker.estimated")
	attrEstimatedInput    = attribute.Key("quotabreaker.estimate.input_tokens")
	attrEstimatedOutput   = attribute.Key("quotabreaker.estimate.output_tokens")
)

func appendClassAttrs(attrs []attribute.KeyValue, class classify.Class, code, typ string) []attribute.KeyValue {
	attrs = append(attrs, semconv.ErrorTypeKey.String(string(class)))
	if code != "" {
		attrs = append(attrs, attrErrorCode.String(code))
	}
	if typ != "" {
		attrs = append(attrs, attrErrorType.String(typ))
	}
	return attrs
}

// shortCircuitAttrs are the short-circuit counter's attributes for a trip,
// one set per mode, built once per trip rather than once per refused
// request.
func shortCircuitAttrs(tr Trip) (sets [2][]metric.AddOption) {
	for _, m := range [...]Mode{ModeEnforce, ModeObserve} {
		attrs := append(metricAttrs(tr.Class, "", tr.Provider),
			attrMode.String(m.String()), attrCause.String(string(tr.Cause)))
		// A slice made once: passing one option would allocate its
		// variadic slice on every refused request.
		sets[m] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
	}
	return sets
}

// metricAttrs are a class's metric attributes: all of low cardinality (a
// code outside classify.MetricCode's table is classify.OtherCode), and the provider only where
// known. An empty code is left out.
func metricAttrs(class classify.Class, code string, provider classify.Provider) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, semconv.ErrorTypeKey.String(string(class)))
	if code != "" {
		attrs = append(attrs, attrErrorCode.String(classify.MetricCode(code)))
	}
	if provider != "" {
		attrs = append(attrs, semconv.GenAIProviderNameKey.String(string(provider)))
	}
	return attrs
}

var knownMethods = map[string]bool{
	http.MethodConnect: true, http.MethodDelete: true, http.MethodGet: true,
	http.MethodHead: true, http.MethodOptions: true, http.MethodPatch: true,
	http.MethodPost: true, http.MethodPut: true, http.MethodTrace: true,
}

func spanName(method string) string {
	if method == "" {
		return http.MethodGet
	}
	if knownMethods[method] {
		return method
	}
	return "HTTP"
}

// requestAttrs are the HTTP client attributes of an attempt's own span.
func requestAttrs(req *http.Request) []attribute.KeyValue {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	if knownMethods[method] {
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String(method))
	} else {
		attrs = append(attrs, semconv.HTTPRequestMethodOther, semconv.HTTPRequestMethodOriginal(method))
	}
	if req.URL == nil {
		return attrs
	}
	host, port := req.URL.Hostname(), req.URL.Port()
	if host == "" {
		host, port = hostPort(req.Host)
	}
	attrs = append(attrs, semconv.ServerAddress(host))
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, semconv.ServerPort(p))
	} else if req.URL.Scheme == "https" {
		attrs = append(attrs, semconv.ServerPort(443))
	} else if req.URL.Scheme == "http" {
		attrs = append(attrs, semconv.ServerPort(80))
	}
	return append(attrs, semconv.URLFull(redactURL(req.URL)))
}

func headerInt(h http.Header, name string) (int64, bool) {
	v := h.Get(name)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	return n, err == nil
}

// requestID returns the provider's id of an answer, bounded and printable.
func requestID(h http.Header) string {
	for _, name := range [...]string{"X-Request-Id", "Request-Id", "Apim-Request-Id"} {
		if v := h.Get(name); v != "" {
			return jsonscan.Text([]byte(v), false)
		}
	}
	return ""
}
