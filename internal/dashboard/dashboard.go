// Package dashboard serves the operator's web dashboard: a static page,
// embedded in the binary, that calls the Connect/JSON API from the
// browser (ListTransactions, GetTransaction, RetryTransaction,
// AbortTransaction) with the bearer token the operator types in. The page
// itself holds no data, so it is served without authentication; every
// data call it makes is authenticated by the API as usual.
//
// Everything is hand-written HTML, CSS and JavaScript under static/: no
// build step, no CDN, works offline.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the dashboard's files from its root ("/" is the page):
// mount it with http.StripPrefix.
func Handler() http.Handler {
	root, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(root)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Only our own files; the API is same-origin.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
