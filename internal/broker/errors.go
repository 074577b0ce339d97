package broker

import (
	"errors"
	"fmt"
)

// ErrPermanent is wrapped by errors that retrying cannot fix: the
// destination does not exist or refuses the message. A relay should park
// such a message for an operator instead of retrying it.
var ErrPermanent = errors.New("broker: permanent failure")

// ErrUnroutable is wrapped (together with ErrPermanent) when RabbitMQ
// returned a mandatory message because no queue is bound to receive it.
var ErrUnroutable = errors.New("broker: message unroutable")

// ErrTooLarge is wrapped (together with ErrPermanent) when the broker or
// the client refuses a message because of its size.
var ErrTooLarge = errors.New("broker: message too large")

// IsPermanent reports whether err is a permanent failure (wraps
// ErrPermanent). Any other error is retryable with an unknown outcome.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

// permanent wraps err as a permanent failure; extra sentinels (ErrTooLarge,
// ErrUnroutable) are wrapped too.
func permanent(err error, sentinels ...error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	for _, s := range sentinels {
		err = fmt.Errorf("%w: %w", s, err)
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}
