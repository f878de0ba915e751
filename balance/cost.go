package balance

import "encoding/json"

// Some answers say what they cost, and that figure (what the provider
// billed, discounts and tool calls included) is better than any price
// table. The functions below turn it into micro-dollars, the unit of the
// prices package, rounded up as prices.Cost rounds. They read the usage
// object of a chat completion or a Responses API answer, plain or the last
// event of a stream.

// OpenRouterCost converts OpenRouter's usage.cost, a JSON number of
// credits, to micro-dollars. OpenRouter's credits are US dollars. With
// bring-your-own-key (usage.is_byok), the figure is OpenRouter's fee alone:
// the upstream provider bills the rest.
//
// Source: https://openrouter.ai/docs/use-cases/usage-accounting
func OpenRouterCost(num []byte) (micros int64, ok bool) {
	return cost(num, 6)
}

// XAICost converts xAI's usage.cost_in_usd_ticks, an integer of ticks, to
// micro-dollars. A tick is 10^-10 USD (10,000,000,000 ticks a dollar), so a
// micro-dollar is 10,000 ticks: 37756000 ticks is 3776 micro-dollars
// ($0.0037756, rounded up).
//
// Source: https://docs.x.ai/developers/cost-tracking
func XAICost(num []byte) (micros int64, ok bool) {
	return cost(num, -4)
}

// UsageCost returns what an answer's usage object says the answer cost, in
// micro-dollars: xAI's cost_in_usd_ticks or OpenRouter's cost. ok is false
// when it says neither, or says something that is not a cost.
func UsageCost(usage []byte) (micros int64, ok bool) {
	var u struct {
		Cost  json.RawMessage `json:"cost"`
		Ticks json.RawMessage `json:"cost_in_usd_ticks"`
	}
	if json.Unmarshal(usage, &u) != nil {
		return 0, false
	}
	if len(u.Ticks) > 0 && !isNull(u.Ticks) {
		return XAICost(u.Ticks)
	}
	if len(u.Cost) > 0 && !isNull(u.Cost) {
		return OpenRouterCost(u.Cost)
	}
	return 0, false
}

// cost reads a non-negative JSON number times 10^scale, rounded up.
func cost(num []byte, scale int) (int64, bool) {
	if len(num) == 0 || num[0] == '"' || num[0] == '-' {
		return 0, false
	}
	n, err := parseDecimal(string(num), scale, up)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
