"""A publish's content per device: its template and its locale variants (docs/templates.md). Pure.

A publish whose stored request has a ``template`` (a copy of the template's body and version,
and the publish's ``data``) or inline ``localizations`` is rendered per device: the device's
locale picks a variant (``domain/locales.py``), its variables fill the template
(``domain/templating.py``). Everything else renders once per provider, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from pushgate.domain.locales import choose_locale
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.templating import (
    MAX_DATA_DEPTH,
    Anything,
    TemplateError,
    Vars,
    compile_source,
    data_depth,
    deadline,
    names_read,
    render_tree,
    sources,
    wrap,
)

#: A template field's source text.
Source = Annotated[str, msgspec.Meta(max_length=8192)]
#: A BCP 47-ish locale tag (``pt-BR``, ``de``, ``zh_Hant_TW``).
LocaleTag = Annotated[str, msgspec.Meta(min_length=1, max_length=35, pattern=r"^[A-Za-z0-9_-]+$")]
#: Translation keys: names to texts (``{{ l10n.greeting }}``).
L10n = Annotated[
    dict[
        Annotated[str, msgspec.Meta(min_length=1, max_length=200)],
        Annotated[str, msgspec.Meta(max_length=4096)],
    ],
    msgspec.Meta(max_length=200),
]
#: The notification fields a template renders (the publish's ``notification`` gives the rest).
CONTENT_FIELDS = ("title", "body", "image", "url")
#: Keys of an inline localization that replace the notification's own text.
TEXT_KEYS = ("title", "body")
#: Devices of one publish whose rendering may be cut by the deadline before the rest of the
#: publish's devices fail at once (``{% if device.meta.x != 'sample' %}<heavy>{% endif %}``
#: passes admission, then would cost a full render budget per device).
MAX_TIMEOUTS = 10


def unknown_localization_keys(localizations: dict[str, dict[str, str]], *, templated: bool) -> list[str]:
    """The fields (``localizations.de.titel``) of inline localizations that nothing would read:
    without a template only ``title`` and ``body`` are used (a typo would be sent untranslated);
    with one, every key is a translation key (``l10n.<key>``) the template may read."""
    if templated:
        return []
    return [
        f"localizations.{tag}.{key}"
        for tag, texts in localizations.items()
        for key in texts
        if key not in TEXT_KEYS
    ]


class TemplateContent(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What one variant says: every string is a Jinja2 template."""

    title: Source | None = None
    body: Source | None = None
    image: Source | None = None
    url: Source | None = None
    data: Annotated[dict[str, Source], msgspec.Meta(max_length=64)] | None = None
    #: Per-provider native fragments (the shape of a publish's ``providers``); string leaves rendered.
    providers: dict[str, Any] | None = None
    #: Translation keys of this variant, as ``l10n.<key>``.
    l10n: L10n | None = None


class TemplateBody(TemplateContent):
    """A stored template: the base content, its locale variants (each field given replaces the
    base's; ``data``, ``providers`` and ``l10n`` are merged key by key) and the default locale
    for devices no variant matches."""

    locales: Annotated[dict[LocaleTag, TemplateContent], msgspec.Meta(max_length=100)] | None = None
    default_locale: LocaleTag | None = None


def check_body(body: TemplateBody, where: str = "") -> None:
    """Compile every template of ``body`` (syntax, sandbox rules) and check its native
    fragments' shape; raises :class:`TemplateError` naming the field."""
    variants: list[tuple[str, TemplateContent]] = [(where.rstrip("."), body)]
    variants += [(f"{where}locales.{tag}", v) for tag, v in (body.locales or {}).items()]
    for prefix, content in variants:
        at = f"{prefix}." if prefix else ""
        depth = data_depth(content.providers)
        if depth > MAX_DATA_DEPTH:
            reason = f"nested {depth} levels deep; at most {MAX_DATA_DEPTH} are accepted"
            raise TemplateError(f"{at}providers", reason)
        for name in (*CONTENT_FIELDS, "data", "providers"):
            for path, source in sources(f"{at}{name}", getattr(content, name)):
                compile_source(path, source)
        try:
            msgspec.convert(content.providers or {}, ProviderOverrides)
        except msgspec.ValidationError as exc:
            raise TemplateError(f"{at}providers", str(exc)) from None


@dataclass(frozen=True, slots=True)
class DeviceVars:
    """What a template may read of one device (``device.*``, ``user.id``)."""

    id: str | None = None
    user: str | None = None
    locale: str | None = None
    platform: str | None = None
    provider: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def _device_namespace(d: DeviceVars, sample: bool) -> tuple[Vars, Vars]:
    given = {k: getattr(d, k) for k in ("id", "user", "locale", "platform", "provider")}
    device: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    kind = Anything if sample else Vars
    device["meta"] = kind("device.meta", d.meta)
    device["tags"] = kind("device.tags", d.tags)
    user = Vars("user", {"id": d.user} if d.user is not None else {})
    return Vars("device", device), user


def sample_device(locale: str | None, provider: str | None = None) -> DeviceVars:
    """The device admission renders with: its own values are placeholders, ``meta`` and
    ``tags`` have every key (what a real device has is not knowable then)."""
    return DeviceVars(id="dev_sample", user="sample-user", locale=locale, platform="other", provider=provider)


@dataclass(slots=True)
class Personalized:
    """A publish's per-device content, read from its stored request."""

    base: Notification
    overrides: ProviderOverrides
    template: TemplateBody | None
    data: dict[str, Any]
    localizations: dict[str, dict[str, str]]
    locales: list[str]
    #: ``data`` as template variables, built once for every device.
    variables: Any = None
    #: No template field reads ``device`` or ``user``: devices differ only by their locale, so
    #: each variant is rendered once (``_by_locale``) rather than once per device.
    device_free: bool = False
    _by_locale: dict[str | None, tuple[str | None, Notification, ProviderOverrides] | TemplateError] = field(
        default_factory=dict
    )
    #: The stored request's ``template`` object itself (admission finds what it rendered by it).
    source: dict[str, Any] | None = None
    #: Renderings cut by the deadline so far (past :data:`MAX_TIMEOUTS`, the rest fail at once).
    timeouts: int = 0

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> Personalized | None:
        """None for a publish that renders the same for every device."""
        tmpl = request.get("template")
        localizations = request.get("localizations") or {}
        if tmpl is None and not localizations:
            return None
        body = msgspec.convert(tmpl["body"], TemplateBody) if tmpl is not None else None
        locales = list(dict.fromkeys([*((body.locales or {}) if body else {}), *localizations]))
        data = (tmpl or {}).get("data") or {}
        return cls(
            base=msgspec.convert(request.get("notification") or {}, Notification),
            overrides=msgspec.convert(request.get("providers") or {}, ProviderOverrides),
            template=body,
            data=data,
            localizations=localizations,
            locales=locales,
            variables=wrap("data", data),
            device_free=body is None or not _reads_device(body),
            source=tmpl,
        )

    def choose(self, device_locale: str | None) -> str | None:
        default = self.template.default_locale if self.template is not None else None
        return choose_locale(device_locale, self.locales, default)

    def render(
        self, device: DeviceVars, *, sample: bool = False, locale: str | None = None
    ) -> tuple[str | None, Notification, ProviderOverrides]:
        """``(chosen locale, notification, overrides)`` for ``device``; raises
        :class:`TemplateError`. ``sample``: admission's check, ``locale`` the variant to check."""
        chosen = locale if sample else self.choose(device.locale)
        if self.device_free and not sample:
            hit = self._by_locale.get(chosen)
            if hit is None:
                try:
                    hit = self._timed(device, chosen, sample)
                except TemplateError as exc:
                    hit = exc
                self._by_locale[chosen] = hit
            if isinstance(hit, TemplateError):
                raise hit
            return hit
        return self._timed(device, chosen, sample)

    def is_cheap(self) -> bool:
        """Whether rendering any device is a dictionary look-up (inline localizations only, or
        every variant of a device-free template already rendered): no worker thread needed."""
        if self.template is None:
            return True
        variants = len(self.locales) + (1 if self.choose(None) is None else 0)
        return self.device_free and len(self._by_locale) >= variants

    def _timed(
        self, device: DeviceVars, chosen: str | None, sample: bool
    ) -> tuple[str | None, Notification, ProviderOverrides]:
        """:meth:`_render` under one deadline for all of the device's fields; counts the
        renderings cut, and past :data:`MAX_TIMEOUTS` of them fails at once."""
        if self.template is None:
            return self._render(device, chosen, sample)
        if self.timeouts >= MAX_TIMEOUTS:
            raise TemplateError(
                "template",
                f"rendering gave up: {self.timeouts} devices' renderings took longer than the "
                "render budget, so the rest of this publish's devices are not rendered",
            )
        try:
            with deadline():
                return self._render(device, chosen, sample)
        except TemplateError as exc:
            if exc.timed_out:
                self.timeouts += 1
            raise

    def _render(
        self, device: DeviceVars, chosen: str | None, sample: bool
    ) -> tuple[str | None, Notification, ProviderOverrides]:
        inline = self.localizations.get(chosen, {}) if chosen is not None else {}
        if self.template is None:
            texts = {k: inline[k] for k in TEXT_KEYS if k in inline}
            return chosen, msgspec.structs.replace(self.base, **texts), self.overrides
        variant = (self.template.locales or {}).get(chosen) if chosen is not None else None
        content, origin = _merged(self.template, variant, chosen)
        dev, user = _device_namespace(device, sample)
        l10n = {**(self.template.l10n or {}), **((variant.l10n or {}) if variant else {}), **inline}
        variables = {"data": self.variables, "device": dev, "user": user, "l10n": Vars("l10n", l10n)}
        fields: dict[str, Any] = msgspec.to_builtins(self.base)
        for name in CONTENT_FIELDS:
            source = getattr(content, name)
            if source is not None:
                fields[name] = render_tree(f"{origin[name]}.{name}", source, variables)
        if content.data:
            rendered = {
                k: render_tree(f"{origin['data']}.data.{k}", v, variables) for k, v in content.data.items()
            }
            fields["data"] = {**(fields.get("data") or {}), **rendered}
        notification = _convert(fields, Notification, origin, "")
        overrides = self.overrides
        if content.providers:
            natives = render_tree(f"{origin['providers']}.providers", content.providers, variables)
            merged = {**msgspec.to_builtins(self.overrides), **natives}
            overrides = _convert(merged, ProviderOverrides, origin, "providers.")
        return chosen, notification, overrides

    def variants(self) -> list[tuple[str | None, Notification, ProviderOverrides]]:
        """Every locale variant rendered with :func:`sample_device` (and the base when a device
        may match no variant): admission's check of what it can know."""
        out = []
        # The base is only ever sent when some device can match no variant (no default).
        base = [] if self.choose(None) is not None else [None]
        for locale in [*base, *self.locales]:
            out.append(self.render(sample_device(locale), sample=True, locale=locale))
        return out


def _reads_device(body: TemplateBody) -> bool:
    """Whether any field of any variant reads ``device`` or ``user``."""
    for content in [body, *(body.locales or {}).values()]:
        for name in (*CONTENT_FIELDS, "data", "providers"):
            for _, source in sources(name, getattr(content, name)):
                if names_read(source) & {"device", "user"}:
                    return True
    return False


def _merged(
    body: TemplateBody, variant: TemplateContent | None, tag: str | None
) -> tuple[TemplateContent, dict[str, str]]:
    """The content a variant renders, and where each field came from (for error messages)."""
    origin = dict.fromkeys((*CONTENT_FIELDS, "data", "providers"), "template")
    if variant is None:
        return body, origin
    where = f"template.locales.{tag}"
    merged: dict[str, Any] = {}
    for name in CONTENT_FIELDS:
        own = getattr(variant, name)
        merged[name] = own if own is not None else getattr(body, name)
        if own is not None:
            origin[name] = where
    for name in ("data", "providers"):
        own = getattr(variant, name)
        merged[name] = {**(getattr(body, name) or {}), **(own or {})} or None
        if own:
            origin[name] = where
    return TemplateContent(**merged), origin


def _convert(fields: dict[str, Any], kind: type[Any], origin: dict[str, str], prefix: str) -> Any:
    """``fields`` as ``kind``, a rendered value its schema refuses reported as a template error."""
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        why, _, at = str(exc).partition(" - at `$")
        path = at.rstrip("`").lstrip(".")
        top = path.split(".", 1)[0].split("[", 1)[0]
        where = origin.get("providers" if prefix else top, "template")
        raise TemplateError(f"{where}.{prefix}{path}", f"the rendered value is refused: {why}") from None
