package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/concordtm/concord/internal/destination"
)

// Alert is what the alert webhook receives as JSON.
type Alert struct {
	Kind    string    `json:"kind"`
	GID     string    `json:"gid"`
	Mode    string    `json:"mode"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// webhookAlerter posts alerts to a URL, best effort, with a few retries.
type webhookAlerter struct {
	url    string
	client *http.Client
	log    *slog.Logger
}

func (w *webhookAlerter) send(a Alert) {
	body, _ := json.Marshal(a)
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
		if err != nil {
			cancel()
			w.log.Error("alert webhook: bad request", "err", scrubSecrets(err.Error(), w.url))
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := w.client.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return
			}
			err = &httpStatusError{resp.StatusCode}
		}
		w.log.Warn("alert webhook failed", "url", destination.Redact(w.url), "attempt", i+1, "err", scrubSecrets(err.Error(), w.url))
		time.Sleep(time.Duration(i+1) * 500 * time.Millisecond)
	}
}

type httpStatusError struct{ code int }

func (e *httpStatusError) Error() string { return "HTTP " + http.StatusText(e.code) }
