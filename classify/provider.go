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

// HostProvider names the provider of a well-known API host (a host name
// without its port, in any case), "" for others: a relay, a self-hosted
// server. It runs on every answer, so the hosts are a switch, which the
// compiler turns into a search, rather than a loop over a table.
func HostProvider(host string) Provider {
	host = strings.ToLower(host)
	switch host {
	case "api.openai.com":
		return ProviderOpenAI
	case "api.anthropic.com":
		return ProviderAnthropic
	case "generativelanguage.googleapis.com":
		return ProviderGemini
	case "api.deepseek.com":
		return ProviderDeepSeek
	case "openrouter.ai":
		return ProviderOpenRouter
	case "api.groq.com":
		return ProviderGroq
	case "api.mistral.ai":
		return ProviderMistral
	case "api.x.ai":
		return ProviderXAI
	case "api.together.xyz", "api.together.ai":
		return ProviderTogether
	case "api.perplexity.ai":
		return ProviderPerplexity
	case "api.fireworks.ai":
		return ProviderFireworks
	case "api.moonshot.ai", "api.moonshot.cn":
		return ProviderMoonshot
	case "open.bigmodel.cn", "api.z.ai":
		return ProviderZhipu
	case "api.siliconflow.cn", "api.siliconflow.com":
		return ProviderSiliconFlow
	case "api.cohere.com", "api.cohere.ai":
		return ProviderCohere
	}
	// Hosts whose every subdomain is the provider's: Azure's per-resource
	// hosts, Vertex's regional ones.
	for _, s := range [...]struct {
		domain   string
		provider Provider
	}{
		{"openai.azure.com", ProviderAzure},
		{"cognitiveservices.azure.com", ProviderAzure},
		{"services.ai.azure.com", ProviderAzure},
		{"aiplatform.googleapis.com", ProviderVertexAI},
	} {
		if n := len(host) - len(s.domain); n > 0 && host[n-1] == '.' && host[n:] == s.domain {
			return s.provider
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
