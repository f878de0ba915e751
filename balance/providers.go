package balance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Each probe below is a struct of plain fields, ready as a literal. Key is
// required; BaseURL replaces the provider's scheme and host (a proxy, a test
// server), and the documented path is appended to it; Timeout bounds each
// read (DefaultTimeout when zero). Probes hold no state and are safe for
// concurrent use.

// DeepSeek reads GET https://api.deepseek.com/user/balance with an API key:
// one Balance per entry of balance_infos, amounts as strings, currency as
// stated ("CNY" or "USD"), is_available as Usable.
//
// Shape: https://api-docs.deepseek.com/api/get-user-balance
type DeepSeek struct {
	Key     KeyFunc
	BaseURL string // default "https://api.deepseek.com"
	Timeout time.Duration
}

// Provider returns "deepseek".
func (DeepSeek) Provider() string { return "deepseek" }

// Scope returns the scope of the key, for the base URL's host.
func (p DeepSeek) Scope() (string, error) { return p.endpoint().scope() }

func (p DeepSeek) endpoint() endpoint {
	return endpoint{provider: "deepseek", key: p.Key, base: p.BaseURL, def: "https://api.deepseek.com", timeout: p.Timeout}
}

// Balances reads the account's balance in each of its currencies.
func (p DeepSeek) Balances(ctx context.Context, c *http.Client) ([]Balance, error) {
	return p.endpoint().readBalance(ctx, c, "/user/balance", decodeDeepSeek)
}

// decodeDeepSeek reads
//
//	{"is_available":true,"balance_infos":[{"currency":"CNY","total_balance":"110.00",
//	  "granted_balance":"10.00","topped_up_balance":"100.00"}]}
//
// Older revisions of the page showed the amounts as numbers: both are read.
func decodeDeepSeek(body []byte) ([]Balance, error) {
	const p = "deepseek"
	var a struct {
		IsAvailable  *bool `json:"is_available"`
		BalanceInfos []struct {
			Currency        string          `json:"currency"`
			TotalBalance    json.RawMessage `json:"total_balance"`
			GrantedBalance  json.RawMessage `json:"granted_balance"`
			ToppedUpBalance json.RawMessage `json:"topped_up_balance"`
		} `json:"balance_infos"`
	}
	if err := unmarshal(p, body, &a); err != nil {
		return nil, err
	}
	if a.IsAvailable == nil {
		return nil, shapeError(p, "no is_available")
	}
	if len(a.BalanceInfos) == 0 {
		// An account always has a balance in some currency; an empty list
		// must not read as "nothing left".
		return nil, shapeError(p, "no balance_infos")
	}
	bs := make([]Balance, 0, len(a.BalanceInfos))
	for _, in := range a.BalanceInfos {
		if !validCurrency(in.Currency) {
			return nil, shapeError(p, "balance_infos[].currency missing or not a currency code")
		}
		b := Balance{Currency: in.Currency, Usable: *a.IsAvailable}
		var err error
		if b.Available, err = required(p, "balance_infos[].total_balance", in.TotalBalance, 6); err != nil {
			return nil, err
		}
		if b.Parts, err = parts(p, 6, field{"granted_balance", in.GrantedBalance}, field{"topped_up_balance", in.ToppedUpBalance}); err != nil {
			return nil, err
		}
		bs = append(bs, b)
	}
	return bs, nil
}

// OpenRouter reads GET https://openrouter.ai/api/v1/key with the key used
// for inference: what is left of the key's credit limit (limit_remaining),
// in US dollars (OpenRouter's credits are dollars). A key without a limit
// (limit: null) has no balance of its own: Balances returns ErrNoLimit, and
// OpenRouterCredits reads the account's credits instead.
//
// Parts: limit, and usage, usage_daily, usage_weekly, usage_monthly (the
// dollars the key spent: in all, and in the current day, week and month).
//
// Shape: https://openrouter.ai/docs/api/api-reference/api-keys/get-current-key
type OpenRouter struct {
	Key     KeyFunc
	BaseURL string // default "https://openrouter.ai"
	Timeout time.Duration
}

// Provider returns "openrouter".
func (OpenRouter) Provider() string { return "openrouter" }

// Scope returns the scope of the key, for the base URL's host.
func (p OpenRouter) Scope() (string, error) { return p.endpoint().scope() }

func (p OpenRouter) endpoint() endpoint {
	return endpoint{provider: "openrouter", key: p.Key, base: p.BaseURL, def: "https://openrouter.ai", timeout: p.Timeout}
}

// Balances reads what is left of the key's limit.
func (p OpenRouter) Balances(ctx context.Context, c *http.Client) ([]Balance, error) {
	return p.endpoint().readBalance(ctx, c, "/api/v1/key", decodeOpenRouterKey)
}

// decodeOpenRouterKey reads
//
//	{"data":{"label":"sk-or-v1-au7...890","limit":100,"limit_remaining":74.5,
//	  "limit_reset":"monthly","usage":25.5,"usage_daily":25.5,...}}
//
// label, a part of the key, is not kept.
func decodeOpenRouterKey(body []byte) ([]Balance, error) {
	const p = "openrouter"
	var a struct {
		Data *struct {
			Limit          json.RawMessage `json:"limit"`
			LimitRemaining json.RawMessage `json:"limit_remaining"`
			Usage          json.RawMessage `json:"usage"`
			UsageDaily     json.RawMessage `json:"usage_daily"`
			UsageWeekly    json.RawMessage `json:"usage_weekly"`
			UsageMonthly   json.RawMessage `json:"usage_monthly"`
		} `json:"data"`
	}
	if err := unmarshal(p, body, &a); err != nil {
		return nil, err
	}
	d := a.Data
	if d == nil || d.Limit == nil {
		return nil, shapeError(p, "no data.limit")
	}
	if isNull(d.Limit) {
		return nil, fmt.Errorf("%w: openrouter's limit is null; OpenRouterCredits reads the account's credits", ErrNoLimit)
	}
	b := Balance{Currency: "USD"}
	var err error
	if b.Available, err = required(p, "data.limit_remaining", d.LimitRemaining, 6); err != nil {
		return nil, err
	}
	if b.Parts, err = parts(p, 6, field{"limit", d.Limit}, field{"usage", d.Usage}, field{"usage_daily", d.UsageDaily},
		field{"usage_weekly", d.UsageWeekly}, field{"usage_monthly", d.UsageMonthly}); err != nil {
		return nil, err
	}
	b.Usable = b.Available > 0
	return []Balance{b}, nil
}

// OpenRouterCredits reads GET https://openrouter.ai/api/v1/credits with a
// management key: the account's credits purchased (total_credits) less
// those used (total_usage), in US dollars. The management key is not an
// inference key: Balance.Scope names the management key's scope.
//
// Shape: https://openrouter.ai/docs/api/api-reference/credits/get-credits
type OpenRouterCredits struct {
	Key     KeyFunc
	BaseURL string // default "https://openrouter.ai"
	Timeout time.Duration
}

// Provider returns "openrouter".
func (OpenRouterCredits) Provider() string { return "openrouter" }

// Scope returns the scope of the key, for the base URL's host.
func (p OpenRouterCredits) Scope() (string, error) { return p.endpoint().scope() }

func (p OpenRouterCredits) endpoint() endpoint {
	return endpoint{provider: "openrouter", key: p.Key, base: p.BaseURL, def: "https://openrouter.ai", timeout: p.Timeout}
}

// Balances reads the account's credits.
func (p OpenRouterCredits) Balances(ctx context.Context, c *http.Client) ([]Balance, error) {
	return p.endpoint().readBalance(ctx, c, "/api/v1/credits", decodeOpenRouterCredits)
}

// decodeOpenRouterCredits reads {"data":{"total_credits":100.5,"total_usage":25.75}}.
func decodeOpenRouterCredits(body []byte) ([]Balance, error) {
	const p = "openrouter"
	var a struct {
		Data *struct {
			TotalCredits json.RawMessage `json:"total_credits"`
			TotalUsage   json.RawMessage `json:"total_usage"`
		} `json:"data"`
	}
	if err := unmarshal(p, body, &a); err != nil {
		return nil, err
	}
	if a.Data == nil {
		return nil, shapeError(p, "no data")
	}
	credits, err := required(p, "data.total_credits", a.Data.TotalCredits, 6)
	if err != nil {
		return nil, err
	}
	usage, err := required(p, "data.total_usage", a.Data.TotalUsage, 6)
	if err != nil {
		return nil, err
	}
	b := Balance{
		Currency:  "USD",
		Available: credits - usage,
		Parts:     []Part{{"total_credits", credits}, {"total_usage", usage}},
	}
	b.Usable = b.Available > 0
	return []Balance{b}, nil
}

// Moonshot reads GET https://api.moonshot.cn/v1/users/me/balance (or
// api.moonshot.ai, the international platform) with an API key:
// available_balance, with voucher_balance and cash_balance as parts. Cash can
// be negative (debt); the API refuses inference when available_balance is
// zero or less. The answer states no currency: the platforms' documentation
// gives CNY for api.moonshot.cn and USD for api.moonshot.ai, and Currency
// must be set for any other host.
//
// Shape: https://platform.moonshot.cn/docs/api/balance (CNY); the
// international platform's OpenAPI description, unit USD:
// https://raw.githubusercontent.com/api-evangelist/moonshot-ai/refs/heads/main/openapi/moonshot-ai-billing-api-openapi.yml;
// the host decides the currency as in
// https://docs.rs/ai-usagebar/0.19.0/ai_usagebar/usage/struct.MoonshotSnapshot.html
type Moonshot struct {
	Key      KeyFunc
	BaseURL  string // default "https://api.moonshot.cn"
	Currency string // default by host: CNY for *.moonshot.cn, USD for *.moonshot.ai
	Timeout  time.Duration
}

// Provider returns "moonshot".
func (Moonshot) Provider() string { return "moonshot" }

// Scope returns the scope of the key, for the base URL's host.
func (p Moonshot) Scope() (string, error) { return p.endpoint().scope() }

func (p Moonshot) endpoint() endpoint {
	return endpoint{provider: "moonshot", key: p.Key, base: p.BaseURL, def: "https://api.moonshot.cn", timeout: p.Timeout}
}

// Balances reads the account's balance.
func (p Moonshot) Balances(ctx context.Context, c *http.Client) ([]Balance, error) {
	e := p.endpoint()
	cur, err := e.currency(p.Currency, map[string]string{"moonshot.cn": "CNY", "moonshot.ai": "USD"})
	if err != nil {
		return nil, err
	}
	return e.readBalance(ctx, c, "/v1/users/me/balance", func(body []byte) ([]Balance, error) {
		return decodeMoonshot(body, cur)
	})
}

// decodeMoonshot reads
//
//	{"code":0,"data":{"available_balance":49.58894,"voucher_balance":46.58893,
//	  "cash_balance":3.00001},"scode":"0x0","status":true}
func decodeMoonshot(body []byte, currency string) ([]Balance, error) {
	const p = "moonshot"
	var a struct {
		Code *int64 `json:"code"`
		Data *struct {
			AvailableBalance json.RawMessage `json:"available_balance"`
			VoucherBalance   json.RawMessage `json:"voucher_balance"`
			CashBalance      json.RawMessage `json:"cash_balance"`
		} `json:"data"`
	}
	if err := unmarshal(p, body, &a); err != nil {
		return nil, err
	}
	if a.Code != nil && *a.Code != 0 {
		return nil, shapeError(p, "code %d, not 0", *a.Code)
	}
	if a.Data == nil {
		return nil, shapeError(p, "no data")
	}
	b := Balance{Currency: currency}
	var err error
	if b.Available, err = required(p, "data.available_balance", a.Data.AvailableBalance, 6); err != nil {
		return nil, err
	}
	if b.Parts, err = parts(p, 6, field{"voucher_balance", a.Data.VoucherBalance}, field{"cash_balance", a.Data.CashBalance}); err != nil {
		return nil, err
	}
	b.Usable = b.Available > 0
	return []Balance{b}, nil
}

// SiliconFlow reads GET https://api.siliconflow.com/v1/user/info with an
// API key: data.totalBalance, with data.balance (granted) and
// data.chargeBalance (topped up) as parts, amounts as strings. The answer
// states no currency: the international platform (siliconflow.com) bills in
// USD, the Chinese one (siliconflow.cn) in CNY; Currency must be set for any
// other host. SiliconFlow retired the endpoint on api.siliconflow.cn on
// 2026-08-14, so the default is the international host.
//
// Shape: https://docs.siliconflow.com/en/api-reference/userinfo/get-user-info
type SiliconFlow struct {
	Key      KeyFunc
	BaseURL  string // default "https://api.siliconflow.com"
	Currency string // default by host: USD for *.siliconflow.com, CNY for *.siliconflow.cn
	Timeout  time.Duration
}

// Provider returns "siliconflow".
func (SiliconFlow) Provider() string { return "siliconflow" }

// Scope returns the scope of the key, for the base URL's host.
func (p SiliconFlow) Scope() (string, error) { return p.endpoint().scope() }

func (p SiliconFlow) endpoint() endpoint {
	return endpoint{provider: "siliconflow", key: p.Key, base: p.BaseURL, def: "https://api.siliconflow.com", timeout: p.Timeout}
}

// Balances reads the account's balance.
func (p SiliconFlow) Balances(ctx context.Context, c *http.Client) ([]Balance, error) {
	e := p.endpoint()
	cur, err := e.currency(p.Currency, map[string]string{"siliconflow.com": "USD", "siliconflow.cn": "CNY"})
	if err != nil {
		return nil, err
	}
	return e.readBalance(ctx, c, "/v1/user/info", func(body []byte) ([]Balance, error) {
		return decodeSiliconFlow(body, cur)
	})
}

// decodeSiliconFlow reads
//
//	{"code":20000,"message":"OK","status":true,"data":{"id":"userid",...,
//	  "balance":"0.88","status":"normal",...,"chargeBalance":"88.00","totalBalance":"88.88"}}
//
// The user's name, email and id are not kept.
func decodeSiliconFlow(body []byte, currency string) ([]Balance, error) {
	const p = "siliconflow"
	var a struct {
		Code *int64 `json:"code"`
		Data *struct {
			Balance       json.RawMessage `json:"balance"`
			ChargeBalance json.RawMessage `json:"chargeBalance"`
			TotalBalance  json.RawMessage `json:"totalBalance"`
		} `json:"data"`
	}
	if err := unmarshal(p, body, &a); err != nil {
		return nil, err
	}
	if a.Code != nil && *a.Code != 20000 {
		return nil, shapeError(p, "code %d, not 20000", *a.Code)
	}
	if a.Data == nil {
		return nil, shapeError(p, "no data")
	}
	b := Balance{Currency: currency}
	var err error
	if b.Available, err = required(p, "data.totalBalance", a.Data.TotalBalance, 6); err != nil {
		return nil, err
	}
	if b.Parts, err = parts(p, 6, field{"balance", a.Data.Balance}, field{"chargeBalance", a.Data.ChargeBalance}); err != nil {
		return nil, err
	}
	b.Usable = b.Available > 0
	return []Balance{b}, nil
}

// XAI reads GET https://management-api.x.ai/v1/billing/teams/{team_id}/prepaid/balance
// with a management key (not an inference key): the team's prepaid credit.
// The answer is a ledger in US cents as a string, where purchases are
// negative and spend positive, so the balance is the negated total.val:
// {"total":{"val":"-1000"}} is $10.00 left. Balance.Account is the team id.
//
// Shape: https://docs.x.ai/developers/rest-api-reference/management/billing
// ("List prepaid credit balance and balance changes"); the sign as read by
// https://github.com/steipete/CodexBar/blob/main/docs/xai.md
type XAI struct {
	Key     KeyFunc
	TeamID  string
	BaseURL string // default "https://management-api.x.ai"
	Timeout time.Duration
}

// Provider returns "xai".
func (XAI) Provider() string { return "xai" }

// Scope returns the scope of the key, for the base URL's host.
func (p XAI) Scope() (string, error) { return p.endpoint().scope() }

func (p XAI) endpoint() endpoint {
	return endpoint{provider: "xai", key: p.Key, base: p.BaseURL, def: "https://management-api.x.ai", timeout: p.Timeout}
}

// Balances reads the team's prepaid balance.
func (p XAI) Balances(ctx context.Context, c *http.Client) ([]Balance, error) {
	if p.TeamID == "" {
		return nil, fmt.Errorf("balance: xai: no TeamID")
	}
	e := p.endpoint()
	bs, err := e.readBalance(ctx, c, "/v1/billing/teams/"+url.PathEscape(p.TeamID)+"/prepaid/balance", decodeXAI)
	for i := range bs {
		bs[i].Account = p.TeamID
	}
	return bs, err
}

// decodeXAI reads {"changes":[...],"total":{"val":"-1000"}}.
func decodeXAI(body []byte) ([]Balance, error) {
	const p = "xai"
	var a struct {
		Total *struct {
			Val json.RawMessage `json:"val"`
		} `json:"total"`
	}
	if err := unmarshal(p, body, &a); err != nil {
		return nil, err
	}
	if a.Total == nil {
		return nil, shapeError(p, "no total")
	}
	// Cents to millionths of a dollar: a scale of 10^4.
	ledger, err := required(p, "total.val", a.Total.Val, 4)
	if err != nil {
		return nil, err
	}
	b := Balance{Currency: "USD", Available: -ledger}
	b.Usable = b.Available > 0
	return []Balance{b}, nil
}

// unmarshal decodes body into v, or returns an ErrShape that says whether
// the body was HTML (a proxy's or a login page) without quoting it.
func unmarshal(provider string, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		if b := bytes.TrimSpace(body); len(b) > 0 && b[0] == '<' {
			return shapeError(provider, "HTML, not JSON")
		}
		return shapeError(provider, "not the documented JSON")
	}
	return nil
}

// jsonAmount reads a JSON amount, a number or a string holding one, times
// 10^scale; ok is false when it is absent or null.
func jsonAmount(raw json.RawMessage, scale int) (a Amount, ok bool, err error) {
	if len(raw) == 0 || isNull(raw) {
		return 0, false, nil
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, false, err
		}
	}
	n, err := parseDecimal(s, scale, nearest)
	return Amount(n), err == nil, err
}

// required reads the amount that field must hold.
func required(provider, field string, raw json.RawMessage, scale int) (Amount, error) {
	a, ok, err := jsonAmount(raw, scale)
	if err != nil || !ok {
		return 0, shapeError(provider, "%s missing or not an amount", field)
	}
	return a, nil
}

// field is an optional amount of an answer, under its JSON name.
type field struct {
	name string
	raw  json.RawMessage
}

// parts reads the optional amounts fs, dropping the absent ones.
func parts(provider string, scale int, fs ...field) ([]Part, error) {
	var ps []Part
	for _, f := range fs {
		a, ok, err := jsonAmount(f.raw, scale)
		if err != nil {
			return nil, shapeError(provider, "%s is not an amount", f.name)
		}
		if ok {
			ps = append(ps, Part{f.name, a})
		}
	}
	return ps, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// validCurrency keeps a currency as the provider states it, provided it
// looks like a code: it becomes a metric attribute.
func validCurrency(c string) bool {
	if len(c) == 0 || len(c) > 16 {
		return false
	}
	for i := 0; i < len(c); i++ {
		if b := c[i]; !('A' <= b && b <= 'Z' || 'a' <= b && b <= 'z' || '0' <= b && b <= '9') {
			return false
		}
	}
	return true
}

// currency returns set, or the currency the provider documents for the base
// URL's host.
func (e endpoint) currency(set string, byDomain map[string]string) (string, error) {
	if set != "" {
		return set, nil
	}
	_, host, err := e.url("", nil)
	if err != nil {
		return "", err
	}
	host = strings.ToLower(host)
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	for d, c := range byDomain {
		if host == d || strings.HasSuffix(host, "."+d) {
			return c, nil
		}
	}
	return "", fmt.Errorf("balance: %s: the answer states no currency and %s is not the provider's host: set Currency", e.provider, host)
}
