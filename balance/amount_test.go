package balance

import (
	"math"
	"strconv"
	"testing"
)

func TestParseDecimal(t *testing.T) {
	cases := []struct {
		s     string
		scale int
		r     rounding
		want  int64
		err   bool
	}{
		{"110.00", 6, nearest, 110_000000, false},
		{"0.88", 6, nearest, 880000, false},
		{"49.58894", 6, nearest, 49_588940, false},
		{"4.8984355238", 6, nearest, 4_898436, false},
		{"4.8984345", 6, nearest, 4_898435, false}, // a half rounds away from zero
		{"-4.8984345", 6, nearest, -4_898435, false},
		{"-4.8984344", 6, nearest, -4_898434, false},
		{"0.0000004", 6, nearest, 0, false},
		{"0.0000005", 6, nearest, 1, false},
		{"0.0000001", 6, up, 1, false},
		{"-0.0000001", 6, up, 0, false},
		{"1e-5", 6, nearest, 10, false},
		{"1E+2", 6, nearest, 100_000000, false},
		{"+3", 6, nearest, 3_000000, false},
		{"-1000", 4, nearest, -10_000000, false}, // xAI cents
		{"123.45", 4, nearest, 1_234500, false},  // Anthropic cents
		{"37756000", -4, up, 3776, false},        // xAI ticks
		{"37750000", -4, up, 3775, false},
		{"0", 6, nearest, 0, false},
		{"-0.00", 6, nearest, 0, false},
		{"000123", 0, nearest, 123, false},
		{"9223372036854.775807", 6, nearest, math.MaxInt64, false},
		{"9223372036854.775808", 6, nearest, 0, true},
		{"1e400", 6, nearest, 0, true},
		{"1e-400", 6, up, 1, false},
		{"0e999999999", 6, nearest, 0, false},
		{"", 6, nearest, 0, true},
		{"-", 6, nearest, 0, true},
		{".", 6, nearest, 0, true},
		{"1.", 6, nearest, 0, true},
		{"1e", 6, nearest, 0, true},
		{"1.2.3", 6, nearest, 0, true},
		{" 1", 6, nearest, 0, true},
		{"NaN", 6, nearest, 0, true},
		{"0x10", 6, nearest, 0, true},
		{"1_000", 6, nearest, 0, true},
	}
	for _, c := range cases {
		got, err := parseDecimal(c.s, c.scale, c.r)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("parseDecimal(%q, %d, %d) = %d, %v; want %d, error %t", c.s, c.scale, c.r, got, err, c.want, c.err)
		}
	}
}

func TestAmountString(t *testing.T) {
	for a, want := range map[Amount]string{
		110_000000:    "110.00",
		49_588940:     "49.58894",
		-2_500000:     "-2.50",
		1:             "0.000001",
		0:             "0.00",
		math.MinInt64: "-9223372036854.775808",
	} {
		if got := a.String(); got != want {
			t.Errorf("Amount(%d).String() = %q, want %q", int64(a), got, want)
		}
	}
}

func TestUsageCost(t *testing.T) {
	cases := []struct {
		usage string
		want  int64
		ok    bool
	}{
		{openrouterUsageDoc, 950000, true}, // 0.95 credits, dollars
		{xaiUsageDoc, 3776, true},          // $0.0037756, rounded up
		{`{"cost":0}`, 0, true},
		{`{"cost":1e-7}`, 1, true},
		{`{"cost":"0.5"}`, 0, false},
		{`{"cost":-1}`, 0, false},
		{`{"cost":-0.0000001}`, 0, false},
		{`{"cost":null}`, 0, false},
		{`{"prompt_tokens":3}`, 0, false},
		{`{"cost_in_usd_ticks":1,"cost":9}`, 1, true},
		{`not json`, 0, false},
	}
	for _, c := range cases {
		got, ok := UsageCost([]byte(c.usage))
		if got != c.want || ok != c.ok {
			t.Errorf("UsageCost(%s) = %d, %t; want %d, %t", c.usage, got, ok, c.want, c.ok)
		}
	}
}

// FuzzParseDecimal: the parser never panics, agrees with strconv within
// the rounding it does, and rounding up is the nearest or one above it.
func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"110.00", "49.58894", "4.8984355238", "-1000", "1e-5", "37756000", "0.0000005", "9223372036854.775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseDecimal(s, 6, nearest)
		u, uerr := parseDecimal(s, 6, up)
		if (err == nil) != (uerr == nil) && !(err == nil && n == math.MaxInt64) {
			t.Fatalf("%q: nearest %v, up %v", s, err, uerr)
		}
		if err != nil {
			return
		}
		// Toward +∞ is never below the nearest, nor more than one above.
		if d := u - n; uerr == nil && (d < 0 || d > 1) {
			t.Fatalf("%q: nearest %d, up %d", s, n, u)
		}
		if f, ferr := strconv.ParseFloat(s, 64); ferr == nil {
			if d := math.Abs(f*1e6 - float64(n)); d > 1+math.Abs(f)*1e6*1e-12 {
				t.Fatalf("%q: %d, strconv %v", s, n, f)
			}
		}
	})
}

// FuzzDecode: no answer, however malformed, panics a decoder, and one that
// decodes gives a currency that is a code.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{deepseekDoc, deepseekTwoCurrencies, openrouterKeyDoc, openrouterKeyCrate,
		openrouterKeyUnlimited, openrouterCreditsDoc, moonshotDoc, siliconflowDoc, xaiLedger, "<html>", "null", "{}"} {
		f.Add([]byte(s))
	}
	decoders := []func([]byte) ([]Balance, error){
		decodeDeepSeek, decodeOpenRouterKey, decodeOpenRouterCredits, decodeXAI,
		func(b []byte) ([]Balance, error) { return decodeMoonshot(b, "CNY") },
		func(b []byte) ([]Balance, error) { return decodeSiliconFlow(b, "USD") },
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, d := range decoders {
			bs, err := d(body)
			if err != nil {
				if len(bs) != 0 {
					t.Fatalf("balances %v with error %v", bs, err)
				}
				continue
			}
			if len(bs) == 0 {
				t.Fatal("no balance and no error")
			}
			for _, b := range bs {
				if !validCurrency(b.Currency) {
					t.Fatalf("currency %q", b.Currency)
				}
			}
		}
	})
}

// FuzzDecodeCosts: the cost report decoders never panic, and a page that
// decodes gives days at midnight UTC.
func FuzzDecodeCosts(f *testing.F) {
	for _, s := range []string{openaiCostsDoc, anthropicCostsDoc, `{"data":[],"has_more":true,"next_page":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, d := range []func([]byte) ([]Day, string, error){decodeOpenAICosts, decodeAnthropicCosts} {
			days, _, err := d(body)
			if err != nil {
				continue
			}
			for _, day := range days {
				if !day.Start.Equal(utcDay(day.Start)) || day.Start.Location() != utcDay(day.Start).Location() {
					t.Fatalf("day %v is not midnight UTC", day.Start)
				}
			}
		}
	})
}

// FuzzUsageCost: a usage object never panics UsageCost, and a cost is
// never negative.
func FuzzUsageCost(f *testing.F) {
	for _, s := range []string{openrouterUsageDoc, xaiUsageDoc, `{"cost":1e-7}`, `{"cost_in_usd_ticks":-5}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, usage []byte) {
		if n, ok := UsageCost(usage); ok && n < 0 {
			t.Fatalf("cost %d", n)
		}
	})
}
