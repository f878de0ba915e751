package quotabreaker

import (
	"context"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quotabreaker/quotabreaker/classify"
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
	noSpans  bool                     // the tracer provider is OpenTelemetry's no-op one
	internal bool                     // the base is an HTTP client instrumentation (otelhttp)
	spanType atomic.Pointer[spanType] // the last type of span seen (see copies)
	client   []trace.SpanStartOption
	nested   []trace.SpanStartOption
	now      func() time.Time
	urls     urlCache

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
	opAttrs map[opKey]*opSeries // guarded by opMu; at most maxOpAttrs
	// lastOp is the series operation last recorded in, which most answers
	// share: comparing its key costs less than hashing it for the map.
	lastOp atomic.Pointer[opSeries]

	// The attribute sets of the spend metrics, by provider and model: a
	// bounded cache (see spendSets).
	setsMu sync.RWMutex
	sets   map[modelKey]*spendSets // guarded by setsMu; at most maxSpendSets
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
		return made[metric.Int64Counter](noop.Int64Counter{})(meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc)))
	}
	tel.errors = counter("quotabreaker.errors", "{error}",
		"Error answers (status 400 and above) by class, provider code and provider.")
	tel.shortCircuits = counter("quotabreaker.short_circuits", "{request}",
		"Requests an open latch answered without reaching the network (in observe mode: would have).")
	tel.trips = counter("quotabreaker.trips", "{trip}",
		"Latches opened.")
	tel.tokens = made[metric.Int64Histogram](noop.Int64Histogram{})(meter.Int64Histogram("gen_ai.client.token.usage",
		metric.WithUnit("{token}"),
		metric.WithDescription("Number of input and output tokens used."),
		metric.WithExplicitBucketBoundaries(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)))
	tel.cost = made[metric.Float64Counter](noop.Float64Counter{})(meter.Float64Counter("quotabreaker.cost",
		metric.WithUnit("{USD}"),
		metric.WithDescription("Dollars spent, from the usage of priced answers.")))
	tel.answers = counter("quotabreaker.answers", "{answer}",
		"Successful answers by quotabreaker.metering: priced, unpriced (usage read, no price) or unmetered (usage unknown).")
	tel.duration = made[metric.Float64Histogram](noop.Float64Histogram{})(meter.Float64Histogram("gen_ai.client.operation.duration",
		metric.WithUnit("s"),
		metric.WithDescription("GenAI operation duration."),
		metric.WithExplicitBucketBoundaries(0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)))
	tel.budgetRatio = made[metric.Float64Gauge](noop.Float64Gauge{})(meter.Float64Gauge("quotabreaker.budget.spent_ratio",
		metric.WithUnit("1"),
		metric.WithDescription("Share of each budget key's limit spent in the current period; 1 means the limit is reached.")))
	// No unit: with "1" the Prometheus exporter would name it
	// quotabreaker_store_up_ratio.
	tel.storeUp = made[metric.Int64Gauge](noop.Int64Gauge{})(meter.Int64Gauge("quotabreaker.store.up",
		metric.WithDescription("1 while the Transport's store answers, 0 while it is unreachable and latches are decided by this process alone.")))
	tel.storeWritable = made[metric.Int64Gauge](noop.Int64Gauge{})(meter.Int64Gauge("quotabreaker.store.writable",
		metric.WithDescription("1 while the Transport's store takes writes, 0 while it refuses them or is unreachable: trips then page from this process and trips and spend wait to be written.")))
	tel.invalidChanges = counter("quotabreaker.store.invalid_changes", "{change}",
		"Changes from the store's feed that were dropped because they could not be read or failed the store's own checks.")
	tel.fleet = t.fleet
	if t.fleet != nil {
		tel.storeState(true, true)
	}

	// A synchronous up-down counter rather than an observable gauge: it
	// adds up across Transports sharing a meter provider, and needs no
	// callback holding the Transport alive.
	open := made[metric.Int64UpDownCounter](noop.Int64UpDownCounter{})(meter.Int64UpDownCounter("quotabreaker.open_latches",
		metric.WithUnit("{latch}"),
		metric.WithDescription("Latches open now; above 0 means some traffic is refused until a reset.")))
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

// answer records an answer that came from the network, and the trip it
// opened if any. refusedBy is the open latch that ModeObserve let the request
// past. The span ends later, when the caller is done with the body (see
// Transport.follow); its attributes, pending's (the request's, from start)
// and the answer's, are returned for ended to set.
func (tel *telemetry) answer(span trace.Span, pending *spanAttrs, req *http.Request, resp *http.Response, c classify.Result, reqProvider classify.Provider, scope, state string, mode Mode, refusedBy, first *opened) *spanAttrs {
	ctx := req.Context()
	if first != nil {
		tel.tripped(ctx, span, first.Trip)
	}
	if c.Class != "" && tel.errors.Enabled(ctx) {
		tel.errors.Add(ctx, 1, metric.WithAttributes(metricAttrs(c.Class, c.Code, c.Provider)...))
	}
	if refusedBy != nil {
		tel.shortCircuits.Add(ctx, 1, shortCircuitSets(refusedBy)[mode]...)
	}
	if !span.IsRecording() {
		return nil
	}
	provider := c.Provider
	if provider == "" {
		provider = reqProvider
	}
	attrs := append(pending.kv,
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
	pending.kv = attrs
	if resp.StatusCode >= 400 {
		span.SetStatus(codes.Error, "")
	}
	return pending
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
	tel.shortCircuits.Add(ctx, 1, shortCircuitSets(o)[ModeEnforce]...)
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

// settled records what settle found of an answer: an error inside its
// stream and the trip that opened, what it used and cost (when metered is
// false, only its response model), and the budget keys it charged; its span
// attributes join pending, the answer's (nil when the span does not record).
func (tel *telemetry) settled(ctx context.Context, span trace.Span, pending *spanAttrs, u *Usage, metered bool, charged []budgetCharge, streamErr *classify.Result, first *opened) {
	if streamErr != nil {
		tel.streamError(ctx, span, pending, *streamErr, first)
	}
	if !metered {
		if pending != nil && u.responseModel != "" {
			pending.kv = append(pending.kv, semconv.GenAIResponseModel(u.responseModel))
		}
		return
	}
	tel.spent(ctx, pending, u)
	for _, c := range charged {
		tel.budget(ctx, c.b, c.key, c.k)
	}
}

// spent records what an answer used and cost, on its span and in metrics:
// its metering (priced, unpriced or unmetered), its tokens (the provider's
// count only: an estimate is not recorded as tokens), and its cost (an
// estimate's marked quotabreaker.estimated). Each instrument is asked
// whether it records (Enabled) before its attributes are built, and the
// attribute sets of a provider and model are built once (see spendSets).
func (tel *telemetry) spent(ctx context.Context, pending *spanAttrs, s *Usage) {
	u := &s.Tokens
	state := s.state()
	answers := tel.answers.Enabled(ctx)
	tokens := s.Metered && tel.tokens.Enabled(ctx)
	cost := s.Priced && tel.cost.Enabled(ctx)
	if answers || tokens || cost {
		sets := tel.spendSets(s)
		if answers {
			if s.Metered {
				tel.answers.Add(ctx, 1, sets.answers[b2i(s.Priced)]...)
			} else {
				n := len(sets.attrs)
				tel.answers.Add(ctx, 1, metric.WithAttributes(append(sets.attrs[:n:n],
					attrMetering.String(state), attrUsageMissing.String(s.Metering.String()))...))
			}
		}
		if tokens {
			tel.tokens.Record(ctx, u.InputTokens, sets.input...)
			tel.tokens.Record(ctx, u.OutputTokens, sets.output...)
		}
		if cost {
			tel.cost.Add(ctx, s.Cost, sets.cost[b2i(s.Estimated)]...)
		}
	}
	if pending == nil {
		return
	}
	// The provider is the answer's already (see answer): the SDK's span
	// would copy a second gen_ai.provider.name, to drop it on export.
	attrs := appendModelAttrs(pending.kv, "", s.requestModel, s.responseModel)
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
	pending.kv = attrs
}

// spendMetrics reports whether any instrument spent records would record
// for ctx: without one, the request's model need not be read for them.
func (tel *telemetry) spendMetrics(ctx context.Context) bool {
	return tel.metrics && (tel.answers.Enabled(ctx) || tel.tokens.Enabled(ctx) || tel.cost.Enabled(ctx))
}

// timed reports whether the duration of an attempt for ctx is recorded:
// only then is the clock read as it is sent.
func (tel *telemetry) timed(ctx context.Context) bool {
	return tel.metrics && tel.duration.Enabled(ctx)
}

// operation records an attempt that reached the network in
// gen_ai.client.operation.duration, once its answer is done: read to the
// end or closed, for a stream its last byte. The attribute set of each
// series is built once, so that recording allocates nothing.
func (tel *telemetry) operation(at *attempt) {
	if at.start.IsZero() || !tel.timed(at.req.Context()) {
		return
	}
	k := opKey{operation: operationName(at.req), provider: string(at.provider), model: at.requestModel(), errorType: at.errorType}
	if at.req.URL != nil {
		k.host = at.req.URL.Hostname()
	}
	s := tel.lastOp.Load()
	if s == nil || s.k != k {
		s = tel.opSeries(k)
		tel.lastOp.Store(s)
	}
	tel.duration.Record(at.req.Context(), tel.now().Sub(at.start).Seconds(), s.opts...)
}

// opSeries returns k's series, from the Transport's bounded cache.
func (tel *telemetry) opSeries(k opKey) *opSeries {
	tel.opMu.RLock()
	s := tel.opAttrs[k]
	tel.opMu.RUnlock()
	if s != nil {
		return s
	}
	s = newOpSeries(k)
	tel.opMu.Lock()
	defer tel.opMu.Unlock()
	if tel.opAttrs == nil {
		tel.opAttrs = make(map[opKey]*opSeries)
	}
	if len(tel.opAttrs) < maxOpAttrs {
		tel.opAttrs[k] = s
	}
	return s
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
// its span, as error attributes of the attempt, and in the error counter,
// and the trip it opened if any.
func (tel *telemetry) streamError(ctx context.Context, span trace.Span, pending *spanAttrs, c classify.Result, first *opened) {
	if first != nil {
		tel.tripped(ctx, span, first.Trip)
	}
	attrs := append(metricAttrs(c.Class, c.Code, c.Provider), attrCause.String(string(CauseStream)))
	tel.errors.Add(ctx, 1, metric.WithAttributes(attrs...))
	if pending != nil {
		pending.kv = appendClassAttrs(append(pending.kv, attrCause.String(string(CauseStream))), c.Class, c.Code, c.Type)
		span.SetStatus(codes.Error, "")
	}
}

// storeState records a change of the store's state: up (it answers) and
// writable (it takes writes too).
func (tel *telemetry) storeState(up, writable bool) {
	tel.storeUp.Record(context.Background(), int64(b2i(up)))
	tel.storeWritable.Record(context.Background(), int64(b2i(writable)))
}

// invalidChange counts a change from the store that was dropped.
func (tel *telemetry) invalidChange() {
	tel.invalidChanges.Add(context.Background(), 1)
}

// budgetRefusal records a request refused by a budget's hard limit (tr is
// the refusal's trip), or, in ModeObserve (tr is nil), one it would have
// refused: the same short_circuits count (with quotabreaker.mode
// "observe"), and on its span the budget and
// quotabreaker.would_short_circuit; that request goes on.
func (tel *telemetry) budgetRefusal(ctx context.Context, span trace.Span, provider classify.Provider, tr *Trip, budget string) {
	if tr == nil {
		attrs := append(metricAttrs(classify.QuotaExhausted, "", provider),
			attrMode.String(ModeObserve.String()), attrCause.String(string(CauseBudget)))
		tel.shortCircuits.Add(ctx, 1, metric.WithAttributes(attrs...))
		if span.IsRecording() {
			span.SetAttributes(attrWouldShortCircuit.Bool(true), attrCause.String(string(CauseBudget)), attrBudget.String(budget))
		}
		return
	}
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

// ended records the end of an attempt that reached the base: its duration
// (see operation), its answer's span attributes and, when the base failed,
// its error; then it ends the span. The status description is the error's
// type, not its text, which can quote a URL holding a key.
func (tel *telemetry) ended(at *attempt) {
	tel.operation(at)
	failed := at.err != nil && at.span.IsRecording()
	if failed {
		// errorType is semconv.ErrorType(at.err)'s, worked out as it failed.
		at.attrs.kv = append(at.attrs.kv, semconv.ErrorTypeKey.String(at.errorType),
			attrBreakerState.String(at.latch.state()), attrMode.String(at.mode.String()))
	}
	setAttrs(at.span, &at.attrs) // the request's, the answer's and the spend's, in one call
	if failed {
		at.span.SetStatus(codes.Error, at.errorType)
	}
	at.span.End()
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
