package balance

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// OpenAI and Anthropic state no balance, but their admin APIs report what
// they billed per day. Reading those reports beside what the Transport
// counted shows how far the count drifts from the bill (prices that
// changed, fees no token count explains, spend from outside the Transport).

// Day is what was spent in one UTC day, in micro-dollars.
type Day struct {
	// Start is the day's first instant, midnight UTC.
	Start time.Time
	// USD is the day's spend in millionths of a dollar.
	USD Amount
}

// A CostReader reads what a provider billed per UTC day.
type CostReader interface {
	// Provider names the provider: "openai", "anthropic".
	Provider() string
	// Daily returns what was billed on each day from start to end (both
	// rounded down to their day; end exclusive), in day order, one Day per
	// day the provider reports.
	Daily(ctx context.Context, c *http.Client, start, end time.Time) ([]Day, error)
}

// maxPages bounds the pages a report is read in: a cursor that never ends
// must not loop forever. 40 pages of 31 days is over three years.
const maxPages = 40

// OpenAICosts reads GET https://api.openai.com/v1/organization/costs with
// an admin key, in daily buckets (bucket_width=1d, up to 180 a page,
// has_more and next_page to turn pages), summing results[].amount.value of
// each bucket. Amounts are numbers of US dollars ("currency": "usd").
//
// Shape: the Costs object of OpenAI's OpenAPI description, as published in
// https://metacpan.org/source/OVID/OpenAPI-Client-OpenAI-0.21/lib/OpenAPI/Client/OpenAI/Path/organization-costs.pod
// (start_time in Unix seconds, limit 1 to 180, page = next_page) and its
// example answer at https://share.apidog.com/apidoc/docs-site/370474/api-12405880
type OpenAICosts struct {
	Key        KeyFunc
	BaseURL    string   // default "https://api.openai.com"
	ProjectIDs []string // only these projects' costs, when set
	Timeout    time.Duration
}

// Provider returns "openai".
func (OpenAICosts) Provider() string { return "openai" }

// Daily returns the organization's billed cost per day.
func (r OpenAICosts) Daily(ctx context.Context, c *http.Client, start, end time.Time) ([]Day, error) {
	e := endpoint{provider: "openai", key: r.Key, base: r.BaseURL, def: "https://api.openai.com", timeout: r.Timeout}
	start, end = utcDay(start), utcDay(end)
	return e.pages(ctx, c, "/v1/organization/costs", start, end, func(page string) url.Values {
		q := url.Values{
			"start_time":   {strconv.FormatInt(start.Unix(), 10)},
			"end_time":     {strconv.FormatInt(end.Unix(), 10)},
			"bucket_width": {"1d"},
			"limit":        {"180"},
		}
		for _, id := range r.ProjectIDs {
			q.Add("project_ids", id)
		}
		if page != "" {
			q.Set("page", page)
		}
		return q
	}, func(key string) http.Header { return bearer(key) }, decodeOpenAICosts)
}

// decodeOpenAICosts reads one page:
//
//	{"object":"page","data":[{"object":"bucket","start_time":1730419200,"end_time":1730505600,
//	  "results":[{"object":"organization.costs.result","amount":{"value":0.06,"currency":"usd"},
//	  "line_item":null,"project_id":null}]}],"has_more":false,"next_page":null}
func decodeOpenAICosts(body []byte) (days []Day, next string, err error) {
	const p = "openai"
	var a struct {
		Data *[]struct {
			StartTime *int64 `json:"start_time"`
			Results   []struct {
				Amount *struct {
					Value    json.RawMessage `json:"value"`
					Currency string          `json:"currency"`
				} `json:"amount"`
			} `json:"results"`
		} `json:"data"`
		HasMore  *bool  `json:"has_more"`
		NextPage string `json:"next_page"`
	}
	if err := unmarshal(p, body, &a); err != nil {
		return nil, "", err
	}
	if a.Data == nil || a.HasMore == nil {
		return nil, "", shapeError(p, "no data or has_more")
	}
	for _, b := range *a.Data {
		if b.StartTime == nil {
			return nil, "", shapeError(p, "data[].start_time missing")
		}
		d := Day{Start: utcDay(time.Unix(*b.StartTime, 0))}
		for _, r := range b.Results {
			if r.Amount == nil {
				return nil, "", shapeError(p, "data[].results[].amount missing")
			}
			if !strings.EqualFold(r.Amount.Currency, "usd") {
				return nil, "", shapeError(p, "data[].results[].amount.currency is not usd")
			}
			v, err := required(p, "data[].results[].amount.value", r.Amount.Value, 6)
			if err != nil {
				return nil, "", err
			}
			d.USD += v
		}
		days = append(days, d)
	}
	if *a.HasMore {
		if a.NextPage == "" {
			return nil, "", shapeError(p, "has_more without next_page")
		}
		next = a.NextPage
	}
	return days, next, nil
}

// AnthropicCosts reads GET https://api.anthropic.com/v1/organizations/cost_report
// with an admin key (x-api-key, anthropic-version: 2023-06-01), in daily
// buckets (bucket_width=1d, up to 31 a page, has_more and next_page to turn
// pages), summing results[].amount of each bucket. An amount is a decimal
// string in cents: "123.45" in "USD" is $1.2345. Anthropic documents that
// the report leaves out Priority Tier costs.
//
// Shape: https://platform.claude.com/docs/en/api/admin/cost_report/retrieve
type AnthropicCosts struct {
	Key     KeyFunc
	BaseURL string // default "https://api.anthropic.com"
	Timeout time.Duration
}

// Provider returns "anthropic".
func (AnthropicCosts) Provider() string { return "anthropic" }

// Daily returns the organization's billed cost per day.
func (r AnthropicCosts) Daily(ctx context.Context, c *http.Client, start, end time.Time) ([]Day, error) {
	e := endpoint{provider: "anthropic", key: r.Key, base: r.BaseURL, def: "https://api.anthropic.com", timeout: r.Timeout}
	start, end = utcDay(start), utcDay(end)
	return e.pages(ctx, c, "/v1/organizations/cost_report", start, end, func(page string) url.Values {
		q := url.Values{
			"starting_at": {start.Format(time.RFC3339)},
			// "Time buckets that end before this timestamp": a second past
			// end keeps the bucket that ends at end, whether "before" is
			// strict or not, and no later one.
			"ending_at":    {end.Add(time.Second).Format(time.RFC3339)},
			"bucket_width": {"1d"},
			"limit":        {"31"},
		}
		if page != "" {
			q.Set("page", page)
		}
		return q
	}, func(key string) http.Header {
		return http.Header{"X-Api-Key": {key}, "Anthropic-Version": {"2023-06-01"}}
	}, decodeAnthropicCosts)
}

// decodeAnthropicCosts reads one page:
//
//	{"data":[{"starting_at":"2025-08-01T00:00:00Z","ending_at":"2025-08-02T00:00:00Z",
//	  "results":[{"currency":"USD","amount":"123.45",...}]}],"has_more":false,"next_page":null}
func decodeAnthropicCosts(body []byte) (days []Day, next string, err error) {
	const p = "anthropic"
	var a struct {
		Data *[]struct {
			StartingAt *time.Time `json:"starting_at"`
			Results    []struct {
				Amount   json.RawMessage `json:"amount"`
				Currency string          `json:"currency"`
			} `json:"results"`
		} `json:"data"`
		HasMore  *bool  `json:"has_more"`
		NextPage string `json:"next_page"`
	}
	if err := unmarshal(p, body, &a); err != nil {
		return nil, "", err
	}
	if a.Data == nil || a.HasMore == nil {
		return nil, "", shapeError(p, "no data or has_more")
	}
	for _, b := range *a.Data {
		if b.StartingAt == nil {
			return nil, "", shapeError(p, "data[].starting_at missing")
		}
		d := Day{Start: utcDay(*b.StartingAt)}
		for _, r := range b.Results {
			if r.Currency != "" && !strings.EqualFold(r.Currency, "USD") {
				return nil, "", shapeError(p, "data[].results[].currency is not USD")
			}
			// Cents to millionths of a dollar: a scale of 10^4.
			v, err := required(p, "data[].results[].amount", r.Amount, 4)
			if err != nil {
				return nil, "", err
			}
			d.USD += v
		}
		days = append(days, d)
	}
	if *a.HasMore {
		if a.NextPage == "" {
			return nil, "", shapeError(p, "has_more without next_page")
		}
		next = a.NextPage
	}
	return days, next, nil
}

// pages reads a report page after page, following next_page, and merges
// the days from start (included) to end (excluded).
func (e endpoint) pages(ctx context.Context, c *http.Client, path string, start, end time.Time,
	query func(page string) url.Values,
	auth func(key string) http.Header,
	decode func(body []byte) ([]Day, string, error)) ([]Day, error) {
	key, err := e.readKey()
	if err != nil {
		return nil, err
	}
	byDay := map[time.Time]Amount{}
	page := ""
	for n := 0; ; n++ {
		if n == maxPages {
			return nil, e.shape("more than %d pages", maxPages)
		}
		u, _, err := e.url(path, query(page))
		if err != nil {
			return nil, err
		}
		body, _, err := e.get(ctx, c, u, auth(key))
		if err != nil {
			return nil, err
		}
		days, next, err := decode(body)
		if err != nil {
			return nil, err
		}
		for _, d := range days {
			// Only the days asked for, whatever the server sends.
			if !d.Start.Before(start) && d.Start.Before(end) {
				byDay[d.Start] += d.USD
			}
		}
		if next == "" {
			break
		}
		page = next
	}
	days := make([]Day, 0, len(byDay))
	for t, a := range byDay {
		days = append(days, Day{Start: t, USD: a})
	}
	slices.SortFunc(days, func(a, b Day) int { return a.Start.Compare(b.Start) })
	return days, nil
}

// utcDay returns the first instant of t's day in UTC.
func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Drift is one day's difference between what the Transport counted and
// what the provider billed, both in micro-dollars.
type Drift struct {
	Day     time.Time // midnight UTC
	Counted Amount
	Billed  Amount
	// Diff is Counted less Billed: negative when the count falls short of
	// the bill (spend the count missed: unpriced models, fees, other
	// clients of the same organization).
	Diff Amount
}

// Drifts pairs counted and billed by UTC day, in day order. A day on one
// side only counts as zero on the other. Several entries for one day add
// up.
func Drifts(counted, billed []Day) []Drift {
	byDay := map[time.Time]*Drift{}
	get := func(t time.Time) *Drift {
		t = utcDay(t)
		d := byDay[t]
		if d == nil {
			d = &Drift{Day: t}
			byDay[t] = d
		}
		return d
	}
	for _, c := range counted {
		get(c.Start).Counted += c.USD
	}
	for _, b := range billed {
		get(b.Start).Billed += b.USD
	}
	out := make([]Drift, 0, len(byDay))
	for _, d := range byDay {
		d.Diff = d.Counted - d.Billed
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Drift) int { return a.Day.Compare(b.Day) })
	return out
}
