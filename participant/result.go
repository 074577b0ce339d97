package participant

import "errors"

// ErrRejected reports that the business said no: the operation was refused
// and will never succeed if retried. The coordinator reacts by aborting the
// global transaction (compensating or cancelling the branches that ran).
//
// The branch barrier also reports a hanging forward operation (an action or
// try that arrives after its compensation or cancel already ran) as rejected.
var ErrRejected = errors.New("participant: rejected")
