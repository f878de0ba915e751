package quotabreaker

import (
	"net/http"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// config holds a Transport's settings; New fills in the defaults before it
// applies the options.
type config struct {
	scope        func(*http.Request) string
	tripClasses  []Class
	onTrip       func(Trip)
	onReset      func(Trip)
	errorOnOpen  bool
	tracerProv   trace.TracerProvider
	meterProv    metric.MeterProvider
	now          func() time.Time
	maxErrorBody int
}

func newConfig(opts []Option) config {
	c := config{
		tripClasses:  []Class{ClassQuotaExhausted},
		tracerProv:   otel.GetTracerProvider(),
		meterProv:    otel.GetMeterProvider(),
		now:          time.Now,
		maxErrorBody: 64 << 10,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// Option configures a Transport.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithScope sets how requests map to latches: requests whose scope strings
// are equal share one latch. The default scope is the credentials that made
// the call: the target host, a one-way fingerprint of the Authorization,
// api-key, x-api-key or x-goog-api-key header, and the OpenAI-Organization
// and OpenAI-Project headers, so one tenant's exhausted key does not stop
// another's.
//
// scope is called on every request, on the caller's goroutine, and must be
// fast and safe for concurrent use. Its result appears in spans, in Trip and
// in OnTrip, so it must not contain a secret. An empty result means the
// default scope for that request.
func WithScope(scope func(*http.Request) string) Option {
	return optionFunc(func(c *config) { c.scope = scope })
}

// WithTripClasses sets which classes open a latch, replacing the default,
// ClassQuotaExhausted alone. Adding ClassAuthentication makes a revoked key
// stop its traffic too. Retryable classes (rate limits, overload, server
// errors) and ClassOther are ignored here: the first heal by themselves and
// must reach the caller's retry logic, and ClassOther is too vague to stop
// traffic on. Given no class it accepts, the Transport never trips.
func WithTripClasses(classes ...Class) Option {
	return optionFunc(func(c *config) {
		c.tripClasses = c.tripClasses[:0:0]
		for _, cl := range classes {
			if !cl.retryable(0) && cl != ClassOther {
				c.tripClasses = append(c.tripClasses, cl)
			}
		}
	})
}

// OnTrip sets a function called once for every latch that opens: the hook
// that pages someone. One event means every later call of that scope fails
// too, so it fires on the first tripping answer, and exactly once even when
// many arrive at once.
//
// It runs on the goroutine of the request whose answer tripped the latch,
// before that request's RoundTrip returns, with no lock held. It may call
// Reset or OpenLatches, but it delays that one request for as long as it runs:
// hand slow work, such as a call to a paging service, to another goroutine.
func OnTrip(fn func(Trip)) Option {
	return optionFunc(func(c *config) { c.onTrip = fn })
}

// OnReset sets a function called for every open latch that Reset or
// ResetAll closes, with the trip that opened it. It runs on the goroutine
// that called Reset, after the latch closed, with no lock held.
func OnReset(fn func(Trip)) Option {
	return optionFunc(func(c *config) { c.onReset = fn })
}

// WithShortCircuitError makes a request refused by an open latch fail with
// an *OpenError (errors.Is(err, ErrQuotaExhausted)) instead of receiving a
// copy of the tripping answer. It suits plain net/http callers; leave it off
// for OpenAI's SDKs, which retry transport errors but not the marked answer.
func WithShortCircuitError() Option {
	return optionFunc(func(c *config) { c.errorOnOpen = true })
}

// WithTracerProvider sets the provider of the Transport's tracer. The
// default is the global provider at the time New is called (which forwards
// to one installed later); a nil provider is ignored.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) {
		if tp != nil {
			c.tracerProv = tp
		}
	})
}

// WithMeterProvider sets the provider of the Transport's meter. The default
// is the global provider at the time New is called (which forwards to one
// installed later); a nil provider is ignored.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) {
		if mp != nil {
			c.meterProv = mp
		}
	})
}

// WithClock sets the clock that stamps Trip.At and reads HTTP-date
// Retry-After headers. The default is time.Now; a nil clock is ignored.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now != nil {
			c.now = now
		}
	})
}

// WithMaxErrorBody sets how many bytes of an error answer's body the
// Transport reads to classify it (64 KiB by default; real error bodies are
// under 2 KiB). The caller receives the whole body either way. A tripping
// answer longer than this is not kept whole: requests the latch refuses get
// a short body in OpenAI's shape with the same code and type instead.
// Values below 1 KiB are raised to 1 KiB.
func WithMaxErrorBody(n int) Option {
	return optionFunc(func(c *config) { c.maxErrorBody = max(n, 1<<10) })
}
