package prices

import (
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/quotabreaker/quotabreaker/internal/modelname"
)

//go:generate go run ../internal/cmd/genprices -in ../internal/cmd/genprices/data/genai-prices-data.json -out snapshot.go

// Func finds the price of a model, served by a provider at a service tier,
// and reports whether it knows one. Lookup, a Table's Lookup method and
// Chain's result are Funcs. A Func is called on every priced answer, from
// many goroutines at once: it must be safe for concurrent use and must not
// block.
type Func func(provider, model, tier string) (Price, bool)

// Lookup returns the snapshot's price, now, of model served by provider at
// the service tier tier, and false when the snapshot does not know the model.
// It is LookupAt at time.Now().
func Lookup(provider, model, tier string) (Price, bool) {
	return lookup(provider, model, time.Time{})
}

// LookupAt returns the snapshot's price of model served by provider at the
// service tier tier, as it stood at the instant at, and false when the
// snapshot does not know the model; the zero time means now. It is safe for
// concurrent use and does not allocate for a lower-case model name.
//
// model is the name an answer reports. It is matched as the source data's
// matchers say (an exact name, a prefix, a suffix, a substring, a regular
// expression, or any and all of these), without regard to case, with
// Gemini's "models/" prefix and surrounding spaces ignored. Within a
// provider, the first of its models (in the source's order) whose matcher
// accepts the name gives the price. A name that none of a provider's models
// accepts is tried again at that provider with Vertex AI's '@' before a date
// read as '-', and then without a date suffix, -YYYY-MM-DD or -YYYYMMDD:
// "gpt-4.1-mini-2099-01-01" is priced as "gpt-4.1-mini". OpenRouter's, Groq's and Together's names keep their
// organisation ("openai/gpt-oss-120b",
// "meta-llama/llama-4-scout-17b-16e-instruct"), Fireworks' their path
// ("accounts/fireworks/models/...").
//
// provider is the provider's OpenTelemetry gen_ai.provider.name, as
// quotabreaker's Provider constants spell it: "openai", "anthropic",
// "gcp.gemini", "gcp.vertex_ai", "deepseek", "x_ai", "mistral_ai", "cohere",
// "moonshot", "zhipu", "perplexity", "azure.ai.openai", "groq", "together",
// "fireworks", "openrouter"; the other providers of the source data have
// names of the same kind ("aws.bedrock", "cerebras", "minimax", ...: see
// Providers), and the source data's own ids are accepted too. A model is
// looked for at provider first, then at the providers the source data names
// as its fallbacks (Azure: OpenAI, then Anthropic; Google: Anthropic), then
// at the model's maker as the source data recognises it (a "claude" name at
// Anthropic, a "gpt-" name at OpenAI, ...), then at every provider in order
// of preference: makers before the clouds and hosts that resell their
// models, OpenRouter last. So a provider that is "", unknown, or without the
// model gets the maker's price. A model the source data lists without any
// token price (OpenRouter's ":free" models, for one) is unpriced: Lookup
// reports false rather than a price of zero, and does not look further.
//
// Some prices change with the date (a price cut from a given day on) or with
// the time of day (DeepSeek's off-peak hours, in UTC); at picks the one that
// applies.
//
// tier is the service tier the answer reports (OpenAI's service_tier). The
// source data has no prices per service tier: every tier ("flex",
// "priority", "default", ...) gets the standard price.
func LookupAt(provider, model, tier string, at time.Time) (Price, bool) {
	return lookup(provider, model, at)
}

// lookup is LookupAt, at time.Now() when at is zero.
func lookup(provider, model string, at time.Time) (Price, bool) {
	var q query
	q.names[0] = normalize(model)
	if q.names[0] == "" {
		return Price{}, false
	}
	name := q.names[0]
	if strings.IndexByte(name, '@') >= 0 {
		q.names[1] = strings.ReplaceAll(name, "@", "-")
		name = q.names[1]
	}
	q.names[2], _ = modelname.Undated(name)

	m := -1
	if p, ok := providerIndex(provider); ok {
		m = q.at(p)
		for _, f := range providers[p].fallback {
			if m >= 0 {
				break
			}
			m = q.at(int(f))
		}
	}
	if m < 0 {
		for p := range providers {
			if m >= 0 {
				break
			}
			if providers[p].maker.match(q.names[0]) {
				m = q.at(p)
			}
		}
	}
	for _, p := range preference {
		if m >= 0 {
			break
		}
		m = q.at(int(p))
	}
	if m < 0 || !models[m].priced {
		return Price{}, false
	}
	return priceOf(m, at), true
}

// query is one model name, normalised, and the spellings it is tried in:
// as it is, with '@' read as '-', and without a date suffix ("" when the
// same or none).
type query struct {
	names [3]string
	hits  [3][]hit // the hits of each name (see index), once looked up
	found uint8    // a bit per name whose hits are looked up
	tried uint64   // a bit per provider index
}

// at returns the index in models of the first model of provider p that
// accepts one of the names, or -1, as find does. It tries each provider
// once.
func (q *query) at(p int) int {
	if q.tried&(1<<p) != 0 {
		return -1
	}
	q.tried |= 1 << p
	x := snapshotIndex()
	for i, name := range q.names {
		if name == "" {
			continue
		}
		if q.found&(1<<i) == 0 {
			r := x.names[name]
			q.hits[i] = x.hits[r[0]:r[1]]
			q.found |= 1 << i
		}
		if m := x.find(p, name, q.hits[i]); m >= 0 {
			return m
		}
	}
	return -1
}

// index is what a lookup reads of the snapshot, worked out from its tables
// once, on the first lookup, so that a lookup is a map access per spelling
// and a short scan of a provider's rules instead of binary searches of
// exact and a scan of those rules for each provider tried.
type index struct {
	// names holds, for each exact name, its hits, hits[r[0]:r[1]]: for
	// each provider that has the name in exact, what find gives for it,
	// rules included.
	names map[string][2]uint16
	hits  []hit
	// firsts holds, for each rule, the bytes a name it accepts can start
	// with.
	firsts [len(rules)]byteSet
}

// hit is the first model of a provider that accepts an exact name.
type hit struct {
	provider uint8
	model    uint16
}

// snapshotIndex returns the index of the snapshot, built on its first call.
var snapshotIndex = sync.OnceValue(newIndex)

func newIndex() *index {
	x := &index{names: make(map[string][2]uint16, len(exact)), hits: make([]hit, 0, len(exact))}
	for i := 0; i < len(exact); {
		name := exact[i].name
		rows := exactRows(name)
		start := len(x.hits)
		for _, e := range rows { // by provider: one hit each
			if len(x.hits) == start || x.hits[len(x.hits)-1].provider != e.provider {
				x.hits = append(x.hits, hit{e.provider, uint16(findIn(int(e.provider), name, rows))})
			}
		}
		x.names[name] = [2]uint16{uint16(start), uint16(len(x.hits))}
		i += len(rows)
	}
	for i := range rules {
		x.firsts[i] = rules[i].match.firsts()
	}
	return x
}

// find is findIn with name's hits: the provider's hit if it has one, else
// the first of its rules that accepts name (not "").
func (x *index) find(p int, name string, hits []hit) int {
	for _, h := range hits {
		if int(h.provider) == p {
			return int(h.model)
		}
	}
	pr := &providers[p]
	for i := pr.rules[0]; i < pr.rules[1]; i++ {
		r := &rules[i]
		if x.firsts[i].has(name[0]) && len(name) >= int(r.min) && r.match.match(name) {
			return int(r.model)
		}
	}
	return -1
}

// byteSet is a set of bytes.
type byteSet [4]uint64

func (s *byteSet) has(c byte) bool { return s[c>>6]&(1<<(c&63)) != 0 }

// firsts returns the bytes a name c accepts can start with: every byte
// unless c names its start.
func (c *clause) firsts() byteSet {
	var s byteSet
	switch c.op {
	case opNone:
	case opEquals, opPrefix:
		if c.s == "" {
			return byteSet{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
		}
		s[c.s[0]>>6] |= 1 << (c.s[0] & 63)
	case opOr:
		for i := range c.sub {
			t := c.sub[i].firsts()
			for j := range s {
				s[j] |= t[j]
			}
		}
	case opAnd:
		if len(c.sub) > 0 {
			s = byteSet{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
		}
		for i := range c.sub {
			t := c.sub[i].firsts()
			for j := range s {
				s[j] &= t[j]
			}
		}
	default: // a suffix, a substring, a regular expression
		return byteSet{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
	}
	return s
}

// exactRows returns the rows of exact for name, of every provider.
func exactRows(name string) []exactName {
	i := sort.Search(len(exact), func(i int) bool { return exact[i].name >= name })
	j := i
	for j < len(exact) && exact[j].name == name {
		j++
	}
	return exact[i:j]
}

// find returns the index in models of the first model of provider p whose
// matcher accepts name, or -1.
func find(p int, name string) int { return findIn(p, name, exactRows(name)) }

// findIn is find with the rows of exact for name, of every provider. The
// generator splits each matcher into the exact names it accepts, kept in the
// sorted table exact, and rules for the rest, kept in model order; so the
// first model is the one of least index among the exact hit and the rules.
func findIn(p int, name string, rows []exactName) int {
	best := -1
	for _, e := range rows {
		if int(e.provider) == p {
			best = int(e.model)
			break
		}
	}
	pr := &providers[p]
	for _, r := range rules[pr.rules[0]:pr.rules[1]] {
		if best >= 0 && int(r.model) > best {
			break
		}
		if len(name) >= int(r.min) && r.match.match(name) {
			return int(r.model)
		}
	}
	return best
}

// priceOf returns the price of models[m] at the instant at, or now when at
// is zero. As in the source data, a model's conditional prices are tried
// last to first, and the first that applies wins; when none applies, the
// model's first price does.
func priceOf(m int, at time.Time) Price {
	i := sort.Search(len(changes), func(i int) bool { return int(changes[i].model) >= m })
	j := i
	for j < len(changes) && int(changes[j].model) == m {
		j++
	}
	if i == j {
		return models[m].price
	}
	if at.IsZero() {
		at = time.Now()
	}
	at = at.UTC()
	for k := j - 1; k >= i; k-- {
		if changes[k].applies(at) {
			return changes[k].price
		}
	}
	return models[m].price
}

// applies reports whether c's constraint holds at at, a UTC time.
func (c *change) applies(at time.Time) bool {
	if c.since != 0 && at.Unix() < c.since {
		return false
	}
	if c.from != c.to {
		h, m, s := at.Clock()
		sec := int32(h*3600 + m*60 + s)
		if c.from < c.to {
			return c.from <= sec && sec < c.to
		}
		return c.from <= sec || sec < c.to // the window wraps past midnight
	}
	return true
}

// providerIndex finds a provider's index in providers by its name.
func providerIndex(name string) (int, bool) {
	p, ok := providerNames[name]
	if !ok {
		p, ok = providerNames[strings.ToLower(strings.TrimSpace(name))]
	}
	return int(p), ok
}

// Providers returns the provider names that Lookup knows, sorted: the
// OpenTelemetry gen_ai.provider.name of each provider of the source data
// (or, for a provider the conventions do not name, a name of the same
// kind), and the source data's own ids.
func Providers() []string {
	names := make([]string, 0, len(providerNames))
	for n := range providerNames {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// normalize turns an answer's model name into the snapshot's spelling.
func normalize(model string) string {
	m := strings.ToLower(strings.TrimSpace(model))
	return strings.TrimPrefix(m, "models/")
}

// provider is one provider of the source data.
type provider struct {
	id       string    // the source data's id
	maker    clause    // the source's model_match: the names of models it makes
	rules    [2]uint16 // its rules are rules[rules[0]:rules[1]]
	fallback []uint8   // indexes in providers of its fallback_model_providers
}

// exactName says that the first model of provider that accepts name exactly
// is models[model].
type exactName struct {
	name     string
	provider uint8
	model    uint16
}

// rule is the part of a model's matcher that is not an exact name.
type rule struct {
	model uint16
	min   uint16 // no name shorter than this matches
	match clause
}

// model is one model of the source data, with its first (or only) price.
type model struct {
	id     string // the source's id, for tests and debugging
	price  Price
	priced bool // false when the source gives the model no token price
}

// change is one of a model's conditional prices, after its first.
type change struct {
	model    uint16
	since    int64 // Unix time from which it applies (a UTC midnight); 0: always
	from, to int32 // seconds of the UTC day during which it applies; equal: all day
	price    Price
}

// clause is a matcher of the source data, over a lower-case name.
type clause struct {
	op op
	s  string
	// need, of a regular expression, is a text every name it accepts
	// holds (see genprices' need), looked for first: most names hold
	// none, and running re costs far more.
	need string
	re   *regexp.Regexp
	sub  []clause
}

type op uint8

const (
	opNone op = iota // matches nothing
	opEquals
	opPrefix
	opSuffix
	opContains
	opRegex
	opOr
	opAnd
)

// match reports whether c accepts name, a lower-case model name.
func (c *clause) match(name string) bool {
	switch c.op {
	case opEquals:
		return name == c.s
	case opPrefix:
		return strings.HasPrefix(name, c.s)
	case opSuffix:
		return strings.HasSuffix(name, c.s)
	case opContains:
		return strings.Contains(name, c.s)
	case opRegex:
		return strings.Contains(name, c.need) && c.re.MatchString(name)
	case opOr:
		for i := range c.sub {
			if c.sub[i].match(name) {
				return true
			}
		}
		return false
	case opAnd:
		for i := range c.sub {
			if !c.sub[i].match(name) {
				return false
			}
		}
		return len(c.sub) > 0
	}
	return false
}

// Table holds prices of one's own, keyed by model name. Its Lookup gives a
// key's price to every provider and tier; write a Func to price them apart.
// Keys should be lower case: Lookup tries the model name as the answer spells
// it, then in lower case, then without a date suffix, as Lookup does.
//
// Use Table{...}.Lookup alone to replace the snapshot, or
// Chain(Table{...}.Lookup, Lookup) to take precedence over it. A Table must
// not be written while it is in use.
type Table map[string]Price

// Lookup returns the price t holds for model, whatever the provider and tier.
func (t Table) Lookup(provider, model, tier string) (Price, bool) {
	if p, ok := t[model]; ok {
		return p, true
	}
	m := strings.ReplaceAll(normalize(model), "@", "-")
	if p, ok := t[m]; ok {
		return p, true
	}
	if u, ok := modelname.Undated(m); ok {
		p, ok := t[u]
		return p, ok
	}
	return Price{}, false
}

// Chain returns a Func that asks each of fs in turn, skipping nil ones, and
// returns the first price found. Chain(mine.Lookup, Lookup) prices with the
// Table mine first and with the snapshot for the models mine lacks.
func Chain(fs ...Func) Func {
	fs = slices.DeleteFunc(slices.Clone(fs), func(f Func) bool { return f == nil })
	return func(provider, model, tier string) (Price, bool) {
		for _, f := range fs {
			if p, ok := f(provider, model, tier); ok {
				return p, true
			}
		}
		return Price{}, false
	}
}
