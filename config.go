package quotabreaker

import (
	"context"
	"log/slog"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/quotabreaker/quotabreaker/balance"
	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/prices"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// config holds a Transport's settings; New fills in the defaults before it
// applies the options.
type config struct {
	scope func(*http.Request) string
	// credentialHeaders are more credential headers, canonical.
	credentialHeaders []string
	tripClasses       []classify.Class
	onTrip            func(context.Context, Trip)
	onReset           func(context.Context, Trip)
	mode              Mode
	noUsage           bool
	streamUsage       bool
	streamSet         bool // WithStreamUsage was given: no default from the budgets
	prices            prices.Func
	budgets           []Budget
	store             LatchStore
	storeTimeout      time.Duration
	storeResync       time.Duration
	logger            *slog.Logger
	onBudget          func(context.Context, BudgetStatus)
	onUsage           func(context.Context, Usage)
	errorOnOpen       bool
	tracerProv        trace.TracerProvider
	meterProv         metric.MeterProvider
	now               func() time.Time
	maxErrorBody      int
	balances          *balance.Watcher
	reconciler        *balance.Reconciler
}

func newConfig(opts []Option) config {
	c := config{
		tripClasses:  []classify.Class{classify.QuotaExhausted},
		tracerProv:   otel.GetTracerProvider(),
		meterProv:    otel.GetMeterProvider(),
		now:          time.Now,
		maxErrorBody: 64 << 10,
		prices:       prices.Lookup,
		storeTimeout: defaultStoreTimeout,
		storeResync:  defaultStoreResync,
		logger:       slog.Default(),
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if !c.streamSet && len(c.budgets) > 0 {
		c.streamUsage = true // a budget meters streams unless told otherwise
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
// are equal share one latch. The default, DefaultScope, is the credentials
// that made the call (the host, the API key wherever the request carries
// it, and OpenAI's organization and project), so one tenant's exhausted key
// does not stop another's. Call DefaultScope from scope to combine the two.
//
// scope is called on every request, on the caller's goroutine, and must be
// fast and safe for concurrent use. Its result appears in spans, in Trip and
// in OnTrip, so it must not contain a secret. An empty result means the
// default scope for that request.
func WithScope(scope func(*http.Request) string) Option {
	return optionFunc(func(c *config) { c.scope = scope })
}

// WithCredentialHeaders names more request headers that carry a credential,
// for the default scope (see DefaultScope): a gateway's own key header whose
// name says neither key, token, secret nor auth, say. Names are matched
// ignoring case; each value is trimmed, and a scheme ("Bearer ") removed,
// before it counts. Later calls add to earlier ones. It changes nothing
// under a WithScope that names a scope.
func WithCredentialHeaders(names ...string) Option {
	return optionFunc(func(c *config) {
		for _, n := range names {
			if n = strings.TrimSpace(n); n != "" {
				c.credentialHeaders = append(c.credentialHeaders, textproto.CanonicalMIMEHeaderKey(n))
			}
		}
	})
}

// WithTripClasses sets which classes open a latch, replacing the default,
// classify.QuotaExhausted alone. Adding classify.Authentication makes a revoked key
// stop its traffic too. Retryable classes (rate limits, overload, server
// errors) and classify.Other are ignored here: the first heal by themselves and
// must reach the caller's retry logic, and classify.Other is too vague to stop
// traffic on. Given no class it accepts, the Transport never trips.
func WithTripClasses(classes ...classify.Class) Option {
	return optionFunc(func(c *config) {
		c.tripClasses = c.tripClasses[:0:0]
		for _, cl := range classes {
			if !cl.Retryable(0) && cl != classify.Other {
				c.tripClasses = append(c.tripClasses, cl)
			}
		}
	})
}

// OnTrip sets a function called once for every latch that opens: the hook
// that pages someone. One event means every later call of that scope fails
// too, so it fires on the first tripping answer, and exactly once even when
// many arrive at once. It fires in ModeObserve too (Trip.Mode says so).
//
// ctx is the tripping request's context without its cancellation, so the
// hook can reach the request's trace and values (a tenant, say) after the
// request ended. Without a store, it runs on the goroutine of that request,
// before its RoundTrip returns (for an error inside a stream, in the Read or
// Close of the body that found it), with no lock held, and delays that
// request for as long as it runs: hand slow work, such as a call to a paging
// service, to another goroutine. With WithStore, it runs on the Transport's
// hook goroutine once the fleet-wide claim is made (ctx is then a fresh
// context), one hook at a time in order, so that a slow OnTrip delays only
// later hooks, never requests, the store's work or Shutdown's writes. It may
// call Reset, OpenLatches, or Shutdown with its ctx. A panic in it is
// recovered and reported to otel.Handle; the latch stays open.
func OnTrip(fn func(ctx context.Context, tr Trip)) Option {
	return optionFunc(func(c *config) { c.onTrip = fn })
}

// OnReset sets a function called for every open latch that Reset or
// ResetAll closes, with the trip that opened it and the context given to
// Reset. It runs on the goroutine that called Reset, after the latch closed
// (and never before OnTrip for that latch has returned), with no lock held;
// with WithStore, a reset made in another process, or one that came while
// OnTrip was due, runs it on the hook goroutine (see OnTrip).
// A panic in it is recovered and reported to otel.Handle; the other latches
// of a ResetAll still close and get their OnReset.
func OnReset(fn func(ctx context.Context, tr Trip)) Option {
	return optionFunc(func(c *config) { c.onReset = fn })
}

// WithUsage turns the reading of usage from successful answers on (the
// default) or off. On, the Transport reads the usage, the model and the
// service tier from every 2xx answer as the caller reads its body (plain
// JSON and event streams, in OpenAI's Chat Completions, Responses and
// Embeddings shapes and Anthropic's Messages shape), without buffering,
// changing or delaying it, in bounded memory, and prices it: the span gets
// gen_ai.usage.* and quotabreaker.cost.usd, the metrics count tokens and
// dollars, and budgets count the spend. That costs a pass over the bytes the
// caller reads (see the README's benchmarks). Off, budgets count nothing,
// and only event streams are read, for the errors inside them.
func WithUsage(on bool) Option {
	return optionFunc(func(c *config) { c.noUsage = !on })
}

// OnUsage sets a hook called once for every successful (2xx) answer that
// came from the network, with what it used and cost: the tokens the span
// records, the price and the cost (or that it is unpriced, or unmetered).
// It runs when the caller has read the body to the end or closed it,
// whichever comes first (at once for an answer with no body), on the
// goroutine that did so, with the request's context, so that a value the
// application put there (its user, its tenant) says whom to bill. An answer
// whose body is closed unread is reported too, as unmetered. It runs after
// the answer's budgets are counted and before its span ends, outside every
// lock; keep it quick (it delays the caller's Read or Close) and hand slow
// work to another goroutine. A panic in it is recovered and logged. A nil
// fn is ignored.
func OnUsage(fn func(ctx context.Context, u Usage)) Option {
	return optionFunc(func(c *config) { c.onUsage = fn })
}

// WithPrices sets how answers are priced: fn returns the price of a model
// for a provider (a classify.Provider value as a string, "" when unknown) and a
// service tier. The default is prices.Lookup, a dated snapshot of public
// prices; prices.Chain(myTable.Lookup, prices.Lookup) overrides some of
// them, and myTable.Lookup alone replaces them. An answer whose model has no
// price is "unpriced": its tokens count, its cost is left out (never taken
// as zero). A nil fn is ignored.
func WithPrices(fn prices.Func) Option {
	return optionFunc(func(c *config) {
		if fn != nil {
			c.prices = fn
		}
	})
}

// WithStreamUsage turns on (or off) asking streamed Chat Completions
// requests for their usage; it is on by default when a budget is given
// (WithBudget), so that the default stream of every OpenAI SDK, which does
// not ask, is metered, and off otherwise. To a streamed request (stream: true) on a host
// known to accept it (OpenAI and DeepSeek, not Azure nor compatible servers
// that reject unknown fields), it adds stream_options.include_usage, so
// that the stream's cost can be counted. The caller's request is not changed: the Transport sends a
// copy. When the caller had not asked for usage itself, the extra usage
// chunk is removed from the stream before the SDK sees it (go-openai's
// stream reader indexes the first choice of every chunk, and that chunk has
// none). Request bodies over 8 MiB are sent as they are.
func WithStreamUsage(on bool) Option {
	return optionFunc(func(c *config) { c.streamUsage, c.streamSet = on, true })
}

// WithBudget adds a budget: the Transport counts what each answer of the
// budget's keys costs, calls OnBudget as the spend crosses its thresholds
// and, with HardLimit, refuses a key that has spent its limit. The option
// may be given once per budget; New panics on an invalid one.
func WithBudget(b Budget) Option {
	return optionFunc(func(c *config) { c.budgets = append(c.budgets, b) })
}

// OnBudget sets a function called when a budget key's spend first crosses
// one of the budget's thresholds in a period (and its limit, threshold 1):
// once per key, threshold and period, even when many answers cross it at
// once. It runs on the goroutine that finished reading the answer that
// crossed it (the caller's, in Read or Close of the body), with no lock
// held, and must not block it for long (with WithStore, on the hook
// goroutine once the fleet's claim of the threshold is made: see OnTrip).
// A panic in it is recovered and
// reported to otel.Handle.
func OnBudget(fn func(ctx context.Context, st BudgetStatus)) Option {
	return optionFunc(func(c *config) { c.onBudget = fn })
}

// WithStore shares the Transport's latches with every Transport on the
// same store, typically one per replica of a service (see the redisstore
// module for Redis), and its budgets' spend too when s is also a SpendStore
// (a Store, as redisstore's is):
//
//   - a trip in any process opens that scope in every process, within the
//     store's propagation delay (Redis: well under a second);
//   - a Reset anywhere closes it everywhere;
//   - exactly one process calls OnTrip per trip: the one whose claim the
//     store records first. The others open their latch quietly, and
//     OnReset runs where OnTrip ran;
//   - a Transport made while a scope is open starts with it open: New
//     waits up to the store's timeout for the fleet's latches;
//   - budgets count the fleet's spend, and each threshold's OnBudget fires
//     once across the fleet.
//
// Requests never wait on the store. They are decided from memory that a
// background goroutine keeps current (the store's change feed, a resync
// every 10 seconds and after every reconnection), and hooks run on a
// goroutine of their own (see OnTrip). When the store cannot be reached, or
// answers but refuses writes (a Redis replica after a failover, an ACL, a
// corrupt value), requests keep flowing on this process's latches; a trip
// pages from this process at once, or as soon as its claim has gone
// unanswered for 50 ms; trips and spend are kept and retried with a
// jittered backoff from 250 ms to 10 s, so a failing store gets a call every
// few seconds, not a loop. Each change of the store's state (up, read-only,
// down) is logged once, with the number of calls that failed, and recorded
// in the quotabreaker.store.up and quotabreaker.store.writable metrics and
// on every span. Call Shutdown (or Close) to write what is queued and stop
// the background work.
func WithStore(s LatchStore) Option {
	return optionFunc(func(c *config) { c.store = s })
}

// WithBalances connects a balance.Watcher, which watches what is left on
// provider accounts (DeepSeek, OpenRouter, Moonshot, SiliconFlow, xAI), to
// the Transport: the cost of every priced answer is told to w.Spent with
// its scope, so that w forecasts when each account runs out from the spend
// counted here (see balance.Watcher); the gauges quotabreaker.balance,
// quotabreaker.balance.hours_left and quotabreaker.balance.below_threshold
// report w's balances; and the Handler's GET lists them with their
// forecasts. No key is recorded: balances are named by scope and key
// fingerprint.
//
// The caller owns w: it starts w's polling goroutine (w.Start) and stops it
// (w.Close). The Transport starts no goroutine for it and Close leaves it
// running, so that one Watcher can serve several Transports and outlive
// them. w's probes must use a client of their own (balance.Config.Client),
// not this Transport: a probe is not spend. The cost per priced answer is
// one mutex of w's; each collection of the metrics computes a forecast per
// balance. Several Transports may share one w: each tells it its spend,
// and each reports the same values on the gauges (a gauge keeps one per
// attribute set). A nil w is ignored.
func WithBalances(w *balance.Watcher) Option {
	return optionFunc(func(c *config) {
		if w != nil {
			c.balances = w
		}
	})
}

// WithReconciler tells r what each priced answer cost, by provider and
// UTC day, and adds the gauge quotabreaker.cost.drift: per provider and day
// (quotabreaker.day), the dollars counted less those the provider billed,
// as r last read them from OpenAI's and Anthropic's cost reports (see
// balance.Reconciler). Negative means the count fell short of the bill. As
// with WithBalances, the caller owns r (r.Start, r.Close); the cost per
// priced answer is one mutex of r's. A nil r is ignored.
func WithReconciler(r *balance.Reconciler) Option {
	return optionFunc(func(c *config) {
		if r != nil {
			c.reconciler = r
		}
	})
}

// WithStoreTimeout bounds each call the Transport makes to its store (2
// seconds by default). Values below a millisecond are ignored.
func WithStoreTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d >= time.Millisecond {
			c.storeTimeout = d
		}
	})
}

// WithLogger sets where the Transport logs the few events that are not
// tied to a request: each change of its store's state (up, read-only,
// down), once, never once per failed call. The default is slog.Default(); a
// nil logger is ignored. go-redis's own lines do not go here by themselves:
// see redisstore.RedisLogger.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithMode sets the mode a Transport starts in: ModeEnforce (the default)
// or ModeObserve; other values are ignored. Transport.SetMode changes it at
// run time. With a store that shares the mode (a ModeStore, as redisstore's
// is), it is the mode until the store holds one: once any switch was made
// through the store (SetMode, the Handler, redisstore's command), the
// fleet's mode wins, from the Snapshot New takes on, and a new replica
// starts in it whatever its WithMode.
func WithMode(m Mode) Option {
	return optionFunc(func(c *config) {
		if m == ModeEnforce || m == ModeObserve {
			c.mode = m
		}
	})
}

// WithShortCircuitError(true) makes a request refused by an open latch or a
// budget fail with an *OpenError (errors.Is(err, ErrOpen)) instead of
// receiving a copy of the tripping answer. It suits plain net/http callers; leave it off
// for OpenAI's SDKs, which retry transport errors but not the marked answer.
func WithShortCircuitError(on bool) Option {
	return optionFunc(func(c *config) { c.errorOnOpen = on })
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
