package quotabreaker

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// instrumentationName names the tracer and the meter.
const instrumentationName = "github.com/quotabreaker/quotabreaker"

// The span attributes this package adds. Their names and values are a
// public contract, documented in the README.
const (
	attrBreakerState      = attribute.Key("quotabreaker.breaker.state")
	attrShortCircuit      = attribute.Key("quotabreaker.short_circuit")
	attrScope             = attribute.Key("quotabreaker.scope")
	attrErrorCode         = attribute.Key("quotabreaker.error.code")
	attrErrorType         = attribute.Key("quotabreaker.error.type")
	attrRetryAfterMS      = attribute.Key("quotabreaker.retry_after_ms")
	attrRequestID         = attribute.Key("quotabreaker.request_id")
	attrRemainingRequests = attribute.Key("quotabreaker.ratelimit.remaining_requests")
	attrRemainingTokens   = attribute.Key("quotabreaker.ratelimit.remaining_tokens")
)

// telemetry records a Transport's spans and metrics.
type telemetry struct {
	tracer    trace.Tracer
	startOpts []trace.SpanStartOption
	noSpans   bool // the tracer provider is OpenTelemetry's no-op one
	now       func() time.Time

	errors        metric.Int64Counter
	shortCircuits metric.Int64Counter
	trips         metric.Int64Counter
	openLatches   metric.Int64UpDownCounter
}

// init creates the tracer and the instruments. Instrument errors go to
// otel.Handle and leave a no-op instrument: telemetry never fails New.
func (tel *telemetry) init(t *Transport) {
	cfg := &t.cfg
	tel.now = cfg.now
	// The no-op provider records nothing, so skip even starting a span:
	// that keeps its context and span allocations off every request.
	_, tel.noSpans = cfg.tracerProv.(tracenoop.TracerProvider)
	tel.tracer = cfg.tracerProv.Tracer(instrumentationName, trace.WithSchemaURL(semconv.SchemaURL))
	tel.startOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

	meter := cfg.meterProv.Meter(instrumentationName, metric.WithSchemaURL(semconv.SchemaURL))
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			otel.Handle(err)
			return noop.Int64Counter{}
		}
		return c
	}
	tel.errors = counter("quotabreaker.errors", "{error}",
		"Error answers (status 400 and above) by class, provider code and provider.")
	tel.shortCircuits = counter("quotabreaker.short_circuits", "{request}",
		"Requests an open latch answered without reaching the network.")
	tel.trips = counter("quotabreaker.trips", "{trip}",
		"Latches opened.")

	// A synchronous up-down counter rather than an observable gauge: it
	// adds up across Transports sharing a meter provider, and needs no
	// callback holding the Transport alive.
	open, err := meter.Int64UpDownCounter("quotabreaker.open_latches",
		metric.WithUnit("{latch}"),
		metric.WithDescription("Latches open now; above 0 means some traffic is refused until a reset."))
	if err != nil {
		otel.Handle(err)
		open = noop.Int64UpDownCounter{}
	}
	tel.openLatches = open
	// A Transport dropped with latches open refuses nothing any more.
	runtime.AddCleanup(t, func(n *atomic.Int64) {
		if v := n.Load(); v != 0 {
			open.Add(context.Background(), -v)
		}
	}, t.latches.open)
}

// start begins an attempt's span. The returned context carries the span to
// the base transport only when there is a span context to propagate.
func (tel *telemetry) start(req *http.Request) (context.Context, trace.Span) {
	ctx := req.Context()
	if tel.noSpans {
		return ctx, trace.SpanFromContext(context.Background()) // a no-op span
	}
	spanCtx, span := tel.tracer.Start(ctx, spanName(req.Method), tel.startOpts...)
	if span.IsRecording() {
		span.SetAttributes(requestAttrs(req)...)
	}
	if span.SpanContext().IsValid() {
		ctx = spanCtx
	}
	return ctx, span
}

// answer records an answer that came from the network. A recording span
// ends when the caller closes the body (or reads it to the end), like
// otelhttp's, so a streamed answer is measured whole.
func (tel *telemetry) answer(span trace.Span, req *http.Request, resp *http.Response, c Classification, scope, state string) {
	if c.Class != "" {
		tel.errors.Add(req.Context(), 1, metric.WithAttributes(metricAttrs(c, true)...))
	}
	if !span.IsRecording() {
		span.End()
		return
	}
	provider := c.Provider
	if provider == "" {
		provider = hostProvider(requestHost(req))
	}
	attrs := make([]attribute.KeyValue, 0, 12)
	attrs = append(attrs,
		semconv.HTTPResponseStatusCode(resp.StatusCode),
		attrBreakerState.String(state),
		attrScope.String(scope),
	)
	if provider != "" {
		attrs = append(attrs, semconv.GenAIProviderNameKey.String(genAIProvider(provider)))
	}
	if id := requestID(resp.Header); id != "" {
		attrs = append(attrs, attrRequestID.String(id))
	}
	if n, ok := headerInt(resp.Header, "X-Ratelimit-Remaining-Requests"); ok {
		attrs = append(attrs, attrRemainingRequests.Int64(n))
	}
	if n, ok := headerInt(resp.Header, "X-Ratelimit-Remaining-Tokens"); ok {
		attrs = append(attrs, attrRemainingTokens.Int64(n))
	}
	if c.Class != "" {
		attrs = appendClassAttrs(attrs, c)
		if c.Class == ClassRateLimited {
			if d, ok := retryAfter(resp.Header, tel.now()); ok {
				attrs = append(attrs, attrRetryAfterMS.Int64(d.Milliseconds()))
			}
		}
	}
	span.SetAttributes(attrs...)
	if resp.StatusCode >= 400 {
		span.SetStatus(codes.Error, "")
	}
	resp.Body = newSpanBody(span, resp.Body)
}

func appendClassAttrs(attrs []attribute.KeyValue, c Classification) []attribute.KeyValue {
	attrs = append(attrs, semconv.ErrorTypeKey.String(string(c.Class)))
	if c.Code != "" {
		attrs = append(attrs, attrErrorCode.String(c.Code))
	}
	if c.Type != "" {
		attrs = append(attrs, attrErrorType.String(c.Type))
	}
	return attrs
}

// tripped records that the answer on span opened a latch.
func (tel *telemetry) tripped(span trace.Span, tr Trip) {
	tel.openLatches.Add(context.Background(), 1)
	tel.trips.Add(context.Background(), 1, metric.WithAttributes(metricAttrs(tr.Classification, true)...))
	// The span ends when the caller closes the body, which it cannot have
	// done yet: RoundTrip has not returned.
	span.AddEvent("quotabreaker.trip", trace.WithAttributes(
		attrScope.String(tr.Scope),
		semconv.ErrorTypeKey.String(string(tr.Class)),
		attrErrorCode.String(tr.Code),
	))
}

// shortCircuit records a request answered by an open latch; resp is nil
// when the Transport returns an *OpenError instead.
func (tel *telemetry) shortCircuit(span trace.Span, resp *http.Response, o *opened) {
	tel.shortCircuits.Add(context.Background(), 1, o.shortCircuits...)
	tr := o.Trip
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 9)
		attrs = append(attrs,
			attrShortCircuit.Bool(true),
			attrBreakerState.String("open"),
			attrScope.String(tr.Scope),
		)
		if tr.Provider != "" {
			attrs = append(attrs, semconv.GenAIProviderNameKey.String(genAIProvider(tr.Provider)))
		}
		if resp != nil {
			attrs = append(attrs, semconv.HTTPResponseStatusCode(resp.StatusCode))
		}
		if tr.RequestID != "" { // the tripping answer's, for the support ticket
			attrs = append(attrs, attrRequestID.String(tr.RequestID))
		}
		attrs = appendClassAttrs(attrs, tr.Classification)
		span.SetAttributes(attrs...)
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// shortCircuitAttrs are the short-circuit counter's attributes for a trip,
// built once per trip rather than once per refused request.
func shortCircuitAttrs(tr Trip) []metric.AddOption {
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(metricAttrs(tr.Classification, false)...))}
}

// metricAttrs are a class's metric attributes: all of low cardinality, and
// the provider only where known.
func metricAttrs(c Classification, withCode bool) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 3)
	attrs = append(attrs, semconv.ErrorTypeKey.String(string(c.Class)))
	if withCode {
		attrs = append(attrs, attrErrorCode.String(c.Code))
	}
	if c.Provider != "" {
		attrs = append(attrs, semconv.GenAIProviderNameKey.String(genAIProvider(c.Provider)))
	}
	return attrs
}

// transportError records an error from the base transport. The status
// description is the error's type, not its text, which can quote a URL
// holding a key.
func (tel *telemetry) transportError(span trace.Span, err error, state string) {
	if span.IsRecording() {
		et := semconv.ErrorType(err)
		span.SetAttributes(et, attrBreakerState.String(state))
		span.SetStatus(codes.Error, et.Value.AsString())
	}
	span.End()
}

// reset records a reset as a short span of its own: it belongs to no request.
func (tel *telemetry) reset(tr Trip) {
	tel.openLatches.Add(context.Background(), -1)
	_, span := tel.tracer.Start(context.Background(), "quotabreaker.reset", trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() {
		attrs := []attribute.KeyValue{
			attrScope.String(tr.Scope),
			attrBreakerState.String("closed"),
		}
		span.SetAttributes(appendClassAttrs(attrs, tr.Classification)...)
	}
	span.End()
}

// genAIProvider maps Classification.Provider to the gen_ai.provider.name
// values of the OpenTelemetry GenAI conventions; others pass as they are.
func genAIProvider(p string) string {
	switch p {
	case "azure":
		return "azure.ai.openai"
	case "gemini":
		return "gcp.gemini"
	case "mistral":
		return "mistral_ai"
	case "xai":
		return "x_ai"
	}
	return p
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

// hostPort splits a URL's host[:port] without net.SplitHostPort's
// allocation for a missing port; IPv6 literals keep their brackets off.
func hostPort(hostport string) (host, port string) {
	host = hostport
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		host, port = hostport[:i], hostport[i+1:]
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), port
}

// redactURL returns u for the url.full attribute, with any user info and the
// values of query parameters that look like credentials (Gemini's ?key=, a
// signature, a token) replaced by REDACTED.
func redactURL(u *url.URL) string {
	if u.User == nil && u.RawQuery == "" {
		return u.String()
	}
	r := *u
	if r.User != nil {
		r.User = url.UserPassword("REDACTED", "REDACTED")
	}
	if r.RawQuery != "" {
		parts := strings.Split(r.RawQuery, "&")
		for i, p := range parts {
			name, _, ok := strings.Cut(p, "=")
			if ok && sensitiveParam(name) {
				parts[i] = name + "=REDACTED"
			}
		}
		r.RawQuery = strings.Join(parts, "&")
	}
	return r.String()
}

func sensitiveParam(name string) bool {
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	name = strings.ToLower(name)
	for _, s := range [...]string{"key", "token", "sig", "secret", "auth", "pass", "credential"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

func headerInt(h http.Header, name string) (int64, bool) {
	v := h.Get(name)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	return n, err == nil
}

// retryAfter reads how long a rate-limited answer asks the caller to wait,
// in the order OpenAI's SDKs read it: retry-after-ms, then Retry-After in
// seconds or as an HTTP date, then OpenAI's x-ratelimit-reset-* durations
// (of the exhausted limit when the answer says which).
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 && ms < math.MaxInt64/float64(time.Millisecond) {
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 && s < math.MaxInt64/float64(time.Second) {
			return time.Duration(s * float64(time.Second)), true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0), true
		}
	}
	var best time.Duration
	found := false
	for _, kind := range [...]string{"Requests", "Tokens"} {
		d, err := time.ParseDuration(h.Get("X-Ratelimit-Reset-" + kind))
		if err != nil || d < 0 {
			continue
		}
		if h.Get("X-Ratelimit-Remaining-"+kind) == "0" {
			return d, true
		}
		if d > best {
			best = d
		}
		found = true
	}
	return best, found
}

// spanBody ends an answer's own span when the caller closes the body or
// reads it to the end, whichever comes first.
type spanBody struct {
	rc    io.ReadCloser
	span  trace.Span
	ended atomic.Bool
}

func newSpanBody(span trace.Span, rc io.ReadCloser) io.ReadCloser {
	if rc == nil {
		span.End()
		return rc
	}
	b := &spanBody{rc: rc, span: span}
	if _, ok := rc.(io.ReadWriteCloser); ok {
		// A 101 Switching Protocols body must stay writable.
		return spanBodyRW{b}
	}
	return b
}

func (b *spanBody) end() {
	if b.ended.CompareAndSwap(false, true) {
		b.span.End()
	}
}

func (b *spanBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.end()
	}
	return n, err
}

func (b *spanBody) Close() error {
	err := b.rc.Close()
	b.end()
	return err
}

type spanBodyRW struct{ *spanBody }

func (b spanBodyRW) Write(p []byte) (int, error) { return b.rc.(io.Writer).Write(p) }
