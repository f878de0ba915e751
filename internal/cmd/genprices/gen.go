package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/quotabreaker/quotabreaker/internal/modelname"
	"go/format"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// meta says which LiteLLM commit the input comes from.
type meta struct {
	Commit string `json:"commit"`
	Date   string `json:"date"`
}

// metaKey holds the meta of a subset file. LiteLLM's own keys are model
// names, and its one entry that is not (sample_spec) has a
// litellm_provider of no source, so the two never meet.
const metaKey = "_snapshot"

// source is one LiteLLM provider that the snapshot keeps.
type source struct {
	litellm  string // LiteLLM's litellm_provider value
	provider string // the provider's gen_ai.provider.name, as quotabreaker names it
	prefix   string // the prefix of LiteLLM's keys for this provider, not part of the model name
	bare     bool   // a key without the prefix is a model name too
	slash    bool   // model names may contain '/' (an organisation or account path)
}

// sources are the LiteLLM providers kept, in order of preference: when keys
// of two sources give the same model of the same provider, the earlier
// source's entry wins. Keys holding a '/' where model names have none are
// LiteLLM's regional or per-size variants ("azure/eu/...", "us/claude-...",
// "1024-x-1024/dall-e-2") and are left out: an answer does not name them.
var sources = []source{
	{litellm: "openai", provider: "openai", bare: true},
	{litellm: "text-completion-openai", provider: "openai", bare: true},
	{litellm: "anthropic", provider: "anthropic", bare: true},
	{litellm: "gemini", provider: "gcp.gemini", prefix: "gemini/", bare: true},
	{litellm: "vertex_ai-language-models", provider: "gcp.vertex_ai", prefix: "vertex_ai/", bare: true},
	{litellm: "vertex_ai", provider: "gcp.vertex_ai", prefix: "vertex_ai/"},
	{litellm: "vertex_ai-anthropic_models", provider: "gcp.vertex_ai", prefix: "vertex_ai/"},
	{litellm: "deepseek", provider: "deepseek", prefix: "deepseek/", bare: true},
	{litellm: "xai", provider: "x_ai", prefix: "xai/"},
	{litellm: "mistral", provider: "mistral_ai", prefix: "mistral/"},
	{litellm: "cohere_chat", provider: "cohere", prefix: "cohere/", bare: true},
	{litellm: "cohere", provider: "cohere", prefix: "cohere/", bare: true},
	{litellm: "moonshot", provider: "moonshot", prefix: "moonshot/"},
	{litellm: "zai", provider: "zhipu", prefix: "zai/"},
	{litellm: "perplexity", provider: "perplexity", prefix: "perplexity/"},
	{litellm: "azure", provider: "azure.ai.openai", prefix: "azure/"},
	{litellm: "azure_ai", provider: "azure.ai.openai", prefix: "azure_ai/"},
	{litellm: "groq", provider: "groq", prefix: "groq/", slash: true},
	{litellm: "together_ai", provider: "together", prefix: "together_ai/", slash: true},
	{litellm: "fireworks_ai", provider: "fireworks", prefix: "fireworks_ai/", slash: true},
	{litellm: "openrouter", provider: "openrouter", prefix: "openrouter/", slash: true},
}

// providerOrder ranks the providers that price the same model name: a lookup
// that names no provider, or one without a row for the model, gets the first.
// Makers come first, then clouds, then hosts of open models, then routers.
var providerOrder = []string{
	"openai", "anthropic", "gcp.gemini", "gcp.vertex_ai", "deepseek", "x_ai",
	"mistral_ai", "cohere", "moonshot", "zhipu", "perplexity",
	"azure.ai.openai", "groq", "together", "fireworks", "openrouter",
}

// keptModes are the kinds of model billed by tokens that an answer reports.
var keptModes = map[string]bool{"chat": true, "completion": true, "responses": true, "embedding": true}

// tiers are the service tiers whose prices LiteLLM gives in fields of their
// own (input_cost_per_token_flex, ...) and that an answer reports in its
// service_tier. LiteLLM's _batches prices are left out: the Batch API's
// results do not come back through an HTTP client's transport.
var tiers = []string{"flex", "priority"}

// longField matches LiteLLM's long-context prices, which apply to the whole
// request once its input exceeds N thousand tokens.
var longField = regexp.MustCompile(`^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost|cache_creation_input_token_cost|cache_creation_input_token_cost_above_1hr)_above_([0-9]+)k_tokens$`)

// price mirrors prices.Price field for field: all in micro-dollars per
// million tokens, but for LongContext, a number of tokens.
type price struct {
	Input, CachedInput, CacheWrite, CacheWrite1h, Output                     int64
	LongContext                                                              int64
	LongInput, LongCachedInput, LongCacheWrite, LongCacheWrite1h, LongOutput int64
}

// row is one line of the generated table.
type row struct {
	model, provider, tier string
	p                     price
}

// entry is one LiteLLM key that gives rows.
type entry struct {
	key     string
	fields  map[string]any
	src     int  // index in sources
	bare    bool // the key lacks its source's prefix
	rows    []row
	rounded int
}

// table is the generator's result.
type table struct {
	meta
	rows     []row
	entries  []*entry // those that gave rows, for the subset
	borrowed int
	rounded  int
	skipped  skips
}

func (t *table) models() int {
	n := 0
	for i, r := range t.rows {
		if i == 0 || r.model != t.rows[i-1].model {
			n++
		}
	}
	return n
}

// skips lists the LiteLLM keys of kept providers left out, by reason.
type skips map[string][]string

func (s skips) total() int {
	n := 0
	for _, keys := range s {
		n += len(keys)
	}
	return n
}

func (s skips) reasons() []string {
	r := make([]string, 0, len(s))
	for k := range s {
		r = append(r, k)
	}
	slices.Sort(r)
	return r
}

func (s skips) String() string {
	var b strings.Builder
	for i, r := range s.reasons() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", r, len(s[r]))
	}
	return b.String()
}

// build reads LiteLLM's table (or a subset of it) and makes the rows.
// flags, where set, name the input's commit and date; a subset input
// carries them itself.
func build(data []byte, flags meta) (*table, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	t := &table{meta: flags, skipped: skips{}}
	if raw, ok := top[metaKey]; ok {
		var m meta
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", metaKey, err)
		}
		if t.Commit == "" {
			t.Commit = m.Commit
		}
		if t.Date == "" {
			t.Date = m.Date
		}
	}
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(t.Commit) {
		return nil, fmt.Errorf("commit %q is not a full git commit hash (set -commit)", t.Commit)
	}
	if _, err := time.Parse(time.DateOnly, t.Date); err != nil {
		return nil, fmt.Errorf("date %q is not YYYY-MM-DD (set -date)", t.Date)
	}

	keys := make([]string, 0, len(top))
	for k := range top {
		if k != metaKey {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)

	// The entry that wins each model of each provider.
	type id struct{ provider, model string }
	winners := map[id]*entry{}
	for _, key := range keys {
		e, reason, err := readEntry(key, top[key])
		if err != nil {
			return nil, err
		}
		if e == nil {
			if reason != "" {
				t.skipped[reason] = append(t.skipped[reason], key)
			}
			continue
		}
		k := id{sources[e.src].provider, e.rows[0].model}
		w, ok := winners[k]
		if ok && !better(e, w) {
			e, w = w, e
		}
		if ok {
			// w loses. Equal prices make it a plain duplicate.
			reason := "duplicate"
			if !slices.Equal(e.rows, w.rows) {
				reason = "duplicate with other prices"
			}
			t.skipped[reason] = append(t.skipped[reason], w.key)
		}
		winners[k] = e
	}

	for _, e := range winners {
		t.entries = append(t.entries, e)
		t.rows = append(t.rows, e.rows...)
		t.rounded += e.rounded
	}
	slices.SortFunc(t.entries, func(a, b *entry) int { return strings.Compare(a.key, b.key) })
	t.borrowTiers()
	rank := map[string]int{}
	for i, p := range providerOrder {
		rank[p] = i
	}
	slices.SortFunc(t.rows, func(a, b row) int {
		if c := strings.Compare(a.model, b.model); c != 0 {
			return c
		}
		if c := rank[a.provider] - rank[b.provider]; c != 0 {
			return c
		}
		return strings.Compare(a.tier, b.tier)
	})
	for i := 1; i < len(t.rows); i++ {
		a, b := t.rows[i-1], t.rows[i]
		if a.model == b.model && a.provider == b.provider && a.tier == b.tier {
			return nil, fmt.Errorf("two rows for %s %s %q", a.provider, a.model, a.tier)
		}
	}
	return t, nil
}

// better reports whether e should win over w, both giving the same model of
// the same provider: the earlier source, then a prefixed key over a bare one,
// then the smaller key, so that the choice never depends on map order.
func better(e, w *entry) bool {
	if e.src != w.src {
		return e.src < w.src
	}
	if e.bare != w.bare {
		return !e.bare
	}
	return e.key < w.key
}

// readEntry turns one LiteLLM entry into rows. It returns a nil entry with
// the reason (empty when the provider is not kept at all) to skip it.
func readEntry(key string, raw json.RawMessage) (*entry, string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var f map[string]any
	if err := dec.Decode(&f); err != nil {
		return nil, "", fmt.Errorf("%q: %w", key, err)
	}
	prov, _ := f["litellm_provider"].(string)
	src := slices.IndexFunc(sources, func(s source) bool { return s.litellm == prov })
	if src < 0 {
		return nil, "", nil
	}
	if mode, _ := f["mode"].(string); !keptModes[mode] {
		return nil, "not billed by tokens", nil
	}
	s := sources[src]
	model, bare, ok := modelName(s, key)
	if !ok {
		return nil, "not a model name", nil
	}
	e := &entry{key: key, fields: f, src: src, bare: bare}
	get := func(name string) (int64, bool, error) {
		v, ok := f[name]
		if !ok {
			return 0, false, nil
		}
		n, exact, err := micros(v)
		if err != nil {
			return 0, false, fmt.Errorf("%q: %s: %w", key, name, err)
		}
		if !exact {
			e.rounded++
		}
		return n, true, nil
	}
	var err error
	// set stores a price that may be missing, keeping the first error.
	set := func(dst *int64, name string) bool {
		n, ok, err2 := get(name)
		if err == nil {
			err = err2
		}
		if ok {
			*dst = n
		}
		return ok
	}

	var p price
	if !set(&p.Input, "input_cost_per_token") {
		return nil, "no token price", err
	}
	if !set(&p.Output, "output_cost_per_token") && f["mode"] != "embedding" {
		return nil, "no token price", err
	}
	if !set(&p.CachedInput, "cache_read_input_token_cost") {
		set(&p.CachedInput, "input_cost_per_token_cache_hit") // DeepSeek's name for it
	}
	set(&p.CacheWrite, "cache_creation_input_token_cost")
	set(&p.CacheWrite1h, "cache_creation_input_token_cost_above_1hr")
	if err != nil {
		return nil, "", err
	}
	if p.Input == 0 && p.Output == 0 {
		// LiteLLM writes zero for "free" and for "not known" alike; a model
		// priced at zero would hide spend, so it stays unpriced.
		return nil, "zero prices", nil
	}

	var above []int64
	for name := range f {
		if m := longField.FindStringSubmatch(name); m != nil {
			n, err := strconv.ParseInt(m[2], 10, 64)
			if err != nil || n <= 0 {
				return nil, "", fmt.Errorf("%q: %s: bad threshold", key, name)
			}
			if !slices.Contains(above, n) {
				above = append(above, n)
			}
		}
	}
	switch len(above) {
	case 0:
	case 1:
		n := above[0]
		p.LongContext = n * 1000
		set(&p.LongInput, fmt.Sprintf("input_cost_per_token_above_%dk_tokens", n))
		set(&p.LongOutput, fmt.Sprintf("output_cost_per_token_above_%dk_tokens", n))
		set(&p.LongCachedInput, fmt.Sprintf("cache_read_input_token_cost_above_%dk_tokens", n))
		set(&p.LongCacheWrite, fmt.Sprintf("cache_creation_input_token_cost_above_%dk_tokens", n))
		set(&p.LongCacheWrite1h, fmt.Sprintf("cache_creation_input_token_cost_above_1hr_above_%dk_tokens", n))
		if p.LongInput == 0 && p.LongCachedInput == 0 && p.LongCacheWrite == 0 && p.LongCacheWrite1h == 0 && p.LongOutput == 0 {
			p.LongContext = 0 // LiteLLM's zeros here mean "no other price"
		}
	default:
		slices.Sort(above)
		return nil, "", fmt.Errorf("%q: long-context prices at several thresholds %v (thousand tokens)", key, above)
	}
	e.rows = append(e.rows, row{model: model, provider: s.provider, p: p})

	// A tier's missing field keeps the standard price, as LiteLLM does.
	for _, tier := range tiers {
		tp := p
		a := set(&tp.Input, "input_cost_per_token_"+tier)
		b := set(&tp.Output, "output_cost_per_token_"+tier)
		c := set(&tp.CachedInput, "cache_read_input_token_cost_"+tier)
		if a || b || c {
			e.rows = append(e.rows, row{model: model, provider: s.provider, tier: tier, p: tp})
		}
	}
	if err != nil {
		return nil, "", err
	}
	return e, "", nil
}

// modelName gives the model name that an answer reports for a LiteLLM key:
// lower case, without the provider's prefix, with Vertex AI's '@' before a
// date turned into the '-' that the providers' own APIs use.
func modelName(s source, key string) (model string, bare, ok bool) {
	rest := key
	if s.prefix != "" {
		var had bool
		rest, had = strings.CutPrefix(key, s.prefix)
		if !had && !s.bare {
			return "", false, false
		}
		bare = !had
	}
	if rest == "" || strings.HasSuffix(rest, "/") || (!s.slash && strings.Contains(rest, "/")) {
		return "", false, false
	}
	return strings.ReplaceAll(strings.ToLower(rest), "@", "-"), bare, true
}

// borrowTiers gives a dated snapshot ("gpt-4o-2024-08-06") the tier prices of
// its undated alias ("gpt-4o") when LiteLLM lists them only for the alias and
// both have the same standard price. Answers name the dated snapshot, so
// without this a flex or priority answer would be priced at the standard rate.
func (t *table) borrowTiers() {
	type id struct{ model, provider, tier string }
	have := map[id]price{}
	for _, r := range t.rows {
		have[id{r.model, r.provider, r.tier}] = r.p
	}
	n := len(t.rows)
	for _, r := range t.rows[:n] {
		if r.tier != "" {
			continue
		}
		alias, ok := modelname.Undated(r.model)
		if !ok {
			continue
		}
		if std, ok := have[id{alias, r.provider, ""}]; !ok || std != r.p {
			continue
		}
		for _, tier := range tiers {
			if _, ok := have[id{r.model, r.provider, tier}]; ok {
				continue
			}
			if tp, ok := have[id{alias, r.provider, tier}]; ok {
				t.rows = append(t.rows, row{model: r.model, provider: r.provider, tier: tier, p: tp})
				t.borrowed++
			}
		}
	}
}

var picoPerDollar = new(big.Rat).SetInt64(1e12)

// micros converts a price in dollars per token, a JSON number, to
// micro-dollars per million tokens. The decimal text is read exactly; exact
// is false when the result had a fraction and was rounded half up.
func micros(v any) (n int64, exact bool, err error) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, false, fmt.Errorf("not a number: %v", v)
	}
	r, ok := new(big.Rat).SetString(string(num))
	if !ok {
		return 0, false, fmt.Errorf("not a number: %s", num)
	}
	if r.Sign() < 0 {
		return 0, false, fmt.Errorf("negative price %s", num)
	}
	r.Mul(r, picoPerDollar)
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	exact = m.Sign() == 0
	if !exact && new(big.Int).Lsh(m, 1).Cmp(r.Denom()) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, false, fmt.Errorf("price %s too large", num)
	}
	if q.Sign() == 0 && r.Sign() != 0 {
		return 0, false, fmt.Errorf("price %s rounds to zero", num)
	}
	return q.Int64(), exact, nil
}

// render writes the Go file.
func render(t *table) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, `// Code generated by genprices; DO NOT EDIT.

// The prices below are derived from model_prices_and_context_window.json of
// LiteLLM (https://github.com/BerriAI/litellm), commit %[1]s
// of %[2]s. Copyright (c) 2023 Berri AI, MIT License: see LICENSE-litellm.

package prices

// SnapshotDate is the date, YYYY-MM-DD, of the LiteLLM commit that the
// built-in prices come from. Prices change: a snapshot is only as current as
// this date.
const SnapshotDate = %[2]q

// SnapshotCommit is the LiteLLM commit (github.com/BerriAI/litellm) whose
// model_prices_and_context_window.json the built-in prices come from.
const SnapshotCommit = %[1]q

// snapshot holds %[3]d rows for %[4]d models, sorted by model name, then by
// provider in order of preference, then by tier. It is never written.
var snapshot = [...]row{
`, t.Commit, t.Date, len(t.rows), t.models())
	for _, r := range t.rows {
		fmt.Fprintf(&b, "{%q, %q, %q, Price{%s}},\n", r.model, r.provider, r.tier, fields(r.p))
	}
	b.WriteString("}\n")
	return format.Source(b.Bytes())
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

// consumed reports whether genprices reads the LiteLLM field name.
func consumed(name string) bool {
	switch name {
	case "litellm_provider", "mode",
		"input_cost_per_token", "output_cost_per_token",
		"cache_read_input_token_cost", "input_cost_per_token_cache_hit",
		"cache_creation_input_token_cost", "cache_creation_input_token_cost_above_1hr":
		return true
	}
	for _, tier := range tiers {
		switch name {
		case "input_cost_per_token_" + tier, "output_cost_per_token_" + tier, "cache_read_input_token_cost_" + tier:
			return true
		}
	}
	return longField.MatchString(name)
}

// subset writes the entries that gave rows, with the fields read, in
// LiteLLM's format and one entry a line, headed by the meta.
func subset(t *table) ([]byte, error) {
	var b bytes.Buffer
	m, err := json.Marshal(t.meta)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&b, "{\n%q: %s", metaKey, m)
	for _, e := range t.entries {
		kept := map[string]any{}
		for name, v := range e.fields {
			if consumed(name) {
				kept[name] = v
			}
		}
		k, err := json.Marshal(e.key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(kept)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, ",\n%s: %s", k, v)
	}
	b.WriteString("\n}\n")
	return b.Bytes(), nil
}
