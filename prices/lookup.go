package prices

import (
	"github.com/quotabreaker/quotabreaker/internal/modelname"
	"slices"
	"sort"
	"strings"
)

//go:generate go run ../internal/cmd/genprices -in ../internal/cmd/genprices/testdata/litellm-subset.json -out snapshot.go

// Func finds the price of a model, served by a provider at a service tier,
// and reports whether it knows one. Lookup, a Table's Lookup method and
// Chain's result are Funcs. A Func is called on every priced answer, from
// many goroutines at once: it must be safe for concurrent use and must not
// block.
type Func func(provider, model, tier string) (Price, bool)

// row is one line of the snapshot: the price of a model served by a
// provider at a service tier ("" for the standard tier).
type row struct {
	model, provider, tier string
	price                 Price
}

// Lookup returns the snapshot's price of model served by provider at the
// service tier tier, and false when the snapshot does not know the model.
// It is safe for concurrent use and does not allocate for a lower-case
// model name.
//
// model is the name an answer reports, matched without regard to case. A
// name the snapshot lacks is looked up again without a date suffix,
// -YYYY-MM-DD or -YYYYMMDD: "gpt-4.1-mini-2099-01-01" is priced as
// "gpt-4.1-mini". An OpenAI fine-tune ("ft:gpt-4o-mini-2024-07-18:org::id")
// has the price of fine-tunes of its base model. Vertex AI's '@' before a
// date reads as '-', and Gemini's "models/" prefix is ignored. OpenRouter's, Groq's and Together's names keep
// their organisation ("openai/gpt-4o", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
// Fireworks' their path ("accounts/fireworks/models/...").
//
// provider is the provider's OpenTelemetry gen_ai.provider.name, as
// quotabreaker's Provider constants spell it: "openai", "anthropic",
// "gcp.gemini", "gcp.vertex_ai", "deepseek", "x_ai", "mistral_ai", "cohere",
// "moonshot", "zhipu", "perplexity", "azure.ai.openai", "groq", "together",
// "fireworks", "openrouter". When provider is "", unknown, or has no price for
// the model, Lookup takes the first provider in that list that has one: the
// model's maker before the clouds and hosts that resell it.
//
// tier is the service tier the answer reports (OpenAI's service_tier).
// "flex" and "priority" have prices of their own for the models that offer
// them; any other tier ("", "default", "auto", "standard"), or a tier the
// snapshot has no price for, gets the standard price.
func Lookup(provider, model, tier string) (Price, bool) {
	m := normalize(model)
	if m == "" {
		return Price{}, false
	}
	tier = strings.ToLower(tier)
	if p, ok := find(provider, m, tier); ok {
		return p, true
	}
	if base, ok := fineTuneBase(m); ok {
		return find(provider, base, tier)
	}
	if u, ok := modelname.Undated(m); ok {
		return find(provider, u, tier)
	}
	return Price{}, false
}

// find looks model, already normalised, up in the snapshot.
func find(provider, model, tier string) (Price, bool) {
	rows := snapshot[:]
	i := sort.Search(len(rows), func(i int) bool { return rows[i].model >= model })
	j := i
	for j < len(rows) && rows[j].model == model {
		j++
	}
	rows = rows[i:j]
	if len(rows) == 0 {
		return Price{}, false
	}
	// The rows of a model are grouped by provider, preferred provider first,
	// and each group starts with its standard tier.
	k := slices.IndexFunc(rows, func(r row) bool { return r.provider == provider })
	if k < 0 {
		k = 0
	}
	group := rows[k].provider
	if tier != "" {
		for _, r := range rows[k+1:] {
			if r.provider != group {
				break
			}
			if r.tier == tier {
				return r.price, true
			}
		}
	}
	return rows[k].price, true
}

// normalize turns an answer's model name into the snapshot's spelling.
func normalize(model string) string {
	m := strings.ToLower(strings.TrimSpace(model))
	m = strings.TrimPrefix(m, "models/")
	return strings.ReplaceAll(m, "@", "-")
}

// fineTuneBase turns the name of an OpenAI fine-tuned model,
// ft:<base>:<organisation>:<suffix>:<id>, into ft:<base>, under which
// LiteLLM prices the fine-tunes of base.
func fineTuneBase(model string) (string, bool) {
	rest, ok := strings.CutPrefix(model, "ft:")
	if !ok {
		return "", false
	}
	base, _, ok := strings.Cut(rest, ":")
	if !ok || base == "" {
		return "", false
	}
	return model[:len("ft:")+len(base)], true
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
	m := normalize(model)
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
