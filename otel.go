package quotabreaker

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quotabreaker/quotabreaker/balance"
	"github.com/quotabreaker/quotabreaker/classify"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// instrumentationName and instrumentationVersion name the tracer and the
// meter.
const (
	instrumentationName    = "github.com/quotabreaker/quotabreaker"
	instrumentationVersion = "0.3.0"
)

// telemetry records a Transport's spans and metrics.
type telemetry struct {
	tracer   trace.Tracer
	noSpans  bool // the tracer provider is OpenTelemetry's no-op one
	internal bool // the base is an HTTP client instrumentation (otelhttp)
	client   []trace.SpanStartOption
	nested   []trace.SpanStartOption
	now      func() time.Time

	errors        metric.Int64Counter
	shortCircuits metric.Int64Counter
	trips         metric.Int64Counter
	openLatches   metric.Int64UpDownCounter
	tokens        metric.Int64Histogram
	cost          metric.Float64Counter
	answers       metric.Int64Counter
	duration      metric.Float64Histogram
	metrics       bool // the meter provider is not OpenTelemetry's no-op one

	budgetRatio   metric.Float64Gauge
	storeUp       metric.Int64Gauge
	storeWritable metric.Int64Gauge
	// invalidChanges counts changes from the store that were dropped.
	invalidChanges metric.Int64Counter
	fleet          *fleet // nil without a store

	opMu    sync.RWMutex
	opAttrs map[opKey][]metric.RecordOption // guarded by opMu; at most maxOpAttrs

	// The attribute sets of the spend metrics, by provider and model: a
	// bounded cache (see spendSets).
	sets  sync.Map // modelKey -> *spendSets
	nSets atomic.Int64
}

// init creates the tracer and the instruments. Instrument errors go to
// otel.Handle and leave a no-op instrument: telemetry never fails New.
func (tel *telemetry) init(t *Transport) {
	cfg := &t.cfg
	tel.now = cfg.now
	// The no-op provider records nothing, so skip even starting a span:
	// that keeps its context and span allocations off every request.
	_, tel.noSpans = cfg.tracerProv.(tracenoop.TracerProvider)
	tel.tracer = cfg.tracerProv.Tracer(instrumentationName,
		trace.WithInstrumentationVersion(instrumentationVersion), trace.WithSchemaURL(semconv.SchemaURL))
	tel.client = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
	tel.nested = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
	tel.internal = isHTTPInstrumentation(t.base)

	_, noMetrics := cfg.meterProv.(noop.MeterProvider)
	tel.metrics = !noMetrics
	meter := cfg.meterProv.Meter(instrumentationName,
		metric.WithInstrumentationVersion(instrumentationVersion), metric.WithSchemaURL(semconv.SchemaURL))
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
		"Requests an open latch answered without reaching the network (in observe mode: would have).")
	tel.trips = counter("quotabreaker.trips", "{trip}",
		"Latches opened.")

	tokens, err := meter.Int64Histogram("gen_ai.client.token.usage",
		metric.WithUnit("{token}"),
		metric.WithDescription("Number of input and output tokens used."),
		metric.WithExplicitBucketBoundaries(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864))
	if err != nil {
		otel.Handle(err)
		tokens = noop.Int64Histogram{}
	}
	tel.tokens = tokens
	cost, err := meter.Float64Counter("quotabreaker.cost",
		metric.WithUnit("{USD}"),
		metric.WithDescription("Dollars spent, from the usage of priced answers."))
	if err != nil {
		otel.Handle(err)
		cost = noop.Float64Counter{}
	}
	tel.cost = cost
	tel.answers = counter("quotabreaker.answers", "{answer}",
		"Successful answers by quotabreaker.metering: priced, unpriced (usage read, no price) or unmetered (usage unknown).")
	duration, err := meter.Float64Histogram("gen_ai.client.operation.duration",
		metric.WithUnit("s"),
		metric.WithDescription("GenAI operation duration."),
		metric.WithExplicitBucketBoundaries(0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92))
	if err != nil {
		otel.Handle(err)
		duration = noop.Float64Histogram{}
	}
	tel.duration = duration
	ratio, err := meter.Float64Gauge("quotabreaker.budget.spent_ratio",
		metric.WithUnit("1"),
		metric.WithDescription("Share of each budget key's limit spent in the current period; 1 means the limit is reached."))
	if err != nil {
		otel.Handle(err)
		ratio = noop.Float64Gauge{}
	}
	tel.budgetRatio = ratio

	// No unit: with "1" the Prometheus exporter would name it
	// quotabreaker_store_up_ratio.
	storeUp, err := meter.Int64Gauge("quotabreaker.store.up",
		metric.WithDescription("1 while the Transport's store answers, 0 while it is unreachable and latches are decided by this process alone."))
	if err != nil {
		otel.Handle(err)
		storeUp = noop.Int64Gauge{}
	}
	tel.storeUp = storeUp
	writable, err := meter.Int64Gauge("quotabreaker.store.writable",
		metric.WithDescription("1 while the Transport's store takes writes, 0 while it refuses them or is unreachable: trips then page from this process and trips and spend wait to be written."))
	if err != nil {
		otel.Handle(err)
		writable = noop.Int64Gauge{}
	}
	tel.storeWritable = writable
	tel.invalidChanges = counter("quotabreaker.store.invalid_changes", "{change}",
		"Changes from the store's feed that were dropped because they could not be read or failed the store's own checks.")
	tel.fleet = t.fleet
	if t.fleet != nil {
		tel.storeState(true, true)
	}

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
	if cfg.balances != nil {
		balanceGauges(meter, cfg.balances)
	}
	if cfg.reconciler != nil {
		driftGauge(meter, cfg.reconciler)
	}
	// A Transport dropped with latches open refuses nothing any more.
	runtime.AddCleanup(t, func(n *atomic.Int64) {
		if v := n.Load(); v != 0 {
			open.Add(context.Background(), -v)
		}
	}, t.latches.open)
}

// balanceGauges reports a balance.Watcher's state. Observable gauges: a
// balance changes when the Watcher reads it, not at an event of the
// Transport, and the forecast changes with the time of collection. The
// callback holds the Watcher, not the Transport.
func balanceGauges(meter metric.Meter, w *balance.Watcher) {
	// Units in braces add no suffix to the Prometheus names:
	// quotabreaker_balance, quotabreaker_balance_hours_left,
	// quotabreaker_balance_below_threshold.
	bal, err1 := meter.Float64ObservableGauge("quotabreaker.balance", metric.WithUnit("{currency}"),
		metric.WithDescription("What is left on each watched provider account, as last read, in its currency (quotabreaker.currency)."))
	hours, err2 := meter.Float64ObservableGauge("quotabreaker.balance.hours_left", metric.WithUnit("{hour}"),
		metric.WithDescription("Hours until each watched balance runs out at its recent spend rate; absent while nothing is spent."))
	below, err3 := meter.Int64ObservableGauge("quotabreaker.balance.below_threshold", metric.WithUnit("{threshold}"),
		metric.WithDescription("How many of its configured levels each watched balance is below; 0 when above them all."))
	if err := errors.Join(err1, err2, err3); err != nil {
		otel.Handle(err)
		return
	}
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, s := range w.Statuses() {
			attrs := metric.WithAttributes(semconv.GenAIProviderNameKey.String(s.Provider),
				attrScope.String(s.Scope), attrCurrency.String(s.Currency))
			o.ObserveFloat64(bal, s.Available.Float(), attrs)
			o.ObserveInt64(below, int64(len(s.Below)), attrs)
			if s.HasForecast {
				o.ObserveFloat64(hours, s.Forecast.HoursLeft, attrs)
			}
		}
		return nil
	}, bal, hours, below)
	if err != nil {
		otel.Handle(err)
	}
}

// driftGauge reports a balance.Reconciler's drifts, as they were at its
// last read of the providers' cost reports.
func driftGauge(meter metric.Meter, r *balance.Reconciler) {
	drift, err := meter.Float64ObservableGauge("quotabreaker.cost.drift", metric.WithUnit("{USD}"),
		metric.WithDescription("Dollars counted less dollars the provider billed, per provider and UTC day (quotabreaker.day)."))
	if err != nil {
		otel.Handle(err)
		return
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, d := range r.Drifts() {
			o.ObserveFloat64(drift, d.Diff.Float(), metric.WithAttributes(
				semconv.GenAIProviderNameKey.String(d.Provider), attrDay.String(d.Day.Format(time.DateOnly))))
		}
		return nil
	}, drift)
	if err != nil {
		otel.Handle(err)
	}
}

// isHTTPInstrumentation reports whether rt is otelhttp's Transport, whose
// CLIENT span for each attempt makes the Transport's own span INTERNAL.
func isHTTPInstrumentation(rt http.RoundTripper) bool {
	typ := reflect.TypeOf(rt)
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	return strings.HasSuffix(typ.PkgPath(), "/otelhttp")
}

// start begins an attempt's span. It is a CLIENT span, as OpenTelemetry's
// HTTP conventions ask, unless another instrumentation records the HTTP
// client span of the same attempt: inside (the base is otelhttp's
// Transport, and the request is not refused, so it will reach the base) or
// outside (the request carries a traceparent header naming the span in its
// context, as otelhttp's Transport injects with a W3C TraceContext
// propagator). Then it is INTERNAL, so that each attempt has one CLIENT span. The returned context
// carries the span to the base transport only when there is a span context
// to propagate.
func (tel *telemetry) start(req *http.Request, refused bool) (context.Context, trace.Span) {
	ctx := req.Context()
	if tel.noSpans {
		return ctx, trace.SpanFromContext(context.Background()) // a no-op span
	}
	opts := tel.client
	if (tel.internal && !refused) || tracedOutside(ctx, req.Header) {
		opts = tel.nested
	}
	spanCtx, span := tel.tracer.Start(ctx, spanName(req.Method), opts...)
	if span.IsRecording() {
		span.SetAttributes(requestAttrs(req)...)
	}
	if span.SpanContext().IsValid() {
		ctx = spanCtx
	}
	return ctx, span
}

// tracedOutside reports whether an outer HTTP client instrumentation has
// already started this attempt's span: the traceparent header it injected
// names the span in ctx.
func tracedOutside(ctx context.Context, h http.Header) bool {
	tp := h["Traceparent"]
	if len(tp) == 0 {
		return false
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return false
	}
	id := sc.SpanID()
	var hexID [16]byte
	hex.Encode(hexID[:], id[:])
	return strings.Contains(tp[0], string(hexID[:]))
}

// answer records an answer that came from the network. refusedBy is the
// open latch that ModeObserve let the request past. The span ends later,
// when the caller is done with the body (see Transport.follow).
func (tel *telemetry) answer(span trace.Span, req *http.Request, resp *http.Response, c classify.Result, reqProvider classify.Provider, scope, state string, mode Mode, refusedBy *opened) {
	ctx := req.Context()
	if c.Class != "" && tel.errors.Enabled(ctx) {
		tel.errors.Add(ctx, 1, metric.WithAttributes(metricAttrs(c.Class, c.Code, c.Provider)...))
	}
	if refusedBy != nil {
		tel.shortCircuits.Add(ctx, 1, refusedBy.shortCircuits[mode]...)
	}
	if !span.IsRecording() {
		return
	}
	provider := c.Provider
	if provider == "" {
		provider = reqProvider
	}
	attrs := make([]attribute.KeyValue, 0, 13)
	attrs = append(attrs,
		semconv.HTTPResponseStatusCode(resp.StatusCode),
		attrBreakerState.String(state),
		attrMode.String(mode.String()),
		attrScope.String(scope),
	)
	if provider != "" {
		attrs = append(attrs, semconv.GenAIProviderNameKey.String(string(provider)))
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
	if tel.fleet != nil {
		attrs = append(attrs, attrStoreUp.Bool(tel.fleet.readsUp.Load()))
	}
	if refusedBy != nil {
		attrs = append(attrs, attrWouldShortCircuit.Bool(true), attrCause.String(string(refusedBy.Trip.Cause)))
	}
	if c.Class != "" {
		attrs = appendClassAttrs(attrs, c.Class, c.Code, c.Type)
		if c.Class == classify.RateLimited {
			if d, ok := classify.RetryAfter(resp.Header, tel.now()); ok {
				attrs = append(attrs, attrRetryAfterMS.Int64(d.Milliseconds()))
			}
		}
	}
	span.SetAttributes(attrs...)
	if resp.StatusCode >= 400 {
		span.SetStatus(codes.Error, "")
	}
}

// tripped records that the answer on span opened a latch.
func (tel *telemetry) tripped(ctx context.Context, span trace.Span, tr Trip) {
	tel.openLatches.Add(ctx, 1)
	attrs := append(metricAttrs(tr.Class, tr.Code, tr.Provider), attrMode.String(tr.Mode.String()))
	tel.trips.Add(ctx, 1, metric.WithAttributes(attrs...))
	// The span ends when the caller closes the body, which it cannot have
	// done yet: RoundTrip has not returned.
	span.AddEvent("quotabreaker.trip", trace.WithAttributes(
		attrScope.String(tr.Scope),
		semconv.ErrorTypeKey.String(string(tr.Class)),
		attrErrorCode.String(tr.Code),
		attrMode.String(tr.Mode.String()),
	))
}

// shortCircuit records a request answered by an open latch; resp is nil
// when the Transport returns an *OpenError instead.
func (tel *telemetry) shortCircuit(ctx context.Context, span trace.Span, resp *http.Response, o *opened) {
	tel.shortCircuits.Add(ctx, 1, o.shortCircuits[ModeEnforce]...)
	tr := &o.Trip
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 10)
		attrs = append(attrs,
			attrShortCircuit.Bool(true),
			attrCause.String(string(tr.Cause)),
			attrBreakerState.String("open"),
			attrMode.String(ModeEnforce.String()),
			attrScope.String(tr.Scope),
		)
		if tr.Provider != "" {
			attrs = append(attrs, semconv.GenAIProviderNameKey.String(string(tr.Provider)))
		}
		if resp != nil {
			attrs = append(attrs, semconv.HTTPResponseStatusCode(resp.StatusCode))
		}
		if tr.RequestID != "" { // the tripping answer's, for the support ticket
			attrs = append(attrs, attrRequestID.String(tr.RequestID))
		}
		attrs = appendClassAttrs(attrs, tr.Class, tr.Code, tr.Type)
		span.SetAttributes(attrs...)
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// spent records what an answer used and cost, on its span and in metrics:
// its metering (priced, unpriced or unmetered), its tokens (the provider's
// count only: an estimate is not recorded as tokens), and its cost (an
// estimate's marked quotabreaker.estimated). Each instrument is asked
// whether it records (Enabled) before its attributes are built, and the
// attribute sets of a provider and model are built once (see spendSets).
func (tel *telemetry) spent(ctx context.Context, span trace.Span, s *Usage) {
	u := &s.Tokens
	state := s.state()
	answers := tel.answers.Enabled(ctx)
	tokens := s.Metered && tel.tokens.Enabled(ctx)
	cost := s.Priced && tel.cost.Enabled(ctx)
	if answers || tokens || cost {
		sets := tel.spendSets(s)
		if answers {
			if s.Metered {
				tel.answers.Add(ctx, 1, sets.answers[b2i(s.Priced)])
			} else {
				n := len(sets.attrs)
				tel.answers.Add(ctx, 1, metric.WithAttributes(append(sets.attrs[:n:n],
					attrMetering.String(state), attrUsageMissing.String(s.Metering.String()))...))
			}
		}
		if tokens {
			tel.tokens.Record(ctx, u.InputTokens, sets.input)
			tel.tokens.Record(ctx, u.OutputTokens, sets.output)
		}
		if cost {
			tel.cost.Add(ctx, s.Cost, sets.cost[b2i(s.Estimated)])
		}
	}
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 16)
	attrs = appendModelAttrs(attrs, s.Provider, s.requestModel, s.responseModel)
	attrs = append(attrs, attrMetering.String(state))
	if s.Metered {
		attrs = append(attrs,
			semconv.GenAIUsageInputTokens(int(u.InputTokens)),
			semconv.GenAIUsageOutputTokens(int(u.OutputTokens)),
			semconv.GenAIUsageCacheReadInputTokens(int(u.CacheReadTokens)),
			semconv.GenAIUsageCacheCreationInputTokens(int(u.CacheWriteTokens)),
			semconv.GenAIUsageReasoningOutputTokens(int(u.ReasoningTokens)),
		)
	} else {
		attrs = append(attrs, attrUsageMissing.String(s.Metering.String()))
	}
	if s.Estimated {
		attrs = append(attrs, attrEstimated.Bool(true),
			attrEstimatedInput.Int64(u.InputTokens), attrEstimatedOutput.Int64(u.OutputTokens))
	}
	if s.Priced {
		attrs = append(attrs, attrCostUSD.Float64(s.Cost), attrCostSource.String(s.CostSource))
	}
	span.SetAttributes(attrs...)
}

// opKey is the attributes of one gen_ai.client.operation.duration series.
type opKey struct {
	operation, provider, model, host, errorType string
}

// maxOpAttrs bounds the attribute sets operation keeps built; beyond it,
// a series' set is built for each record.
const maxOpAttrs = 1 << 10

// appendModelAttrs appends the provider and model attributes every spend
// metric carries.
func appendModelAttrs(attrs []attribute.KeyValue, provider classify.Provider, requestModel, responseModel string) []attribute.KeyValue {
	if provider != "" {
		attrs = append(attrs, semconv.GenAIProviderNameKey.String(string(provider)))
	}
	if requestModel != "" {
		attrs = append(attrs, semconv.GenAIRequestModel(requestModel))
	}
	if responseModel != "" {
		attrs = append(attrs, semconv.GenAIResponseModel(responseModel))
	}
	return attrs
}

// maxSpendSets bounds the attribute sets a Transport keeps: model names
// come from servers, so their number has no bound of its own. Past it, the
// sets of a new provider and model are built for each answer, as they were
// before they were kept.
const maxSpendSets = 256

// modelKey names the attribute sets of one provider and model.
type modelKey struct {
	provider                    classify.Provider
	requestModel, responseModel string
}

// spendSets are the metric attributes of the answers of one provider and
// model, built once: attribute.NewSet sorts and copies, which showed as a
// sixth of the answer path in a profile when done for every answer.
type spendSets struct {
	attrs   []attribute.KeyValue        // provider and models; not to be appended to in place
	answers [2]metric.MeasurementOption // by Priced (1), for metered answers
	input   metric.MeasurementOption
	output  metric.MeasurementOption
	cost    [2]metric.MeasurementOption // by Estimated (1)
}

func newSpendSets(k modelKey) *spendSets {
	attrs := appendModelAttrs(make([]attribute.KeyValue, 0, 3), k.provider, k.requestModel, k.responseModel)
	n := len(attrs)
	set := func(extra ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append(attrs[:n:n], extra...)...))
	}
	return &spendSets{
		attrs: attrs[:n:n],
		answers: [2]metric.MeasurementOption{
			set(attrMetering.String("unpriced")),
			set(attrMetering.String("priced")),
		},
		input:  set(semconv.GenAITokenTypeInput),
		output: set(semconv.GenAITokenTypeOutput),
		cost: [2]metric.MeasurementOption{
			set(attrEstimated.Bool(false)),
			set(attrEstimated.Bool(true)),
		},
	}
}

// b2i is 1 for true, 0 for false.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// spendMetrics reports whether any instrument spent records would record
// for ctx: without one, the request's model need not be read for them.
func (tel *telemetry) spendMetrics(ctx context.Context) bool {
	return tel.metrics && (tel.answers.Enabled(ctx) || tel.tokens.Enabled(ctx) || tel.cost.Enabled(ctx))
}

// spendSets returns the attribute sets of s's provider and model, from the
// Transport's bounded cache.
func (tel *telemetry) spendSets(s *Usage) *spendSets {
	k := modelKey{s.Provider, s.requestModel, s.responseModel}
	if v, ok := tel.sets.Load(k); ok {
		return v.(*spendSets)
	}
	sets := newSpendSets(k)
	if tel.nSets.Add(1) <= maxSpendSets {
		if v, loaded := tel.sets.LoadOrStore(k, sets); loaded {
			tel.nSets.Add(-1)
			return v.(*spendSets)
		}
	} else {
		tel.nSets.Add(-1)
	}
	return sets
}

// operation records an attempt that reached the network in
// gen_ai.client.operation.duration, once its answer is done: read to the
// end or closed, for a stream its last byte. The attribute set of each
// series is built once, so that recording allocates nothing.
func (tel *telemetry) operation(at *attempt) {
	if !tel.metrics || at.start.IsZero() || !tel.duration.Enabled(at.req.Context()) {
		return
	}
	k := opKey{operation: operationName(at.req), provider: string(at.provider), model: at.requestModel(), errorType: at.errorType}
	if at.req.URL != nil {
		k.host = at.req.URL.Hostname()
	}
	tel.opMu.RLock()
	opts, ok := tel.opAttrs[k]
	tel.opMu.RUnlock()
	if !ok {
		opts = opAttrs(k)
		tel.opMu.Lock()
		if tel.opAttrs == nil {
			tel.opAttrs = make(map[opKey][]metric.RecordOption)
		}
		if len(tel.opAttrs) < maxOpAttrs {
			tel.opAttrs[k] = opts
		}
		tel.opMu.Unlock()
	}
	tel.duration.Record(at.req.Context(), tel.now().Sub(at.start).Seconds(), opts...)
}

func opAttrs(k opKey) []metric.RecordOption {
	attrs := make([]attribute.KeyValue, 0, 5)
	if k.operation != "" {
		attrs = append(attrs, semconv.GenAIOperationNameKey.String(k.operation))
	}
	if k.provider != "" {
		attrs = append(attrs, semconv.GenAIProviderNameKey.String(k.provider))
	}
	if k.model != "" {
		attrs = append(attrs, semconv.GenAIRequestModel(k.model))
	}
	if k.host != "" {
		attrs = append(attrs, semconv.ServerAddress(k.host))
	}
	if k.errorType != "" {
		attrs = append(attrs, semconv.ErrorTypeKey.String(k.errorType))
	}
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
}

// operationName is the GenAI operation a request's path names, "" when it
// names none this package knows.
func operationName(req *http.Request) string {
	if req.URL == nil {
		return ""
	}
	p := req.URL.Path
	switch {
	case strings.HasSuffix(p, "/chat/completions"), strings.HasSuffix(p, "/messages"), strings.HasSuffix(p, "/responses"):
		return "chat"
	case strings.HasSuffix(p, "/embeddings"):
		return "embeddings"
	case strings.HasSuffix(p, "/completions"):
		return "text_completion"
	case strings.HasSuffix(p, ":generateContent"), strings.HasSuffix(p, ":streamGenerateContent"):
		return "generate_content"
	}
	return ""
}

// budget records a budget key's spent share.
func (tel *telemetry) budget(ctx context.Context, b *budget, key string, k *budgetKey) {
	if !tel.budgetRatio.Enabled(ctx) {
		return
	}
	ratio := float64(k.effective(b.shared)) / float64(b.limit.Load())
	tel.budgetRatio.Record(ctx, ratio, metric.WithAttributes(attrBudget.String(b.Name), attrBudgetKey.String(key)))
}

// streamError records an error that arrived inside a successful answer on
// its span, as error attributes of the attempt, and in the error counter.
func (tel *telemetry) streamError(ctx context.Context, span trace.Span, c classify.Result) {
	attrs := append(metricAttrs(c.Class, c.Code, c.Provider), attrCause.String(string(CauseStream)))
	tel.errors.Add(ctx, 1, metric.WithAttributes(attrs...))
	if span.IsRecording() {
		span.SetAttributes(appendClassAttrs([]attribute.KeyValue{attrCause.String(string(CauseStream))}, c.Class, c.Code, c.Type)...)
		span.SetStatus(codes.Error, "")
	}
}

// storeState records a change of the store's state: up (it answers) and
// writable (it takes writes too).
func (tel *telemetry) storeState(up, writable bool) {
	tel.storeUp.Record(context.Background(), boolInt(up))
	tel.storeWritable.Record(context.Background(), boolInt(writable))
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// invalidChange counts a change from the store that was dropped.
func (tel *telemetry) invalidChange() {
	tel.invalidChanges.Add(context.Background(), 1)
}

// wouldRefuseBudget records, in ModeObserve, a request that a budget's
// hard limit would have refused: the same short_circuits count as in
// ModeEnforce (with quotabreaker.mode "observe"), and on its span the
// budget and quotabreaker.would_short_circuit; the request goes on.
func (tel *telemetry) wouldRefuseBudget(ctx context.Context, span trace.Span, provider classify.Provider, budget string) {
	attrs := append(metricAttrs(classify.QuotaExhausted, "", provider),
		attrMode.String(ModeObserve.String()), attrCause.String(string(CauseBudget)))
	tel.shortCircuits.Add(ctx, 1, metric.WithAttributes(attrs...))
	if span.IsRecording() {
		span.SetAttributes(attrWouldShortCircuit.Bool(true), attrCause.String(string(CauseBudget)), attrBudget.String(budget))
	}
}

// budgetRefusal records a request refused by a budget's hard limit.
func (tel *telemetry) budgetRefusal(ctx context.Context, span trace.Span, tr Trip, budget string) {
	attrs := append(metricAttrs(tr.Class, "", tr.Provider),
		attrMode.String(ModeEnforce.String()), attrCause.String(string(CauseBudget)))
	tel.shortCircuits.Add(ctx, 1, metric.WithAttributes(attrs...))
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 9)
		attrs = append(attrs,
			attrShortCircuit.Bool(true),
			attrCause.String(string(CauseBudget)),
			attrBudget.String(budget),
			attrMode.String(ModeEnforce.String()),
			attrScope.String(tr.Scope),
			semconv.HTTPResponseStatusCode(tr.StatusCode),
		)
		span.SetAttributes(appendClassAttrs(attrs, tr.Class, tr.Code, tr.Type)...)
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// transportError records an error from the base transport. The status
// description is the error's type, not its text, which can quote a URL
// holding a key.
func (tel *telemetry) transportError(span trace.Span, err error, state string, mode Mode) {
	if span.IsRecording() {
		et := semconv.ErrorType(err)
		span.SetAttributes(et, attrBreakerState.String(state), attrMode.String(mode.String()))
		span.SetStatus(codes.Error, et.Value.AsString())
	}
	span.End()
}

// reset records a reset as a short span of its own, a child of ctx's span
// if any. A reset is not a failure, so the class that had tripped the latch
// is quotabreaker.trip.class, not error.type.
func (tel *telemetry) reset(ctx context.Context, tr Trip) {
	tel.openLatches.Add(ctx, -1)
	_, span := tel.tracer.Start(ctx, "quotabreaker.reset", trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() {
		attrs := []attribute.KeyValue{
			attrScope.String(tr.Scope),
			attrBreakerState.String("closed"),
			attrTripClass.String(string(tr.Class)),
		}
		if tr.Code != "" {
			attrs = append(attrs, attrErrorCode.String(tr.Code))
		}
		span.SetAttributes(attrs...)
	}
	span.End()
}

// redactURL returns u for the url.full attribute, with its user info, its
// fragment and every query value replaced by REDACTED, except the values of
// the parameters known to be safe (api-version, alt, ...; see safeParams):
// deny by default, since a gateway may take a secret under any name. Query
// parameters are read by eachQueryParam, the scope's own reader.
func redactURL(u *url.URL) string {
	if u.User == nil && u.RawQuery == "" && u.Fragment == "" && u.RawFragment == "" {
		return u.String()
	}
	r := *u
	if r.User != nil {
		r.User = url.UserPassword("REDACTED", "REDACTED")
	}
	if r.Fragment != "" || r.RawFragment != "" {
		r.Fragment, r.RawFragment = "REDACTED", ""
	}
	if r.RawQuery != "" {
		var b strings.Builder
		eachQueryParam(r.RawQuery, func(name, value string, hasValue bool, kind paramKind, sep string) {
			switch {
			case !hasValue: // ?SECRET
				b.WriteString("REDACTED")
			case kind == paramSafe || value == "":
				b.WriteString(name)
				if name != "" || value != "" {
					b.WriteByte('=')
				}
				b.WriteString(value)
			default:
				b.WriteString(name)
				b.WriteString("=REDACTED")
			}
			b.WriteString(sep)
		})
		r.RawQuery = b.String()
	}
	return r.String()
}
