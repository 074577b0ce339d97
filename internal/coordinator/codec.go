package coordinator

import (
	"encoding/json"
	"fmt"

	"github.com/concordtm/concord/internal/protocol"
	"github.com/concordtm/concord/internal/store"
)

// recordVersion is the version of the JSON records written before the
// binary format (codec_binary.go); they are still read.
const recordVersion = 1

type envelope struct {
	V   int          `json:"v"`
	Txn protocol.Txn `json:"txn"`
}

// encode turns a transaction into a store record, in the binary format.
func encode(t *protocol.Txn) (store.Record, error) {
	data := encodeBinary(make([]byte, 0, 256+256*len(t.Branches)), t)
	return store.Record{
		GID:       t.GID,
		Mode:      string(t.Mode),
		Status:    string(t.Status),
		Finished:  t.Status.Final(),
		CreatedAt: t.CreatedAt,
		UpdatedAt: t.UpdatedAt,
		Data:      data,
	}, nil
}

// decode reads a record back, checking that it is one this version
// understands and that its content is self-consistent. It never panics on
// arbitrary bytes.
func decode(data []byte) (protocol.Txn, error) {
	var t protocol.Txn
	if len(data) > 0 && (data[0] == recordBinary || data[0] == recordBinaryV2) {
		var err error
		if t, err = decodeBinary(data); err != nil {
			return protocol.Txn{}, fmt.Errorf("%w: %v", store.ErrCorrupt, err)
		}
	} else {
		var env envelope
		if err := json.Unmarshal(data, &env); err != nil {
			return protocol.Txn{}, fmt.Errorf("%w: %v", store.ErrCorrupt, err)
		}
		if env.V != recordVersion {
			return protocol.Txn{}, fmt.Errorf("%w: record version %d, want %d", store.ErrCorrupt, env.V, recordVersion)
		}
		t = env.Txn
	}
	if t.GID == "" {
		return protocol.Txn{}, fmt.Errorf("%w: record without gid", store.ErrCorrupt)
	}
	if machineFor(t.Mode) == nil {
		return protocol.Txn{}, fmt.Errorf("%w: %s: unknown mode %q", store.ErrCorrupt, t.GID, t.Mode)
	}
	switch t.Status {
	case protocol.StatusRunning, protocol.StatusConfirming, protocol.StatusCompensating,
		protocol.StatusCancelling, protocol.StatusCommitting, protocol.StatusSucceeded, protocol.StatusAborted, protocol.StatusStuck,
		protocol.StatusPrepared, protocol.StatusDelivering, protocol.StatusPreCommitting:
	default:
		return protocol.Txn{}, fmt.Errorf("%w: %s: unknown status %q", store.ErrCorrupt, t.GID, t.Status)
	}
	seen := make(map[string]bool, len(t.Branches))
	for _, b := range t.Branches {
		if b.ID == "" || seen[b.ID] {
			return protocol.Txn{}, fmt.Errorf("%w: %s: empty or duplicate branch id %q", store.ErrCorrupt, t.GID, b.ID)
		}
		seen[b.ID] = true
	}
	return t, nil
}
