"""Rendering at dispatch: one rendering per (publish, provider), shared by all its batches; per
device for a publish with a template or inline localizations (docs/templates.md).

A personalized publish is rendered device by device (its template with the device's
variables, or the locale variant the device's locale picks), and the targets of a chunk whose
content came out the same are sent together with one provider rendering (cached by that
content, so a thousand German devices cost one rendering, not a thousand). A device whose
rendering fails (an error, or its time budget, ``templating.RENDER_BUDGET``, overrun) gets its
own ``payload`` outcome (``template_error``), final and not retried: the same template with the
same device fails again. The others are sent. Templates are rendered in a worker thread, all of
a chunk's devices in one hop, so a slow one never holds the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import msgspec

from pushgate.domain.message_ids import Stamped
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.personalize import DeviceVars, Personalized
from pushgate.domain.rendering import oversize, render_for
from pushgate.domain.templating import TemplateError
from pushgate.providers import answers, registry
from pushgate.providers.base import Provider, Target


class Group(NamedTuple):
    """Targets sent with one rendering, or failed with one result."""

    #: The provider rendering to send them (None: ``failure`` is their outcome, nothing is sent).
    rendered: Any
    targets: list[Target]
    failure: SendResult | None = None
    #: The locale variant chosen for them (None: the base content, or not personalized).
    locale: str | None = None
    #: The publish they belong to: the ``p`` of the message ids each payload carries.
    publish_id: str | None = None


#: Reads the template variables of devices by id (``store/device_vars.py``).
VarsReader = Callable[[Sequence[str]], Awaitable[dict[str, DeviceVars]]]


def parse_request(request: dict[str, Any]) -> tuple[Notification, ProviderOverrides]:
    notification = msgspec.convert(request.get("notification") or {}, Notification)
    overrides = msgspec.convert(request.get("providers") or {}, ProviderOverrides)
    return notification, overrides


def _failure(code: str, message: str) -> SendResult:
    return SendResult(Outcome.PAYLOAD, error_code=code, error_message=message[:1000])


def _bounded_put(items: dict[Any, Any], key: Any, value: Any, size: int) -> None:
    if len(items) >= size:
        items.pop(next(iter(items)))
    items[key] = value


class RenderCache:
    """Keep the renderings of recently dispatched publishes."""

    def __init__(self, size: int = 256, read_vars: VarsReader | None = None) -> None:
        self._size = size
        self._items: dict[tuple[str, str], Any] = {}
        #: Personalized publishes (None: the same for every device), by publish id.
        self._personal: dict[str, Personalized | None] = {}
        #: Provider renderings of personalized content: (publish, provider, content) -> rendering.
        self._contents: dict[tuple[str, str, bytes], Any] = {}
        self._read_vars = read_vars

    def get(self, publish_id: str, provider: str, request: dict[str, Any], created_at: float) -> Any:
        key = (publish_id, provider)
        hit = self._items.get(key)
        if hit is None:
            notification, overrides = parse_request(request)
            hit = render_for(registry.get(provider).renderer, notification, overrides, created_at)
            _bounded_put(self._items, key, hit, self._size)
        return hit

    def personalized(self, publish_id: str, request: dict[str, Any]) -> Personalized | None:
        """The publish's per-device content, or None when it renders the same for everyone."""
        if publish_id not in self._personal:
            _bounded_put(self._personal, publish_id, Personalized.from_request(request), self._size)
        return self._personal[publish_id]

    async def render_targets(
        self,
        publish_id: str,
        provider: str,
        request: dict[str, Any],
        created_at: float,
        targets: list[Target],
    ) -> list[Group]:
        """The targets grouped by what they are sent: one group for a publish that is the same
        for everyone (its one cached rendering), else one per distinct content, plus a group per
        failure (``rendered`` None, the :class:`SendResult` to record for its targets).

        Raises what :meth:`get` raises for a publish that is not personalized (admission
        checked it); a personalized one never raises: failures are groups.
        """
        personal = self.personalized(publish_id, request)
        if personal is None:
            return [
                Group(self.get(publish_id, provider, request, created_at), targets, publish_id=publish_id)
            ]
        ids = [t.recipient_id for t in targets if t.recipient_id.startswith("dev_")]
        found = await self._read_vars(ids) if self._read_vars is not None and ids else {}
        renderer = registry.get(provider).renderer
        devices = [found.get(t.recipient_id) or DeviceVars(provider=provider) for t in targets]
        if personal.is_cheap():
            outputs = _render_all(personal, devices)
        else:
            outputs = await asyncio.to_thread(_render_all, personal, devices)
        groups: dict[bytes, Group] = {}
        for target, output in zip(targets, outputs, strict=True):
            if isinstance(output, TemplateError):
                key = b"!" + str(output).encode()
                failed = groups.setdefault(key, Group(None, [], _failure("template_error", str(output))))
                failed.targets.append(target)
                continue
            locale, n, overrides = output
            content = msgspec.json.encode((n, overrides))
            if content not in groups:
                rendered, failure = self._provider_rendering(
                    publish_id, provider, renderer, n, overrides, content, created_at
                )
                groups[content] = Group(rendered, [], failure, locale, publish_id)
            groups[content].targets.append(target)
        return list(groups.values())

    def _provider_rendering(
        self,
        publish_id: str,
        provider: str,
        renderer: Any,
        n: Notification,
        overrides: ProviderOverrides,
        content: bytes,
        created_at: float,
    ) -> tuple[Any, SendResult | None]:
        """One content's cached provider rendering, or the failure to record for it."""
        key = (publish_id, provider, content)
        hit = self._contents.get(key)
        if hit is None:
            try:
                hit = render_for(renderer, n, overrides, created_at)
            except (ValueError, TypeError) as exc:
                return None, _failure("render_error", f"{provider}: {exc}")
            too_big = oversize(renderer, hit)
            if too_big:
                size, limit = too_big
                message = f"rendered payload for {provider} is {size} bytes, over its {limit}-byte limit"
                return None, _failure("payload_too_large", message)
            _bounded_put(self._contents, key, hit, self._size * 16)
        return hit, None


def _render_all(
    personal: Personalized, devices: list[DeviceVars]
) -> list[tuple[str | None, Notification, ProviderOverrides] | TemplateError]:
    """Each device's content, or its template error (pure CPU: run in a worker thread unless
    :meth:`Personalized.is_cheap`)."""
    out: list[tuple[str | None, Notification, ProviderOverrides] | TemplateError] = []
    for device in devices:
        try:
            out.append(personal.render(device))
        except TemplateError as exc:
            out.append(exc)
    return out


def _with_ids(provider: Provider, group: Group) -> Any:
    """The rendering to send: with the message ids of the group's publish unless the app opted
    out (``Provider.message_ids``, docs/receipts.md); the provider splices them per target."""
    if group.publish_id is None or not provider.message_ids:
        return group.rendered
    return Stamped(group.rendered, group.publish_id)


async def send_groups(
    provider: Provider, provider_name: str, groups: list[Group], order: list[Target]
) -> list[SendResult]:
    """Send each group with its rendering (concurrently) and return one result per target of
    ``order``, in its order; a failed group's targets get its failure without a request."""
    if len(groups) == 1 and groups[0].failure is None:
        only = groups[0]
        return await answers.group(
            provider_name, provider.send_batch(_with_ids(provider, only), only.targets), len(only.targets)
        )

    async def one(group: Group) -> list[SendResult]:
        if group.failure is not None:
            return [group.failure for _ in group.targets]
        sent = provider.send_batch(_with_ids(provider, group), group.targets)
        return await answers.group(provider_name, sent, len(group.targets))

    answered = await asyncio.gather(*(one(g) for g in groups))
    by_target: dict[int, SendResult] = {}
    for group, results in zip(groups, answered, strict=True):
        for t, r in zip(group.targets, results, strict=True):
            by_target[id(t)] = r
    return [by_target[id(t)] for t in order]
