package quotabreaker

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/quotabreaker/quotabreaker/balance"
	"github.com/quotabreaker/quotabreaker/classify"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
)

// This file holds the attributes the Transport's spans and metrics carry:
// their names, which are a public contract documented in the package
// overview, and how they are built from an answer and a trip, with the
// caches of the sets that recur; also the helper that makes the
// instruments and the balance gauges. A request's HTTP attributes are in
// span.go, with the span they go on.

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
	attrCostSource        = attribute.Key("quotabreaker.cost.source")
	attrCurrency          = attribute.Key("quotabreaker.currency")
	attrDay               = attribute.Key("quotabreaker.day")
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

// shortCircuitSets returns the short-circuit counter's attribute sets for
// o's trip, built on its first refusal and kept with it.
func shortCircuitSets(o *opened) *[2][]metric.AddOption {
	if s := o.shortCircuits.Load(); s != nil {
		return s
	}
	s := shortCircuitAttrs(o.Trip)
	o.shortCircuits.CompareAndSwap(nil, &s) // a racing refusal built the same sets
	return o.shortCircuits.Load()
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

// headerInt reads a header by its canonical name, as h.Get would, without
// canonicalizing the name again.
func headerInt(h http.Header, name string) (int64, bool) {
	v := h[name]
	if len(v) == 0 || v[0] == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v[0]), 10, 64)
	return n, err == nil
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
// Each is the slice of options an instrument takes, made once too:
// passing one option would allocate its variadic slice on every answer.
type spendSets struct {
	attrs   []attribute.KeyValue  // provider and models; not to be appended to in place
	answers [2][]metric.AddOption // by Priced (1), for metered answers
	input   []metric.RecordOption
	output  []metric.RecordOption
	cost    [2][]metric.AddOption // by Estimated (1)
}

func newSpendSets(k modelKey) *spendSets {
	attrs := appendModelAttrs(make([]attribute.KeyValue, 0, 3), k.provider, k.requestModel, k.responseModel)
	n := len(attrs)
	set := func(extra ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append(attrs[:n:n], extra...)...))
	}
	add := func(extra attribute.KeyValue) []metric.AddOption { return []metric.AddOption{set(extra)} }
	record := func(extra attribute.KeyValue) []metric.RecordOption { return []metric.RecordOption{set(extra)} }
	return &spendSets{
		attrs:   attrs[:n:n],
		answers: [2][]metric.AddOption{add(attrMetering.String("unpriced")), add(attrMetering.String("priced"))},
		input:   record(semconv.GenAITokenTypeInput),
		output:  record(semconv.GenAITokenTypeOutput),
		cost:    [2][]metric.AddOption{add(attrEstimated.Bool(false)), add(attrEstimated.Bool(true))},
	}
}

// b2i is 1 for true, 0 for false.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// spendSets returns the attribute sets of s's provider and model, from the
// Transport's bounded cache.
func (tel *telemetry) spendSets(s *Usage) *spendSets {
	// A map under a read lock rather than a sync.Map, whose key, an
	// interface, would allocate on every answer.
	k := modelKey{s.Provider, s.requestModel, s.responseModel}
	tel.setsMu.RLock()
	sets := tel.sets[k]
	tel.setsMu.RUnlock()
	if sets != nil {
		return sets
	}
	sets = newSpendSets(k)
	tel.setsMu.Lock()
	defer tel.setsMu.Unlock()
	if kept := tel.sets[k]; kept != nil {
		return kept
	}
	if len(tel.sets) < maxSpendSets {
		if tel.sets == nil {
			tel.sets = make(map[modelKey]*spendSets)
		}
		tel.sets[k] = sets
	}
	return sets
}

// opSeries is one gen_ai.client.operation.duration series: its attributes
// and the options that record them, built once.
type opSeries struct {
	k    opKey
	opts []metric.RecordOption
}

func newOpSeries(k opKey) *opSeries {
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
	return &opSeries{k, []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}}
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

// made returns a function that passes on the instrument a meter made, or
// fallback, a no-op, with the meter's error sent to otel.Handle: telemetry
// never fails New.
func made[T any](fallback T) func(T, error) T {
	return func(i T, err error) T {
		if err != nil {
			otel.Handle(err)
			return fallback
		}
		return i
	}
}
