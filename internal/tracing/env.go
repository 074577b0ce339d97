package tracing

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// FromEnv builds a tracer provider from the standard OpenTelemetry
// environment variables, or returns nil when tracing is off (the
// default). Tracing is on when OTEL_TRACES_EXPORTER is "otlp", or when it
// is unset and OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. OTEL_SDK_DISABLED=true and
// OTEL_TRACES_EXPORTER=none turn it off. Spans go over OTLP/HTTP
// (protobuf); the exporter reads the other OTEL_EXPORTER_OTLP_* variables
// (headers, timeout, TLS), the SDK reads OTEL_TRACES_SAMPLER(_ARG) and
// OTEL_BSP_*, and OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES name the
// service ("concord" by default).
//
// The provider's Shutdown flushes buffered spans; call it on exit.
func FromEnv(ctx context.Context, getenv func(string) string) (*sdktrace.TracerProvider, error) {
	if v, err := strconv.ParseBool(getenv("OTEL_SDK_DISABLED")); err == nil && v {
		return nil, nil
	}
	exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	switch exp {
	case "":
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return nil, nil
		}
	case "none":
		return nil, nil
	case "otlp":
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp (or none) is supported", exp)
	}
	if p := getenv("OTEL_EXPORTER_OTLP_PROTOCOL") + getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); p != "" && !strings.HasPrefix(p, "http/protobuf") {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: only http/protobuf is supported", p)
	}
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.Merge(
		resource.NewSchemaless(semconv.ServiceName("concord")),
		resource.Environment(),
	)
	if err != nil {
		res = resource.Environment()
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res)), nil
}
