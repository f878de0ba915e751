package classify

import (
	"net/http"
	"strings"
)

// Provider names an LLM provider. Its values are those of OpenTelemetry's
// gen_ai.provider.name attribute where the conventions define one, and a
// lower-case name otherwise; the same value appears in spans, metrics, Trip
// and Result. New providers may be added.
type Provider string

// The providers the Transport recognises from the request's host or from
// the answer itself.
const (
	ProviderOpenAI      Provider = "openai"
	ProviderAzure       Provider = "azure.ai.openai"
	ProviderAnthropic   Provider = "anthropic"
	ProviderGemini      Provider = "gcp.gemini"
	ProviderVertexAI    Provider = "gcp.vertex_ai"
	ProviderDeepSeek    Provider = "deepseek"
	ProviderGroq        Provider = "groq"
	ProviderMistral     Provider = "mistral_ai"
	ProviderXAI         Provider = "x_ai"
	ProviderPerplexity  Provider = "perplexity"
	ProviderCohere      Provider = "cohere"
	ProviderOpenRouter  Provider = "openrouter"
	ProviderTogether    Provider = "together"
	ProviderFireworks   Provider = "fireworks"
	ProviderMoonshot    Provider = "moonshot"
	ProviderZhipu       Provider = "zhipu"
	ProviderSiliconFlow Provider = "siliconflow"
)

// knownHosts are the API hosts of providers; suffix entries also match
// every subdomain (Azure's per-resource hosts, Vertex's regional ones).
var knownHosts = [...]struct {
	host     string
	suffix   bool
	provider Provider
}{
	{"api.openai.com", false, ProviderOpenAI},
	{"openai.azure.com", true, ProviderAzure},
	{"cognitiveservices.azure.com", true, ProviderAzure},
	{"services.ai.azure.com", true, ProviderAzure},
	{"api.anthropic.com", false, ProviderAnthropic},
	{"generativelanguage.googleapis.com", false, ProviderGemini},
	{"aiplatform.googleapis.com", true, ProviderVertexAI},
	{"api.deepseek.com", false, ProviderDeepSeek},
	{"openrouter.ai", false, ProviderOpenRouter},
	{"api.groq.com", false, ProviderGroq},
	{"api.mistral.ai", false, ProviderMistral},
	{"api.x.ai", false, ProviderXAI},
	{"api.together.xyz", false, ProviderTogether},
	{"api.together.ai", false, ProviderTogether},
	{"api.perplexity.ai", false, ProviderPerplexity},
	{"api.fireworks.ai", false, ProviderFireworks},
	{"api.moonshot.ai", false, ProviderMoonshot},
	{"api.moonshot.cn", false, ProviderMoonshot},
	{"open.bigmodel.cn", false, ProviderZhipu},
	{"api.z.ai", false, ProviderZhipu},
	{"api.siliconflow.cn", false, ProviderSiliconFlow},
	{"api.siliconflow.com", false, ProviderSiliconFlow},
	{"api.cohere.com", false, ProviderCohere},
	{"api.cohere.ai", false, ProviderCohere},
}

// HostProvider names the provider of a well-known API host (a host name
// without its port, in any case), "" for others: a relay, a self-hosted
// server.
func HostProvider(host string) Provider {
	host = strings.ToLower(host)
	for _, p := range knownHosts {
		if host == p.host || (p.suffix && strings.HasSuffix(host, "."+p.host)) {
			return p.provider
		}
	}
	return ""
}

// detectProvider names the provider from what the answer itself shows:
// the body's shape and the headers only some providers send. The Transport
// prefers the request's host when it knows it.
func detectProvider(h http.Header, f *errorFields) Provider {
	switch {
	case f.anthropic || h["Anthropic-Organization-Id"] != nil:
		return ProviderAnthropic
	case f.google:
		return ProviderGemini
	case h["Apim-Request-Id"] != nil || h["X-Ms-Region"] != nil || h["Azureml-Model-Session"] != nil:
		return ProviderAzure
	case h["Openai-Version"] != nil || h["Openai-Organization"] != nil || h["Openai-Processing-Ms"] != nil:
		return ProviderOpenAI
	case h["X-Groq-Region"] != nil:
		return ProviderGroq
	}
	return ""
}
