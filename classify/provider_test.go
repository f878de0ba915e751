package classify

import "testing"

func TestHostProvider(t *testing.T) {
	for host, want := range map[string]Provider{
		"api.openai.com":                        ProviderOpenAI,
		"API.OpenAI.com":                        ProviderOpenAI,
		"api.together.ai":                       ProviderTogether,
		"my-resource.openai.azure.com":          ProviderAzure,
		"openai.azure.com":                      "", // the bare domain is no resource
		"evilopenai.azure.com":                  "", // a suffix that is not a subdomain
		"us-central1-aiplatform.googleapis.com": "",
		"us-central1.aiplatform.googleapis.com": ProviderVertexAI,
		"x.services.ai.azure.com":               ProviderAzure,
		"127.0.0.1":                             "",
		"api.openai.com.attacker.example":       "",
		"generativelanguage.googleapis.com":     ProviderGemini,
		"res.cognitiveservices.azure.com":       ProviderAzure,
		"open.bigmodel.cn":                      ProviderZhipu,
		"":                                      "",
		".openai.azure.com":                     ProviderAzure,
		"a.b.c.openai.azure.com":                ProviderAzure,
		"api.siliconflow.com":                   ProviderSiliconFlow,
		"api.siliconflow.com.":                  "",
		"openrouter.ai":                         ProviderOpenRouter,
		"api.moonshot.cn":                       ProviderMoonshot,
		"api.cohere.ai":                         ProviderCohere,
	} {
		if got := HostProvider(host); got != want {
			t.Errorf("HostProvider(%q) = %q, want %q", host, got, want)
		}
	}
}

func BenchmarkHostProvider(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		HostProvider("api.openai.com")
		HostProvider("127.0.0.1")
	}
}
