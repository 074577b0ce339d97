package client

import (
	"encoding/json"
	"time"

	v1 "github.com/concordtm/concord/gen/concord/v1"
)

// Options are per-transaction limits; zero fields take the coordinator's
// defaults.
type Options struct {
	Timeout          time.Duration // whole-transaction deadline
	BranchTimeout    time.Duration // one branch call
	MaxAttempts      int           // per branch operation
	MaxTotalAttempts int           // per transaction
	RetryInitial     time.Duration // first backoff
	RetryMax         time.Duration // longest backoff
}

func (o Options) proto() *v1.TransactionOptions {
	if o == (Options{}) {
		return nil
	}
	return &v1.TransactionOptions{
		TimeoutMs: o.Timeout.Milliseconds(), BranchTimeoutMs: o.BranchTimeout.Milliseconds(),
		MaxAttempts: int32(o.MaxAttempts), MaxTotalAttempts: int32(o.MaxTotalAttempts),
		RetryInitialMs: o.RetryInitial.Milliseconds(), RetryMaxMs: o.RetryMax.Milliseconds(),
	}
}

// encodePayload sends []byte, string and json.RawMessage verbatim and
// marshals anything else as JSON.
func encodePayload(p any) (string, error) {
	switch v := p.(type) {
	case nil:
		return "", nil
	case []byte:
		return string(v), nil
	case string:
		return v, nil
	case json.RawMessage:
		return string(v), nil
	}
	b, err := json.Marshal(p)
	return string(b), err
}
