// Package balance reads what is left on LLM provider accounts, forecasts
// when it runs out, and reads what providers billed, so that a page can
// come a day before the quota answer instead of with it.
//
// It imports only the standard library. It reads; it never tops up. Its
// state is in a Thresholds and in a Watcher.
//
// # Balances
//
// A Probe reads one account's balance through the provider's documented
// endpoint. These providers have one:
//
//   - DeepSeek: GET /user/balance, with the API key; CNY or USD as stated.
//   - OpenRouter: GET /api/v1/key, with the API key: what is left of the
//     key's credit limit, in USD. A key without a limit has no balance
//     (ErrNoLimit); OpenRouterCredits reads the account's credits with a
//     management key.
//   - Moonshot (Kimi): GET /v1/users/me/balance, with the API key; CNY on
//     api.moonshot.cn, USD on api.moonshot.ai.
//   - SiliconFlow: GET /v1/user/info, with the API key; USD on
//     api.siliconflow.com, CNY on api.siliconflow.cn.
//   - xAI: GET /v1/billing/teams/{team_id}/prepaid/balance on
//     management-api.x.ai, with a management key; USD, stated in cents.
//
// OpenAI and Anthropic have none: their admin APIs report spend, never what
// is left. For them, OpenAICosts and AnthropicCosts read the billed cost per
// day, and Drifts compares it with the spend the Transport counted.
//
// A probe's key comes from a KeyFunc (EnvKey reads an environment
// variable), called at each read. No probe stores a key, and no error,
// Balance or log line holds one: a Balance names the key by its
// Fingerprint and by the Scope that quotabreaker.DefaultScope gives the
// inference requests made with it to the same host. Errors say what went
// wrong without quoting the answer: ErrUnauthorized (401, 403), a
// *StatusError (any other non-2xx), ErrShape (a 2xx answer of an unknown
// shape: it never reads as a zero balance), and context.DeadlineExceeded
// when the probe's Timeout passes.
//
// Amounts are Amounts, integers of millionths of the currency's unit,
// parsed from the provider's decimal text without going through a float.
// The currency is kept as the provider states it; this package converts
// none.
//
// # Forecasts
//
// SpendRate turns cumulative spend samples over a recent window into a
// Rate, and Predict turns a Balance and a Rate into a Forecast: the hours
// until the balance reaches zero. The forecast is a straight line: it
// assumes the window's average rate holds (no daily cycle, no growth), that
// the balance has fallen at that rate since it was read, that nothing else
// spends from the account, and that no top-up comes. It needs spend in the
// balance's currency: spend counted in USD against a CNY balance gives
// ErrCurrency until the caller converts the rate (Rate.Convert) at a rate
// of exchange of its choosing. No spend gives no forecast (ErrNoSpend).
// Thresholds fires once when a balance falls below a level and again only
// after a top-up has lifted it above.
//
// # Watching
//
// A Watcher puts these together: it polls its probes at an interval, with
// jitter and a capped exponential backoff on errors (never faster than the
// interval; a Retry-After is honoured), through an *http.Client of the
// caller's (never a quotabreaker.Transport: a probe is not spend). It keeps
// the latest Balance of each account, is told the spend the Transport
// counts (Spent, which quotabreaker.WithBalances wires), forecasts each
// balance from the faster of that spend and the balance's own decline
// between reads, and calls OnLow once per threshold crossing and OnRunOut
// once each time a forecast falls under the horizon (24 hours by default),
// with a sentence for the page: "at this rate, DeepSeek key 3f2a9e52b7c1
// runs out in about 9 hours". With a Share (redisstore implements one), a
// fleet polls each probe once per interval and every replica reads the
// result.
//
// # Costs the provider states
//
// OpenRouter's usage.cost (USD) and xAI's usage.cost_in_usd_ticks (10^-10
// USD) say what an answer cost; UsageCost, OpenRouterCost and XAICost turn
// them into micro-dollars, the prices package's unit.
package balance
