package client_test

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/concordtm/concord/client"
)

// The caller's span goes to the coordinator with each call, so the
// transaction, its branch calls and the participants' spans join the
// caller's trace (when the coordinator has tracing on, see
// docs/operations.md). Without WithPropagator, the client uses otel's
// global propagator, set once with otel.SetTextMapPropagator.
func ExampleWithPropagator() {
	c := client.New("http://127.0.0.1:8080", client.WithPropagator(propagation.TraceContext{}))

	ctx, span := otel.Tracer("shop").Start(context.Background(), "checkout")
	defer span.End()
	tx, err := c.NewSaga("").
		Add("http://orders/create", "http://orders/cancel", `{"qty":2}`).
		SubmitAndWait(ctx) // sends traceparent: 00-<checkout's trace id>-<its span id>-01
	_, _ = tx, err
}
