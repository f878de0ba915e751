package balance

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestOpenAICosts(t *testing.T) {
	// Page one is the documented answer with has_more set; page two adds a
	// second day, a second result on the first, and a day not asked for.
	page1 := strings.Replace(openaiCostsDoc, `"has_more": false,
"next_page": null`, `"has_more": true, "next_page": "page_AAAA"`, 1)
	page2 := `{"object":"page","data":[
	  {"object":"bucket","start_time":1730419200,"end_time":1730505600,"results":[
	    {"object":"organization.costs.result","amount":{"value":1.5,"currency":"usd"},"line_item":null,"project_id":"proj_abc"}]},
	  {"object":"bucket","start_time":1730505600,"end_time":1730592000,"results":[]},
	  {"object":"bucket","start_time":1730592000,"end_time":1730678400,"results":[
	    {"object":"organization.costs.result","amount":{"value":9,"currency":"usd"}}]}],
	  "has_more":false,"next_page":null}`
	var queries []string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/organization/costs" || r.Header.Get("Authorization") != "Bearer "+canary {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		queries = append(queries, r.URL.RawQuery)
		if r.URL.Query().Get("page") == "page_AAAA" {
			fmt.Fprint(w, page2)
			return
		}
		fmt.Fprint(w, page1)
	}))
	defer s.Close()
	got, err := OpenAICosts{Key: canaryKey, BaseURL: s.URL, ProjectIDs: []string{"proj_abc"}}.
		Daily(context.Background(), s.Client(), day("2024-11-01").Add(5*time.Hour), day("2024-11-03"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Day{{day("2024-11-01"), 1_560000}, {day("2024-11-02"), 0}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Daily = %+v, want %+v", got, want)
	}
	if len(queries) != 2 ||
		queries[0] != "bucket_width=1d&end_time=1730592000&limit=180&project_ids=proj_abc&start_time=1730419200" ||
		!strings.Contains(queries[1], "page=page_AAAA") {
		t.Errorf("queries = %q", queries)
	}
}

func TestAnthropicCosts(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/v1/organizations/cost_report" || r.Header.Get("X-Api-Key") != canary ||
			r.Header.Get("Anthropic-Version") != "2023-06-01" || r.Header.Get("Authorization") != "" ||
			q.Get("starting_at") != "2025-08-01T00:00:00Z" || q.Get("ending_at") != "2025-08-02T00:00:01Z" ||
			q.Get("bucket_width") != "1d" {
			t.Errorf("request %s %v %v", r.URL, r.Header.Get("Anthropic-Version"), r.Header.Get("X-Api-Key") != "")
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		fmt.Fprint(w, anthropicCostsDoc)
	}))
	defer s.Close()
	got, err := AnthropicCosts{Key: canaryKey, BaseURL: s.URL}.
		Daily(context.Background(), s.Client(), day("2025-08-01"), day("2025-08-02"))
	if err != nil {
		t.Fatal(err)
	}
	// "123.45" cents is $1.2345: 1234500 micro-dollars.
	if want := []Day{{day("2025-08-01"), 1_234500}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Daily = %+v, want %+v", got, want)
	}
}

func TestCostReadersFail(t *testing.T) {
	readers := []CostReader{OpenAICosts{Key: canaryKey}, AnthropicCosts{Key: canaryKey}}
	answers := []struct {
		name   string
		status int
		body   string
		is     error
	}{
		{"401", 401, `{"error":"` + canary + `"}`, ErrUnauthorized},
		{"html", 200, `<html>` + canary, ErrShape},
		{"no has_more", 200, `{"data":[]}`, ErrShape},
		{"has_more without a cursor", 200, `{"data":[],"has_more":true,"next_page":null}`, ErrShape},
		{"endless", 200, `{"data":[],"has_more":true,"next_page":"again"}`, ErrShape},
		{"euros", 200, `{"data":[{"start_time":1,"starting_at":"2025-08-01T00:00:00Z","results":[
			{"amount":{"value":1,"currency":"eur"}},{"amount":"1","currency":"EUR"}]}],"has_more":false}`, ErrShape},
	}
	for _, r := range readers {
		for _, a := range answers {
			t.Run(r.Provider()+"/"+a.name, func(t *testing.T) {
				hits := 0
				s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
					hits++
					w.WriteHeader(a.status)
					fmt.Fprint(w, a.body)
				}))
				defer s.Close()
				var err error
				switch r := r.(type) {
				case OpenAICosts:
					r.BaseURL = s.URL
					_, err = r.Daily(context.Background(), s.Client(), day("2025-08-01"), day("2025-08-02"))
				case AnthropicCosts:
					r.BaseURL = s.URL
					_, err = r.Daily(context.Background(), s.Client(), day("2025-08-01"), day("2025-08-02"))
				}
				if !errors.Is(err, a.is) || strings.Contains(err.Error(), canary) {
					t.Errorf("err = %v, want %v", err, a.is)
				}
				if hits > maxPages {
					t.Errorf("%d requests", hits)
				}
			})
		}
	}
}

func TestDrifts(t *testing.T) {
	counted := []Day{
		{day("2026-11-30"), 10_000000},
		{day("2026-12-01").Add(13 * time.Hour), 5_000000}, // any instant of the day
		{day("2026-12-01"), 1_000000},
	}
	billed := []Day{
		{day("2026-11-30"), 12_500000},
		{day("2026-12-02"), 1_000000},
	}
	got := Drifts(counted, billed)
	want := []Drift{
		{Day: day("2026-11-30"), Counted: 10_000000, Billed: 12_500000, Diff: -2_500000},
		{Day: day("2026-12-01"), Counted: 6_000000, Billed: 0, Diff: 6_000000},
		{Day: day("2026-12-02"), Counted: 0, Billed: 1_000000, Diff: -1_000000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Drifts =\n%+v\nwant\n%+v", got, want)
	}
	if len(Drifts(nil, nil)) != 0 {
		t.Error("Drifts of nothing is not empty")
	}
}
