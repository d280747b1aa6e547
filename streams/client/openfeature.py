"""An OpenFeature provider backed by loopwise's workflow flags (``pip install loopwise[openfeature]``).

Flags live in workflow definitions (``WorkflowDefinition.flags``); the
provider evaluates them locally with ``processors.rollout.evaluate``, the same
function the route stage uses, over what a ``RoutingClient`` follows (or any
``VersionBook``). A flag key is ``FLAG`` (of the provider's workflow) or
``WORKFLOW/FLAG``. The evaluation context maps onto a ``RequestContext``:
``targeting_key`` is the request id (and the user, unless ``user_id`` is given);
``tenant``, ``task``, ``privacy_level``, ``user_id``, ``session_id`` are fields;
any other string attribute is a context attribute.

Usage::

    from openfeature import api
    from streams.client import RoutingClient
    from streams.client.openfeature import LoopwiseProvider

    with RoutingClient(settings) as client:
        api.set_provider(LoopwiseProvider(client, workflow="support-bot"))
        flags = api.get_client()
        if flags.get_boolean_value("new-retriever", False, EvaluationContext("user-7", {"tenant": "acme"})):
            ...
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, Union

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider
from openfeature.provider.metadata import Metadata

from schemas.records import PrivacyLevel, RequestContext

_TRUE, _FALSE = ("on", "true", "yes", "1", "enabled"), ("off", "false", "no", "0", "disabled")
_FIELDS = ("tenant", "task", "user_id", "session_id")
FlagValue = Union[bool, str, int, float, Sequence[Any], Mapping[str, Any]]


class LoopwiseProvider(AbstractProvider):
    """OpenFeature flags evaluated from loopwise workflow definitions.

    Args:
        source: A ``RoutingClient`` (``flags``) or a ``VersionBook`` (``flags_for``).
        workflow: The workflow a bare flag key belongs to.
    """

    def __init__(self, source: Any, workflow: str | None = None) -> None:
        self._flags: Callable[[str, RequestContext, str], dict[str, str]] = getattr(source, "flags", None) \
            or source.flags_for
        self._workflow = workflow

    def get_metadata(self) -> Metadata:
        return Metadata(name="loopwise")

    def _variant(self, flag_key: str, ctx: EvaluationContext | None) -> tuple[str | None, str | None]:
        workflow, _, name = flag_key.rpartition("/")
        workflow = workflow or self._workflow or ""
        ctx = ctx or EvaluationContext()
        attrs = {k: v for k, v in (ctx.attributes or {}).items() if isinstance(v, (str, int, float, bool))}
        request_id = ctx.targeting_key or str(attrs.get("request_id", ""))
        try:
            privacy = PrivacyLevel(str(attrs.get("privacy_level", "public")))
        except ValueError:
            return None, "privacy_level must be one of " + ", ".join(p.value for p in PrivacyLevel)
        context = RequestContext(
            tenant=str(attrs.get("tenant", "")), task=str(attrs.get("task", "")), privacy_level=privacy,
            user_id=str(attrs["user_id"]) if "user_id" in attrs else ctx.targeting_key,
            session_id=str(attrs["session_id"]) if "session_id" in attrs else None,
            attributes={k: str(v) for k, v in attrs.items() if k not in _FIELDS and k != "privacy_level"})
        return self._flags(workflow, context, request_id).get(name), None

    def _resolve(self, flag_key: str, default: Any, ctx: EvaluationContext | None,
                 convert: Callable[[str], Any]) -> FlagResolutionDetails[Any]:
        variant, error = self._variant(flag_key, ctx)
        if error is not None:
            return FlagResolutionDetails(default, ErrorCode.INVALID_CONTEXT, error, Reason.ERROR)
        if variant is None:
            return FlagResolutionDetails(default, ErrorCode.FLAG_NOT_FOUND, f"no flag {flag_key!r} in loopwise",
                                         Reason.ERROR)
        try:
            return FlagResolutionDetails(convert(variant), reason=Reason.TARGETING_MATCH, variant=variant)
        except ValueError:
            return FlagResolutionDetails(default, ErrorCode.TYPE_MISMATCH, f"variant {variant!r} of {flag_key!r}",
                                         Reason.ERROR)

    def resolve_boolean_details(self, flag_key: str, default_value: bool,
                                evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, _boolean)

    def resolve_string_details(self, flag_key: str, default_value: str,
                               evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, str)

    def resolve_integer_details(self, flag_key: str, default_value: int,
                                evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, int)

    def resolve_float_details(self, flag_key: str, default_value: float,
                              evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, float)

    def resolve_object_details(self, flag_key: str, default_value: Any,
                               evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[Any]:
        return self._resolve(flag_key, default_value, evaluation_context, lambda v: {"variant": v})


def _boolean(variant: str) -> bool:
    if variant.lower() in _TRUE:
        return True
    if variant.lower() in _FALSE:
        return False
    raise ValueError(variant)
