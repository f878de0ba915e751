package quotabreaker_test

import (
	"context"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/quotabreaker/quotabreaker"
)

// requireToken is the application's own authentication: the Handler does
// none, since only the application knows its operators.
func requireToken(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// The operator's endpoint, mounted behind the application's authentication:
// without the token it answers 401; with it, the state as JSON, and a POST
// resets a latch.
func ExampleTransport_Handler() {
	api := outOfQuota()
	defer api.Close()
	qb := quotabreaker.New(http.DefaultTransport,
		quotabreaker.WithScope(func(*http.Request) string { return "team-a" }),
		quotabreaker.WithClock(func() time.Time { return time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC) }))
	post(&http.Client{Transport: qb}, api.URL, "sk-a") // trips team-a's latch

	mux := http.NewServeMux()
	mux.Handle("/admin/quotabreaker", requireToken("operator-token", qb.Handler()))
	admin := httptest.NewServer(mux)
	defer admin.Close()

	do := func(method, token, form string) {
		req, _ := http.NewRequest(method, admin.URL+"/admin/quotabreaker", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.Status)
		if resp.StatusCode == http.StatusOK && method == http.MethodGet {
			fmt.Print(string(body))
		}
	}
	do(http.MethodGet, "", "")
	do(http.MethodGet, "operator-token", "")
	do(http.MethodPost, "", url.Values{"all": {"true"}}.Encode())
	do(http.MethodPost, "operator-token", url.Values{"scope": {"team-a"}}.Encode())
	trips, _ := qb.OpenLatches(context.Background())
	fmt.Println("open latches:", len(trips))

	// Output:
	// 401 Unauthorized
	// 200 OK
	// {
	//   "mode": "enforce",
	//   "store": "none",
	//   "latches": [
	//     {
	//       "scope": "team-a",
	//       "cause": "answer",
	//       "mode": "enforce",
	//       "class": "quota_exhausted",
	//       "error_code": "insufficient_quota",
	//       "error_type": "insufficient_quota",
	//       "status_code": 429,
	//       "at": "2026-03-14T09:26:53Z"
	//     }
	//   ],
	//   "budgets": []
	// }
	// 401 Unauthorized
	// 200 OK
	// open latches: 0
}
