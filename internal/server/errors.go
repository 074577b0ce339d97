package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// jsonErrors gives the answers that net/http and Connect write without a
// body, or with a plain-text one (no such path, wrong method, unsupported
// content type, body too large), the same JSON error body as every other
// API error. gRPC requests are left alone: their errors travel in
// trailers. A request whose Content-Length is over maxBody is refused here
// with 413, before anything reads it.
func jsonErrors(next http.Handler, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			next.ServeHTTP(w, r)
			return
		}
		if maxBody > 0 && r.ContentLength > maxBody {
			writeJSONError(w, http.StatusRequestEntityTooLarge, "resource_exhausted",
				fmt.Sprintf("request body of %d bytes is over the limit of %d (serve -max-request-bytes)", r.ContentLength, maxBody))
			return
		}
		next.ServeHTTP(&errorWriter{ResponseWriter: w, r: r}, r)
	})
}

func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, msg})
	h := w.Header()
	h.Del("X-Content-Type-Options")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// errorWriter replaces the body of a 404, 405 or 415 answer that is not
// JSON already.
type errorWriter struct {
	http.ResponseWriter
	r        *http.Request
	replaced bool
}

func (e *errorWriter) WriteHeader(status int) {
	if e.replaced {
		return
	}
	if strings.HasPrefix(e.Header().Get("Content-Type"), "application/json") {
		e.ResponseWriter.WriteHeader(status)
		return
	}
	var code, msg string
	switch status {
	case http.StatusNotFound:
		code, msg = "not_found", fmt.Sprintf("no such path: %s %s", e.r.Method, e.r.URL.Path)
	case http.StatusMethodNotAllowed:
		code, msg = "method_not_allowed", fmt.Sprintf("method %s is not allowed on %s", e.r.Method, e.r.URL.Path)
		if allow := e.Header().Get("Allow"); allow != "" {
			msg += "; use " + allow
		}
	case http.StatusUnsupportedMediaType:
		code, msg = "unsupported_media_type", fmt.Sprintf("content type %q is not supported; send application/json (or application/proto, application/grpc)", e.r.Header.Get("Content-Type"))
	default:
		e.ResponseWriter.WriteHeader(status)
		return
	}
	e.replaced = true
	writeJSONError(e.ResponseWriter, status, code, msg)
}

func (e *errorWriter) Write(p []byte) (int, error) {
	if e.replaced {
		return len(p), nil // the plain-text body we replaced
	}
	return e.ResponseWriter.Write(p)
}

// Flush and Unwrap keep streaming and http.ResponseController working.
func (e *errorWriter) Flush() {
	if f, ok := e.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (e *errorWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }
