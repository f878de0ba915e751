package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/format"
	"math/big"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"time"
)

// meta says where the input comes from: source.json beside it.
type meta struct {
	Commit string `json:"commit"` // the genai-prices commit
	Date   string `json:"date"`   // its date, YYYY-MM-DD
	URL    string `json:"url"`    // the data file at that commit
}

// providerNames maps each provider id of the source data to the names
// Lookup knows it by, in order of preference: when several providers price
// a model and the caller's provider does not, the first wins. Makers come
// first, then the clouds that resell their models, then hosts of open
// models, then routers. The first name of each is the provider's
// OpenTelemetry gen_ai.provider.name where the conventions define one
// ("gcp.gemini", "x_ai", "mistral_ai", "azure.ai.openai", "aws.bedrock"),
// the name quotabreaker's Provider constants use otherwise ("moonshot",
// "zhipu", "together", "fireworks", "openrouter"), and for providers that
// neither names, the source's id with '_' read as '.' ("huggingface.groq");
// further names are other spellings of the same provider ("gcp.vertex_ai",
// which bills as Gemini's API does). The source's own ids are names too.
//
// Every provider of the source must be listed here: a new provider is a
// decision, not a default. genprices reports the ones listed that the source
// lacks.
var providerNames = []struct {
	id    string
	names []string
}{
	{"openai", []string{"openai"}},
	{"anthropic", []string{"anthropic"}},
	{"google", []string{"gcp.gemini", "gcp.vertex_ai", "gcp.gen_ai"}},
	{"deepseek", []string{"deepseek"}},
	{"x-ai", []string{"x_ai"}},
	{"mistral", []string{"mistral_ai"}},
	{"cohere", []string{"cohere"}},
	{"moonshotai", []string{"moonshot"}},
	{"zhipuai", []string{"zhipu"}},
	{"minimax", []string{"minimax"}},
	{"perplexity", []string{"perplexity"}},
	{"voyageai", []string{"voyageai"}},
	{"azure", []string{"azure.ai.openai", "azure.ai.inference"}},
	{"aws", []string{"aws.bedrock"}},
	{"groq", []string{"groq"}},
	{"together", []string{"together"}},
	{"fireworks", []string{"fireworks"}},
	{"cerebras", []string{"cerebras"}},
	{"novita", []string{"novita"}},
	{"avian", []string{"avian"}},
	{"doubleword", []string{"doubleword"}},
	{"ovhcloud", []string{"ovhcloud"}},
	{"huggingface_cerebras", []string{"huggingface.cerebras"}},
	{"huggingface_fireworks-ai", []string{"huggingface.fireworks-ai"}},
	{"huggingface_groq", []string{"huggingface.groq"}},
	{"huggingface_hyperbolic", []string{"huggingface.hyperbolic"}},
	{"huggingface_nebius", []string{"huggingface.nebius"}},
	{"huggingface_novita", []string{"huggingface.novita"}},
	{"huggingface_nscale", []string{"huggingface.nscale"}},
	{"huggingface_ovhcloud", []string{"huggingface.ovhcloud"}},
	{"huggingface_publicai", []string{"huggingface.publicai"}},
	{"huggingface_sambanova", []string{"huggingface.sambanova"}},
	{"huggingface_together", []string{"huggingface.together"}},
	{"openrouter", []string{"openrouter"}},
}

// priceFields maps the source's per-token price keys that Price holds.
var priceFields = map[string]string{
	"input_mtok":       "Input",
	"cache_read_mtok":  "CachedInput",
	"cache_write_mtok": "CacheWrite",
	"output_mtok":      "Output",
}

// ignoredFields are the source's price keys that Price has no field for:
// audio tokens are priced as text tokens (Tokens does not count them
// apart), and a fee per request is not priced. Any other key is an error.
var ignoredFields = map[string]bool{
	"input_audio_mtok":      true,
	"cache_audio_read_mtok": true,
	"output_audio_mtok":     true,
	"requests_kcount":       true,
}

// price mirrors prices.Price field for field: all in micro-dollars per
// million tokens, but for LongContext, a number of tokens.
type price struct {
	Input, CachedInput, CacheWrite, CacheWrite1h, Output                     int64
	LongContext                                                              int64
	LongInput, LongCachedInput, LongCacheWrite, LongCacheWrite1h, LongOutput int64
}

func (p *price) field(name string, long bool) *int64 {
	switch name {
	case "Input":
		return cond(long, &p.LongInput, &p.Input)
	case "CachedInput":
		return cond(long, &p.LongCachedInput, &p.CachedInput)
	case "CacheWrite":
		return cond(long, &p.LongCacheWrite, &p.CacheWrite)
	case "Output":
		return cond(long, &p.LongOutput, &p.Output)
	}
	panic("no price field " + name)
}

func cond[T any](c bool, a, b T) T {
	if c {
		return a
	}
	return b
}

// clause is a matcher of the source, its strings in lower case.
type clause struct {
	op  string // equals, starts_with, ends_with, contains, regex, or, and
	s   string
	sub []clause
}

// model is one model of the source.
type model struct {
	provider int // index in table.providers
	id       string
	priced   bool
	price    price
	changes  []change
}

// change is a conditional price after a model's first.
type change struct {
	since    int64
	from, to int32
	price    price
}

// rule is the part of a model's matcher that is not an exact name.
type rule struct {
	model int
	match clause
}

// exactKey is an exact model name at a provider.
type exactKey struct {
	name     string
	provider int
}

// provider is one provider of the source, as generated.
type provider struct {
	id, name string // the source's id; the first of providerNames
	maker    *clause
	fallback []int
	rules    [2]int
}

// table is the generator's result.
type table struct {
	meta
	providers []provider
	names     map[string]int // every name of a provider: its index
	models    []model
	rules     []rule
	exact     map[exactKey]int
	exacts    []exactOf // exact, sorted
	preferred []int     // indexes in providers, in order of preference
	regexps   bool      // whether any matcher is a regular expression

	// For the report.
	counts    [2]int   // providers, models of the source
	rounded   int      // prices rounded to a whole micro-dollar per million tokens
	derived1h int      // prices given a one-hour cache write rate
	tiers     int      // prices with a prompt-size tier
	dated     int      // models with conditional prices
	ignored   []string // price keys of the source left out, with their model
	unpriced  []string // models without a token price
	absent    []string // providers of providerNames not in the source
}

type exactOf struct {
	exactKey
	model int
}

// Source data, as read.
type dataProvider struct {
	ID         string          `json:"id"`
	ModelMatch json.RawMessage `json:"model_match"`
	Fallback   []string        `json:"fallback_model_providers"`
	Models     []struct {
		ID     string          `json:"id"`
		Match  json.RawMessage `json:"match"`
		Prices json.RawMessage `json:"prices"`
	} `json:"models"`
}

// build reads the genai-prices data and makes the table.
func build(data []byte, m meta) (*table, error) {
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(m.Commit) {
		return nil, fmt.Errorf("commit %q is not a full git commit hash", m.Commit)
	}
	if _, err := time.Parse(time.DateOnly, m.Date); err != nil {
		return nil, fmt.Errorf("date %q is not YYYY-MM-DD", m.Date)
	}
	if !strings.HasPrefix(m.URL, "https://") || !strings.Contains(m.URL, m.Commit) {
		return nil, fmt.Errorf("url %q is not an https URL naming the commit", m.URL)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var src []dataProvider
	if err := dec.Decode(&src); err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	if len(src) > 64 {
		return nil, fmt.Errorf("%d providers: Lookup keeps a bit per provider in a uint64", len(src))
	}
	t := &table{meta: m, names: map[string]int{}, exact: map[exactKey]int{}}
	t.counts[0] = len(src)

	index := map[string]int{}
	for i, p := range src {
		if _, dup := index[p.ID]; dup {
			return nil, fmt.Errorf("provider %q twice", p.ID)
		}
		index[p.ID] = i
	}
	for _, pn := range providerNames {
		i, ok := index[pn.id]
		if !ok {
			t.absent = append(t.absent, pn.id)
			continue
		}
		t.preferred = append(t.preferred, i)
	}
	for i, p := range src {
		k := slices.IndexFunc(providerNames, func(pn struct {
			id    string
			names []string
		}) bool {
			return pn.id == p.ID
		})
		if k < 0 {
			return nil, fmt.Errorf("provider %q of the input has no name in genprices' providerNames", p.ID)
		}
		for _, name := range append([]string{strings.ToLower(p.ID)}, providerNames[k].names...) {
			if j, ok := t.names[name]; ok && j != i {
				return nil, fmt.Errorf("provider name %q for %s and %s", name, src[j].ID, p.ID)
			}
			t.names[name] = i
		}
		pr := provider{id: p.ID, name: providerNames[k].names[0]}
		if len(p.ModelMatch) > 0 {
			c, err := t.readClause(p.ModelMatch)
			if err != nil {
				return nil, fmt.Errorf("%s: model_match: %w", p.ID, err)
			}
			pr.maker = &c
		}
		for _, f := range p.Fallback {
			j, ok := index[f]
			if !ok {
				return nil, fmt.Errorf("%s: fallback provider %q not in the input", p.ID, f)
			}
			pr.fallback = append(pr.fallback, j)
		}
		pr.rules[0] = len(t.rules)
		for _, dm := range p.Models {
			t.counts[1]++
			where := p.ID + " " + dm.ID
			mi := len(t.models)
			md := model{provider: i, id: dm.ID}
			c, err := t.readClause(dm.Match)
			if err != nil {
				return nil, fmt.Errorf("%s: match: %w", where, err)
			}
			names, rest := split(c)
			for _, n := range names {
				k := exactKey{n, i}
				if _, ok := t.exact[k]; !ok { // the first model wins
					t.exact[k] = mi
				}
			}
			if rest != nil {
				t.rules = append(t.rules, rule{model: mi, match: *rest})
			}
			if err := t.readPrices(&md, dm.Prices, where); err != nil {
				return nil, err
			}
			t.models = append(t.models, md)
		}
		pr.rules[1] = len(t.rules)
		t.providers = append(t.providers, pr)
	}
	if len(t.models) > 1<<16 || len(t.rules) > 1<<16 {
		return nil, fmt.Errorf("%d models, %d rules: more than uint16 indexes hold", len(t.models), len(t.rules))
	}
	for k, m := range t.exact {
		t.exacts = append(t.exacts, exactOf{k, m})
	}
	slices.SortFunc(t.exacts, func(a, b exactOf) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return a.provider - b.provider
	})
	return t, nil
}

// split parts a model's matcher into the exact names it accepts and the
// rest: an "equals", or the "equals" directly under an "or", are exact
// names; the rest of the "or", or any other matcher, is a rule.
func split(c clause) (names []string, rest *clause) {
	switch c.op {
	case "equals":
		return []string{c.s}, nil
	case "or":
		var others []clause
		for _, s := range c.sub {
			if s.op == "equals" {
				names = append(names, s.s)
			} else {
				others = append(others, s)
			}
		}
		switch len(others) {
		case 0:
			return names, nil
		case 1:
			return names, &others[0]
		}
		return names, &clause{op: "or", sub: others}
	}
	return nil, &c
}

// readClause reads a matcher. The source matches strings without regard to
// case and regular expressions with it; Lookup matches a lower-case name,
// so strings are kept in lower case and expressions with an upper-case
// letter made case-insensitive.
func (t *table) readClause(raw json.RawMessage) (clause, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return clause{}, err
	}
	if len(m) != 1 {
		return clause{}, fmt.Errorf("a matcher with %d keys", len(m))
	}
	for op, v := range m {
		switch op {
		case "equals", "starts_with", "ends_with", "contains", "regex":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return clause{}, fmt.Errorf("%s: %w", op, err)
			}
			if op == "regex" {
				// An expression without an upper-case letter means the same
				// to a lower-case name with or without (?i), and without it
				// the regexp package can skip names by a literal prefix.
				if s != strings.ToLower(s) {
					s = "(?i)" + s
				}
				if _, err := regexp.Compile(s); err != nil {
					return clause{}, err
				}
				t.regexps = true
			} else {
				s = strings.ToLower(s)
			}
			if s == "" {
				return clause{}, fmt.Errorf("empty %s", op)
			}
			return clause{op: op, s: s}, nil
		case "or", "and":
			var subs []json.RawMessage
			if err := json.Unmarshal(v, &subs); err != nil {
				return clause{}, fmt.Errorf("%s: %w", op, err)
			}
			if len(subs) == 0 {
				return clause{}, fmt.Errorf("empty %s", op)
			}
			c := clause{op: op}
			for _, s := range subs {
				sc, err := t.readClause(s)
				if err != nil {
					return clause{}, err
				}
				c.sub = append(c.sub, sc)
			}
			return c, nil
		default:
			return clause{}, fmt.Errorf("unknown matcher %q", op)
		}
	}
	panic("unreachable")
}

// readPrices reads a model's prices: one set, or conditional sets.
func (t *table) readPrices(md *model, raw json.RawMessage, where string) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '[' {
		var conds []struct {
			Constraint map[string]string `json:"constraint"`
			Prices     json.RawMessage   `json:"prices"`
		}
		if err := json.Unmarshal(raw, &conds); err != nil {
			return fmt.Errorf("%s: prices: %w", where, err)
		}
		if len(conds) == 0 {
			return fmt.Errorf("%s: no prices", where)
		}
		t.dated++
		for i, c := range conds {
			p, priced, err := t.readPrice(c.Prices, md.id, where)
			if err != nil {
				return err
			}
			if i == 0 {
				md.price, md.priced = p, priced
				continue
			}
			if !priced {
				return fmt.Errorf("%s: a conditional price without token prices", where)
			}
			ch := change{price: p}
			if err := readConstraint(&ch, c.Constraint); err != nil {
				return fmt.Errorf("%s: constraint: %w", where, err)
			}
			md.changes = append(md.changes, ch)
		}
		return nil
	}
	p, priced, err := t.readPrice(raw, md.id, where)
	md.price, md.priced = p, priced
	return err
}

// readConstraint reads a start date or a daily interval, both in UTC.
func readConstraint(ch *change, c map[string]string) error {
	switch {
	case len(c) == 1 && c["start_date"] != "":
		d, err := time.Parse(time.DateOnly, c["start_date"])
		if err != nil {
			return err
		}
		ch.since = d.Unix()
		if ch.since <= 0 {
			return fmt.Errorf("start date %s", c["start_date"])
		}
	case len(c) == 2 && c["start_time"] != "" && c["end_time"] != "":
		var err error
		if ch.from, err = secondOfDay(c["start_time"]); err != nil {
			return err
		}
		if ch.to, err = secondOfDay(c["end_time"]); err != nil {
			return err
		}
		if ch.from == ch.to {
			return fmt.Errorf("an empty interval")
		}
	default:
		return fmt.Errorf("unknown constraint %v", c)
	}
	return nil
}

// secondOfDay reads a UTC time of day, HH:MM:SS with an optional Z.
func secondOfDay(s string) (int32, error) {
	c, err := time.Parse("15:04:05", strings.TrimSuffix(s, "Z"))
	if err != nil {
		return 0, err
	}
	h, m, sec := c.Clock()
	return int32(h*3600 + m*60 + sec), nil
}

// readPrice reads one set of prices. priced is false when it has no token
// price at all.
func (t *table) readPrice(raw json.RawMessage, id, where string) (p price, priced bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var f map[string]any
	if err := dec.Decode(&f); err != nil {
		return p, false, fmt.Errorf("%s: prices: %w", where, err)
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := f[k]
		name, ok := priceFields[k]
		if !ok {
			if ignoredFields[k] {
				t.ignored = append(t.ignored, where+": "+k)
				continue
			}
			return p, false, fmt.Errorf("%s: unknown price %q", where, k)
		}
		switch v := v.(type) {
		case json.Number:
			n, err := t.micros(v)
			if err != nil {
				return p, false, fmt.Errorf("%s: %s: %w", where, k, err)
			}
			*p.field(name, false) = n
		case map[string]any:
			base, ok := v["base"].(json.Number)
			tiers, ok2 := v["tiers"].([]any)
			if !ok || !ok2 || len(v) != 2 {
				return p, false, fmt.Errorf("%s: %s: not a tiered price", where, k)
			}
			if len(tiers) != 1 {
				return p, false, fmt.Errorf("%s: %s: %d tiers; Price holds one", where, k, len(tiers))
			}
			tier, _ := tiers[0].(map[string]any)
			start, ok := tier["start"].(json.Number)
			tp, ok2 := tier["price"].(json.Number)
			if !ok || !ok2 || len(tier) != 2 {
				return p, false, fmt.Errorf("%s: %s: not a tier", where, k)
			}
			at, err := strconv.ParseInt(string(start), 10, 64)
			if err != nil || at <= 0 {
				return p, false, fmt.Errorf("%s: %s: tier start %s", where, k, start)
			}
			if p.LongContext != 0 && p.LongContext != at {
				return p, false, fmt.Errorf("%s: tiers start at %d and %d; Price holds one", where, p.LongContext, at)
			}
			p.LongContext = at
			if *p.field(name, false), err = t.micros(base); err != nil {
				return p, false, fmt.Errorf("%s: %s: %w", where, k, err)
			}
			if *p.field(name, true), err = t.micros(tp); err != nil {
				return p, false, fmt.Errorf("%s: %s: %w", where, k, err)
			}
			if *p.field(name, true) == 0 {
				return p, false, fmt.Errorf("%s: %s: a tier price of zero", where, k)
			}
		default:
			return p, false, fmt.Errorf("%s: %s: not a price: %v", where, k, v)
		}
	}
	if p.LongContext != 0 {
		t.tiers++
	}
	priced = p.Input != 0 || p.Output != 0 || p.CachedInput != 0 || p.CacheWrite != 0
	if !priced {
		t.unpriced = append(t.unpriced, where)
	}
	t.derive1h(&p, id)
	return p, priced, nil
}

// derive1h gives a Claude model the one-hour cache write price that the
// source data lacks. Anthropic bills a one-hour cache write at twice the
// base input price, whatever the model (its five-minute write is 1.25 times
// it, but for Claude Haiku 3, 1.2 times), and so do the clouds and routers
// that resell Claude (Vertex AI, Bedrock, OpenRouter). So a model whose id
// names Claude and which has a cache write price gets twice its input
// price, at base and past its prompt-size tier alike. Elsewhere the one-hour
// price stays zero, and Cost charges a one-hour write at the five-minute
// rate.
func (t *table) derive1h(p *price, id string) {
	if !strings.Contains(strings.ToLower(id), "claude") || p.Input == 0 || p.CacheWrite == 0 {
		return
	}
	p.CacheWrite1h = 2 * p.Input
	p.LongCacheWrite1h = 2 * p.LongInput
	t.derived1h++
}

var microsPerDollar = new(big.Rat).SetInt64(1e6)

// micros converts a price in dollars per million tokens, a JSON number, to
// micro-dollars per million tokens. The decimal text is read exactly (never
// as a float64); a result with a fraction is rounded half up and counted.
func (t *table) micros(num json.Number) (int64, error) {
	r, ok := new(big.Rat).SetString(string(num))
	if !ok {
		return 0, fmt.Errorf("not a number: %s", num)
	}
	if r.Sign() < 0 {
		return 0, fmt.Errorf("negative price %s", num)
	}
	r.Mul(r, microsPerDollar)
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	if m.Sign() != 0 {
		t.rounded++
		if new(big.Int).Lsh(m, 1).Cmp(r.Denom()) >= 0 {
			q.Add(q, big.NewInt(1))
		}
	}
	if !q.IsInt64() {
		return 0, fmt.Errorf("price %s too large", num)
	}
	if q.Sign() == 0 && r.Sign() != 0 {
		return 0, fmt.Errorf("price %s rounds to zero", num)
	}
	return q.Int64(), nil
}

// render writes the Go file.
func render(t *table) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, `// Code generated by genprices; DO NOT EDIT.

// The prices below are derived from prices/data.json of pydantic's genai-prices
// (https://github.com/pydantic/genai-prices), commit %[1]s
// of %[2]s. Copyright (c) Pydantic Services Inc. 2025 to present, MIT License:
// see LICENSE-genai-prices.

package prices

`, t.Commit, t.Date)
	if t.regexps {
		b.WriteString("import \"regexp\"\n\n")
	}
	fmt.Fprintf(&b, `// SnapshotDate is the date, YYYY-MM-DD, of the genai-prices commit that the
// built-in prices come from. Prices change: a snapshot is only as current as
// this date.
const SnapshotDate = %[2]q

// SnapshotCommit is the genai-prices commit (github.com/pydantic/genai-prices)
// whose prices/data.json the built-in prices come from.
const SnapshotCommit = %[1]q

// Source is the address of the file that the built-in prices come from.
const Source = %[3]q

// providers are the %[4]d providers of the source, in its order, each with
// its index and its name for Lookup in a comment.
var providers = [...]provider{
`, t.Commit, t.Date, t.URL, len(t.providers))
	for i, p := range t.providers {
		fmt.Fprintf(&b, "{id: %q, rules: [2]uint16{%d, %d}", p.id, p.rules[0], p.rules[1])
		if p.maker != nil {
			fmt.Fprintf(&b, ", maker: %s", goClause(*p.maker))
		}
		if len(p.fallback) > 0 {
			fmt.Fprintf(&b, ", fallback: []uint8{%s}", ints(p.fallback))
		}
		fmt.Fprintf(&b, "}, // %d: %s\n", i, p.name)
	}
	b.WriteString("}\n\n// providerNames gives the index in providers of each name of a provider.\nvar providerNames = map[string]uint8{\n")
	names := make([]string, 0, len(t.names))
	for n := range t.names {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%q: %d,\n", n, t.names[n])
	}
	fmt.Fprintf(&b, "}\n\n// preference orders the providers for a model that the caller's provider\n// does not price: makers first, OpenRouter last.\nvar preference = [...]uint8{%s}\n\n", ints(t.preferred))

	fmt.Fprintf(&b, "// exact holds the %d exact names of the source's matchers, sorted by name,\n// then by provider, each with the first model of the provider that it names.\nvar exact = [...]exactName{\n", len(t.exacts))
	for _, e := range t.exacts {
		fmt.Fprintf(&b, "{%q, %d, %d},\n", e.name, e.provider, e.model)
	}
	fmt.Fprintf(&b, "}\n\n// rules holds the %d matchers, or parts of matchers, that are not exact\n// names: each provider's in the order of its models.\nvar rules = [...]rule{\n", len(t.rules))
	for _, r := range t.rules {
		fmt.Fprintf(&b, "{%d, %d, %s},\n", r.model, minLen(r.match), goClause(r.match))
	}
	fmt.Fprintf(&b, "}\n\n// models holds the %d models of the source, each with its id and its first\n// price, under a comment giving the index of its provider's first model.\nvar models = [...]model{\n", len(t.models))
	for i, m := range t.models {
		if i == 0 || t.models[i-1].provider != m.provider {
			fmt.Fprintf(&b, "// %d: %s\n", i, t.providers[m.provider].id)
		}
		fmt.Fprintf(&b, "{%q, Price{%s}, %v},\n", m.id, fields(m.price), m.priced)
	}
	b.WriteString("}\n\n// changes holds the conditional prices after a model's first, by model,\n// in the source's order.\nvar changes = [...]change{\n")
	for i, m := range t.models {
		for _, c := range m.changes {
			fmt.Fprintf(&b, "{%d, %d, %d, %d, Price{%s}}, // %s %s", i, c.since, c.from, c.to, fields(c.price), t.providers[m.provider].id, m.id)
			if c.since != 0 {
				fmt.Fprintf(&b, " from %s", time.Unix(c.since, 0).UTC().Format(time.DateOnly))
			}
			if c.from != c.to {
				fmt.Fprintf(&b, " from %s to %s UTC", clock(c.from), clock(c.to))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("formatting the output: %w", err)
	}
	return src, nil
}

func clock(sec int32) string {
	return fmt.Sprintf("%02d:%02d:%02d", sec/3600, sec/60%60, sec%60)
}

func ints(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// minLen is the length of the shortest name that c may accept: 0 for a
// regular expression.
func minLen(c clause) int {
	switch c.op {
	case "regex":
		return 0
	case "or":
		n := -1
		for _, s := range c.sub {
			if m := minLen(s); n < 0 || m < n {
				n = m
			}
		}
		return n
	case "and":
		n := 0
		for _, s := range c.sub {
			n = max(n, minLen(s))
		}
		return n
	}
	return len(c.s)
}

// goClause writes a matcher as a composite literal of prices' clause.
func goClause(c clause) string { return "clause" + clauseBody(c) }

// clauseBody writes a clause literal without its type, as an element of a
// []clause may be written.
func clauseBody(c clause) string {
	switch c.op {
	case "equals":
		return fmt.Sprintf("{op: opEquals, s: %q}", c.s)
	case "starts_with":
		return fmt.Sprintf("{op: opPrefix, s: %q}", c.s)
	case "ends_with":
		return fmt.Sprintf("{op: opSuffix, s: %q}", c.s)
	case "contains":
		return fmt.Sprintf("{op: opContains, s: %q}", c.s)
	case "regex":
		if n := need(c.s); n != "" {
			return fmt.Sprintf("{op: opRegex, s: %q, need: %q, re: regexp.MustCompile(%q)}", c.s, n, c.s)
		}
		return fmt.Sprintf("{op: opRegex, s: %q, re: regexp.MustCompile(%q)}", c.s, c.s)
	}
	subs := make([]string, len(c.sub))
	for i, s := range c.sub {
		subs[i] = clauseBody(s)
	}
	op := map[string]string{"or": "opOr", "and": "opAnd"}[c.op]
	return fmt.Sprintf("{op: %s, sub: []clause{%s}}", op, strings.Join(subs, ", "))
}

// need returns a text that every string the regular expression expr
// matches holds: the longest literal, matched with case, in the sequence
// expr is, or "" when it has none. Lookup looks for it before it runs the
// expression, which costs a hundred times more: an unanchored one runs from
// every position of a name that none of the snapshot's models accepts.
func need(expr string) string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return ""
	}
	re = re.Simplify()
	parts := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		parts = re.Sub
	}
	best := ""
	for _, p := range parts {
		if p.Op == syntax.OpLiteral && p.Flags&syntax.FoldCase == 0 && len(string(p.Rune)) > len(best) {
			best = string(p.Rune)
		}
	}
	return best
}

// fields writes the non-zero fields of p as a keyed composite literal.
func fields(p price) string {
	named := []struct {
		name string
		v    int64
	}{
		{"Input", p.Input}, {"CachedInput", p.CachedInput}, {"CacheWrite", p.CacheWrite},
		{"CacheWrite1h", p.CacheWrite1h}, {"Output", p.Output}, {"LongContext", p.LongContext},
		{"LongInput", p.LongInput}, {"LongCachedInput", p.LongCachedInput},
		{"LongCacheWrite", p.LongCacheWrite}, {"LongCacheWrite1h", p.LongCacheWrite1h},
		{"LongOutput", p.LongOutput},
	}
	var parts []string
	for _, f := range named {
		if f.v != 0 {
			parts = append(parts, f.name+": "+grouped(f.v))
		}
	}
	return strings.Join(parts, ", ")
}

// grouped writes n with an underscore between groups of three digits, as a
// reader of a price list expects: 2_500_000.
func grouped(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte('_')
		}
		b.WriteRune(c)
	}
	return b.String()
}
