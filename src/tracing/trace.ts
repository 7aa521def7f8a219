/**
 * W3C trace context for each request (https://www.w3.org/TR/trace-context/), with the
 * OpenTelemetry API and its W3C propagator; no SDK and no exporter: this service records no
 * spans, it only keeps a trace connected across the Gateway, itself and its consumers.
 *
 * Each request is a span of its own: a valid incoming `traceparent` is its parent (same trace
 * id, sampling flag kept); without one (or with a malformed one) a new trace starts, so every
 * request has a trace id. The request's own `traceparent` (its new span id) goes into its log
 * lines (`trace_id`, `span_id`) and onto every broadcast it causes (JetStream and sink headers).
 */
import { randomFillSync } from 'node:crypto';
import {
  ROOT_CONTEXT,
  TraceFlags,
  defaultTextMapGetter,
  defaultTextMapSetter,
  isValidSpanId,
  isValidTraceId,
  trace,
  type SpanContext,
} from '@opentelemetry/api';
import { TRACE_PARENT_HEADER, W3CTraceContextPropagator } from '@opentelemetry/core';

const propagator = new W3CTraceContextPropagator();

/** The trace context of one request. */
export interface RequestTrace {
  /** 32 lowercase hex digits, shared by the whole trace. */
  traceId: string;
  /** 16 lowercase hex digits: this request's span. */
  spanId: string;
  /** The incoming parent span id, when the request carried a valid `traceparent`. */
  parentSpanId?: string;
  /** `00-<trace_id>-<span_id>-<flags>`: what the request's broadcasts carry. */
  traceparent: string;
}

/**
 * Random bytes are drawn in blocks (one `randomFillSync` per 4 KiB, as `crypto.randomUUID`
 * caches its entropy): a call per id would cost a few microseconds on every request.
 */
const entropy = Buffer.alloc(4096);
let used = entropy.length;

/** A random id of `bytes` bytes as hex; never all zeros (the spec's invalid id). */
function randomId(bytes: number, valid: (id: string) => boolean): string {
  for (;;) {
    if (used + bytes > entropy.length) {
      randomFillSync(entropy);
      used = 0;
    }
    const id = entropy.toString('hex', used, used + bytes);
    used += bytes;
    if (valid(id)) return id;
  }
}

/** The span context a valid `traceparent` header names, or undefined. */
export function parseTraceparent(header: string | undefined): SpanContext | undefined {
  if (header === undefined || header === '') return undefined;
  const ctx = propagator.extract(ROOT_CONTEXT, { [TRACE_PARENT_HEADER]: header }, defaultTextMapGetter);
  return trace.getSpanContext(ctx);
}

/** `traceparent` of a span context (the propagator's own formatting). */
export function formatTraceparent(span: SpanContext): string {
  const carrier: Record<string, string> = {};
  propagator.inject(trace.setSpanContext(ROOT_CONTEXT, span), carrier, defaultTextMapSetter);
  return carrier[TRACE_PARENT_HEADER]!;
}

/**
 * Starts a request's span: a child of `incoming` when that is a valid `traceparent`, else the
 * root of a new trace (sampled, as a parent-based sampler would decide for a root).
 */
export function startRequestTrace(incoming?: string): RequestTrace {
  const parent = parseTraceparent(incoming);
  const span: SpanContext = {
    traceId: parent?.traceId ?? randomId(16, isValidTraceId),
    spanId: randomId(8, isValidSpanId),
    traceFlags: parent?.traceFlags ?? TraceFlags.SAMPLED,
  };
  return {
    traceId: span.traceId,
    spanId: span.spanId,
    ...(parent ? { parentSpanId: parent.spanId } : {}),
    traceparent: formatTraceparent(span),
  };
}

/** The trace id of a `traceparent` (for tests and log correlation), or undefined if invalid. */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  return parseTraceparent(traceparent)?.traceId;
}
