package balance

// Answers as the providers document them, each copied from the source
// named beside it. A fixture marked "derived" changes a documented answer
// in the way its comment says, for a case the documentation describes
// without an example.

// https://api-docs.deepseek.com/api/get-user-balance (example answer)
const deepseekDoc = `{
  "is_available": true,
  "balance_infos": [
    {
      "currency": "CNY",
      "total_balance": "110.00",
      "granted_balance": "10.00",
      "topped_up_balance": "100.00"
    }
  ]
}`

// Derived from deepseekDoc: the schema's currency is "CNY" or "USD", and
// balance_infos is a list, so an account can hold both; an earlier
// revision of the page typed the amounts as numbers
// (https://platform.deepseek.com/api-docs/zh-cn/api/get-user-balance).
const deepseekTwoCurrencies = `{"is_available":false,"balance_infos":[
  {"currency":"CNY","total_balance":"0.00","granted_balance":"0.00","topped_up_balance":"0.00"},
  {"currency":"USD","total_balance":1.5,"granted_balance":0,"topped_up_balance":1.5}]}`

// https://openrouter.ai/docs/client-sdks/typescript/models/operations/getcurrentkeyresponse
// (the example's JSON column, for GET /api/v1/key)
const openrouterKeyDoc = `{"data":{"byok_usage":17.38,"byok_usage_daily":17.38,"byok_usage_monthly":17.38,
  "byok_usage_weekly":17.38,"creator_user_id":"user_2dHFtVWx2n56w6HkM0000000000",
  "expires_at":"2027-12-31T23:59:59Z","include_byok_in_limit":false,"is_free_tier":false,
  "is_management_key":false,"is_provisioning_key":false,"label":"sk-or-v1-au7...890",
  "limit":100,"limit_remaining":74.5,"limit_reset":"monthly",
  "rate_limit":{"interval":"1h","note":"This field is deprecated and safe to ignore.","requests":1000},
  "usage":25.5,"usage_daily":25.5,"usage_monthly":25.5,"usage_weekly":25.5}}`

// A recorded answer of GET /api/v1/key, in the openrouter crate's sources:
// https://docs.rs/crate/openrouter/latest/source/responses/key.json
// (limit_remaining has ten decimals: it rounds to the millionth).
const openrouterKeyCrate = `{
  "data": {
    "label": "sk-or-v1-116...0ce",
    "limit": 5,
    "usage": 0.1015644762,
    "is_provisioning_key": false,
    "limit_remaining": 4.8984355238,
    "is_free_tier": false,
    "rate_limit": {
      "requests": 50,
      "interval": "10s"
    }
  }
}`

// Derived from openrouterKeyCrate: a key without a credit limit, which the
// OpenAPI description types as limit: null, limit_remaining: null.
const openrouterKeyUnlimited = `{"data":{"label":"sk-or-v1-116...0ce","limit":null,"usage":0.1015644762,
  "limit_remaining":null,"is_free_tier":false}}`

// https://openrouter.ai/docs/client-sdks/typescript/models/operations/getcreditsresponse
// (GET /api/v1/credits)
const openrouterCreditsDoc = `{"data":{"total_credits":100.5,"total_usage":25.75}}`

// https://platform.moonshot.cn/docs/api/balance (返回内容)
const moonshotDoc = `{
"code": 0,
"data": {
"available_balance": 49.58894,
"voucher_balance": 46.58893,
"cash_balance": 3.00001
},
"scode": "0x0",
"status": true
}`

// https://docs.siliconflow.com/cn/api-reference/userinfo/get-user-info (example answer)
const siliconflowDoc = `{ "code": 20000, "message": "OK", "status": true, "data": { "id": "userid",
  "name": "username", "image": "user_avatar_image_url", "email": "user_email_address",
  "isAdmin": false, "balance": "0.88", "status": "normal", "introduction": "", "role": "",
  "chargeBalance": "88.00", "totalBalance": "88.88" } }`

// The answer of GET /v1/billing/teams/{team_id}/prepaid/balance as CodexBar
// documents and tests it (https://github.com/steipete/CodexBar/blob/main/docs/xai.md:
// "a $10 top-up appears as "-1000""); the fields are those of
// https://docs.x.ai/developers/rest-api-reference/management/billing.
const xaiLedger = `{"changes":[],"total":{"val":"-1000"}}`

// https://share.apidog.com/apidoc/docs-site/370474/api-12405880 (OpenAI's
// example answer of GET /v1/organization/costs)
const openaiCostsDoc = `{
"object": "page",
"data": [
{
"object": "bucket",
"start_time": 1730419200,
"end_time": 1730505600,
"results": [
{
"object": "organization.costs.result",
"amount": {
"value": 0.06,
"currency": "usd"
},
"line_item": null,
"project_id": null
}
]
}
],
"has_more": false,
"next_page": null
}`

// Built from the documented schema of GET /v1/organizations/cost_report
// (https://platform.claude.com/docs/en/api/admin/cost_report/retrieve) and
// its worked amount: "123.45" in "USD" represents $1.23 (123.45 cents).
const anthropicCostsDoc = `{"data":[{"starting_at":"2025-08-01T00:00:00Z","ending_at":"2025-08-02T00:00:00Z",
  "results":[{"amount":"123.45","context_window":null,"cost_type":null,"currency":"USD",
  "description":null,"model":null,"service_tier":null,"token_type":null,"workspace_id":null}]}],
  "has_more":false,"next_page":null}`

// https://openrouter.ai/docs/use-cases/usage-accounting (the usage object)
const openrouterUsageDoc = `{"completion_tokens":2,"completion_tokens_details":{"reasoning_tokens":0},
  "cost":0.95,"cost_details":{"upstream_inference_cost":19},"prompt_tokens":194,
  "prompt_tokens_details":{"cached_tokens":0,"cache_write_tokens":100,"audio_tokens":0},"total_tokens":196}`

// https://docs.x.ai/developers/cost-tracking: "a response with
// "cost_in_usd_ticks": 37756000 cost $0.0038".
const xaiUsageDoc = `{"prompt_tokens":37,"completion_tokens":530,"total_tokens":567,"cost_in_usd_ticks":37756000}`
