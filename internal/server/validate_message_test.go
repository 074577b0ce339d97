package server

import (
	"encoding/base64"
	"testing"
)

func TestCheckURLMessage(t *testing.T) {
	for raw, ok := range map[string]bool{
		"grpc://h:1/pkg.S/M":                 true,
		"grpc://h:1/pkg.S/M?message=base64":  true,
		"grpcs://h:1/pkg.S/M?message=base64": true,
		"grpc://h:1/pkg.S/M?message=json":    false,
		"grpc://h:1/pkg.S/M?x=1":             false,
		"grpc://h:1/pkg.S/M?message=base64#": false, // would not end in ?message=base64
		"grpc://h:1/pkg.S/M#x":               false,
	} {
		if err := checkURL("u", raw); (err == nil) != ok {
			t.Errorf("checkURL(%q) = %v, want ok=%v", raw, err, ok)
		}
	}
	good := base64.StdEncoding.EncodeToString([]byte{0x0a, 0x01, 0xff})
	if err := checkMessagePayload("b", "grpc://h:1/pkg.S/M?message=base64", good); err != nil {
		t.Errorf("base64 payload refused: %v", err)
	}
	if err := checkMessagePayload("b", "grpc://h:1/pkg.S/M?message=base64", "{not base64}"); err == nil {
		t.Error("a payload that is not base64 was accepted for a message URL")
	}
	if err := checkMessagePayload("b", "grpc://h:1/pkg.S/M", "{not base64}"); err != nil {
		t.Errorf("a BranchRequest URL's payload was checked as base64: %v", err)
	}
}
