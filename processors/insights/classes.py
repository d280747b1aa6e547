"""Error classes: what kind of failure a log pattern is, and what to do about each kind."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Mapping


class ErrorClass(StrEnum):
    """The failure kinds an AI platform's logs show, each with its own remedy."""

    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    CONTEXT_LENGTH = "context_length"
    CONTENT_FILTER = "content_filter"
    AUTH = "auth"
    MALFORMED_OUTPUT = "malformed_output"
    CAPACITY = "capacity"
    UPSTREAM_5XX = "upstream_5xx"
    OTHER = "other"


# First match wins: a "timeout calling upstream" is a timeout, a "429 from upstream" a rate limit.
_RULES: tuple[tuple[ErrorClass, re.Pattern[str]], ...] = (
    (ErrorClass.CONTEXT_LENGTH, re.compile(r"context.?(length|window)|maximum context|too many tokens|token limit|"
                                           r"prompt is too long|max_tokens")),
    (ErrorClass.RATE_LIMIT, re.compile(r"rate.?limit|\b429\b|too many requests|quota")),
    (ErrorClass.TIMEOUT, re.compile(r"time[ds]?.?out|deadline exceeded")),
    (ErrorClass.CONTENT_FILTER, re.compile(r"content.?(filter|policy)|safety|moderation|flagged")),
    (ErrorClass.AUTH, re.compile(r"auth|\b401\b|\b403\b|api.?key|forbidden|permission denied|credential")),
    (ErrorClass.MALFORMED_OUTPUT, re.compile(r"malformed|invalid json|json ?decode|could not parse|parse error|"
                                             r"schema validation|unexpected token|tool call")),
    (ErrorClass.CAPACITY, re.compile(r"out of memory|\boom\b|overloaded|load shed|capacity|queue full")),
    (ErrorClass.UPSTREAM_5XX, re.compile(r"\b5\d\d\b|service unavailable|bad gateway|internal server error|upstream")),
)

#: What to do about each class; ``{route}``, ``{workflow}``, ``{variant}``, ``{service}`` name the main carrier.
RECOMMENDATIONS: Mapping[ErrorClass, str] = {
    ErrorClass.TIMEOUT: "raise the timeout of route {route} or route latency-sensitive traffic away from it; "
                        "shorten the prompts that run longest",
    ErrorClass.RATE_LIMIT: "add capacity (a higher quota) for route {route} or spread its load over other routes; "
                           "retry with jittered back-off",
    ErrorClass.CONTEXT_LENGTH: "shorten the prompt of workflow {workflow} (variant {variant}): trim history and "
                               "retrieved context, or route long inputs to a longer-context model",
    ErrorClass.CONTENT_FILTER: "refine prompt variant {variant} of workflow {workflow} so it stops triggering the "
                               "provider's content filter; review the inputs that do",
    ErrorClass.AUTH: "fix the credentials of route {route} (expired or revoked key) and route away from it meanwhile",
    ErrorClass.MALFORMED_OUTPUT: "refine prompt variant {variant} of workflow {workflow} to pin the output format "
                                 "(JSON mode or a schema) and validate with one repair retry",
    ErrorClass.CAPACITY: "add capacity to {service} serving route {route}, or shed low-priority load",
    ErrorClass.UPSTREAM_5XX: "route away from {route} (its provider is failing): open its circuit and fail over "
                             "to the fallback route",
    ErrorClass.OTHER: "inspect this pattern on {service}: it does not match a known failure class",
}


def classify(text: str) -> ErrorClass:
    """The error class of a log line or error message (raw text: masking hides status codes).

    >>> classify("upstream timeout after 30000ms calling gpt-large"), classify("HTTP 429 from openai")
    (<ErrorClass.TIMEOUT: 'timeout'>, <ErrorClass.RATE_LIMIT: 'rate_limit'>)
    """
    lowered = text.lower()
    for error_class, pattern in _RULES:
        if pattern.search(lowered):
            return error_class
    return ErrorClass.OTHER


def recommend(error_class: ErrorClass, carriers: Mapping[str, str]) -> str:
    """The recommendation for a class, naming its main route, workflow, variant and service.

    >>> recommend(ErrorClass.UPSTREAM_5XX, {"route": "gpt-large"})
    'route away from gpt-large (its provider is failing): open its circuit and fail over to the fallback route'
    """
    unknown = {"route": "(route not reported)", "workflow": "(workflow not reported)", "variant": "in use",
               "service": "the service"}
    names = {key: carriers.get(key) or unknown[key] for key in unknown}
    return RECOMMENDATIONS[error_class].format(**names)
