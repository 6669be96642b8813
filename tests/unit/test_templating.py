"""Templates without I/O (docs/templates.md): locale choice, the sandbox, per-device rendering."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from pushgate.domain.locales import choose_locale
from pushgate.domain.personalize import DeviceVars, Personalized, TemplateBody, check_body
from pushgate.domain.templating import MAX_OUTPUT, TemplateError, Vars, render_field, wrap

AVAILABLE = ["en", "de", "pt-BR"]


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("pt-BR", "pt-BR"),
        ("pt_br", "pt-BR"),  # case and underscore do not matter
        ("PT-br", "pt-BR"),
        ("de", "de"),
        ("de-AT", "de"),  # the language
        ("de_CH", "de"),
        ("pt-PT", "pt-BR"),  # another variant of the same language
        ("pt", "pt-BR"),
        ("fr", "en"),  # the default
        ("", "en"),
        (None, "en"),
        ("  ", "en"),
    ],
)
def test_choose_locale(device: str | None, expected: str) -> None:
    assert choose_locale(device, AVAILABLE, "en") == expected


def test_choose_locale_prefers_the_exact_tag_then_the_language_then_the_first_variant() -> None:
    assert choose_locale("pt-PT", ["pt-BR", "pt", "pt-PT"], None) == "pt-PT"
    assert choose_locale("pt-AO", ["pt-BR", "pt", "pt-PT"], None) == "pt"
    assert choose_locale("pt-AO", ["pt-PT", "pt-BR"], None) == "pt-BR"  # sorted: stable
    assert choose_locale("zh-Hant-TW", ["zh-hant-tw"], None) == "zh-hant-tw"


def test_choose_locale_without_a_match_nor_a_usable_default_is_none() -> None:
    assert choose_locale("fr", AVAILABLE, None) is None
    assert choose_locale("fr", AVAILABLE, "it") is None  # a default that is not a variant
    assert choose_locale("fr", [], "en") is None
    assert choose_locale("fr", ["EN"], "en") == "EN"  # spelled as the variant is


def _vars(**data: Any) -> dict[str, Any]:
    meta = Vars("device.meta", {"name": "Ann"})
    return {"data": wrap("data", data), "device": Vars("device", {"meta": meta}), "user": Vars("user", {})}


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ ''.__class__ }}", "access to attribute '__class__' of 'str' object is unsafe"),
        ("{{ data.x.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
        ("{{ data.x.__init__.__globals__ }}", "unsafe"),
        ("{{ data.x.format(1) }}", "unsafe"),
        ("{{ data.x.ljust(100000000) }}", "unsafe"),
        ("{{ data.x * 100000 }}", "'*' would make a value over"),
        ("{{ [data.x] * 1000 }}", "'*' repeats only text"),
        ("{{ data.x.encode() * 1000 }}", "unsafe"),
        ("{{ data.big | join(data.big) }}", "'join' would make a value over"),
        ("{{ data.x.translate({120: data.big}) }}", "unsafe"),
        ("{% set a = data.x ~ data.x %}{{ a }}", "'set' is not allowed"),
        ("{% set a %}x{% endset %}", "'set' is not allowed"),
        ("{% with a = 1 %}{{ a }}{% endwith %}", "'with' is not allowed"),
        ("{{ data.x | tojson(indent=100000) }}", "No filter named 'tojson'"),
        ("{{ 2 ** 1000 }}", "'**' takes exponents up to"),
        ("{{ (9 ** 64) ** 64 }}", "'**' would make a number over"),
        ("{{ '%s' % data.x }}", "'%' formatting"),
        ("{% for a in data.l %}{% for b in data.l %}{% endfor %}{% endfor %}", "loops inside loops"),
        ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "'macro' is not allowed"),
        ("{% include 'x.html' %}", "'include' is not allowed"),
        ("{% extends 'base.html' %}", "'extends' is not allowed"),
        ("{{ range(10) }}", "'range' is undefined"),
        ("{{ namespace() }}", "'namespace' is undefined"),
        ("{{ data.x | wordwrap(5) }}", "No filter named 'wordwrap'"),
        ("{{ data.missing }}", "data.missing is undefined"),
        ("{{ device.meta.age }}", "device.meta.age is undefined"),
        ("{{ user.id }}", "user.id is undefined"),
        ("{{ data.x", "syntax error on line 1"),
    ],
)
def test_the_sandbox_refuses(source: str, reason: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render_field("template.title", source, _vars(x="x", l=[1, 2], big="b" * 5000))
    assert caught.value.field == "template.title"
    assert reason in caught.value.reason


def test_output_is_bounded_while_it_streams() -> None:
    source = "{% for i in data.l %}{{ data.s }}{% endfor %}"
    ok = render_field("f", source, _vars(l=list(range(8)), s="x" * 1000))
    assert ok == "x" * 8000
    with pytest.raises(TemplateError, match=f"renders to more than {MAX_OUTPUT} characters"):
        render_field("f", source, _vars(l=list(range(9)), s="x" * 1000))


def test_what_templates_may_do() -> None:
    v = _vars(order={"id": 42, "items": ["a", "b"]}, name="bob")
    assert render_field("f", "Order {{ data.order.id }} for {{ data.name | title }}", v) == "Order 42 for Bob"
    assert render_field("f", "{{ data.order.items | join(', ') }}", v) == "a, b"  # a member, not dict.items
    assert (
        render_field("f", "{{ data.name * 3 }} {{ 2 * 3 }} {{ 2 ** 10 }} {{ 7 % 4 }}", v)
        == "bobbobbob 6 1024 3"
    )
    assert render_field("f", "{{ data['name'] }}/{{ device.meta.name }}", v) == "bob/Ann"
    assert render_field("f", "{{ user.id | default('friend') }}", v) == "friend"
    assert render_field("f", "{% if device.meta.age is defined %}a{% else %}b{% endif %}", v) == "b"
    assert render_field("f", "50% off", v) == "50% off"  # no braces: not parsed at all


def _personal(body: dict[str, Any], data: dict[str, Any], localizations: Any = None) -> Personalized:
    request: dict[str, Any] = {
        "notification": {"ttl_seconds": 60},
        "template": {"id": "t", "version": 1, "body": body, "data": data},
    }
    if localizations:
        request["localizations"] = localizations
    p = Personalized.from_request(request)
    assert p is not None
    return p


BODY = {
    "title": "Hi {{ device.meta.name }}",
    "body": "Order {{ data.order }} for {{ user.id }}",
    "data": {"order": "{{ data.order }}"},
    "locales": {
        "de": {"title": "Hallo {{ device.meta.name }}", "l10n": {"shipped": "versandt"}},
        "pt-BR": {"title": "Olá {{ device.meta.name }}", "body": "{{ l10n.shipped }} {{ data.order }}"},
    },
    "default_locale": "de",
}


def test_per_device_rendering_picks_the_variant_and_fills_the_variables() -> None:
    p = _personal(BODY, {"order": "A1"}, {"pt-BR": {"shipped": "enviado"}})
    ann = DeviceVars(id="dev_1", user="u1", locale="pt-PT", meta={"name": "Ann"})
    locale, n, _ = p.render(ann)
    assert (locale, n.title, n.body, n.data, n.ttl_seconds) == (
        "pt-BR",
        "Olá Ann",
        "enviado A1",
        {"order": "A1"},
        60,
    )
    locale, n, _ = p.render(DeviceVars(user="u2", locale="fr", meta={"name": "Bo"}))
    assert (locale, n.title, n.body) == ("de", "Hallo Bo", "Order A1 for u2")


def test_a_device_lacking_a_variable_fails_alone_naming_field_and_variable() -> None:
    p = _personal(BODY, {"order": "A1"})
    with pytest.raises(TemplateError) as caught:
        p.render(DeviceVars(user="u1", locale="de"))
    assert caught.value.field == "template.locales.de.title"
    assert "device.meta.name is undefined" in str(caught.value)


def test_admission_variants_know_data_but_not_the_device() -> None:
    p = _personal(BODY, {"order": "A1"}, {"pt-BR": {"shipped": "enviado"}})
    assert [v[0] for v in p.variants()] == ["de", "pt-BR"]  # with a default, the base is never sent
    no_default = {k: v for k, v in BODY.items() if k != "default_locale"}
    p = _personal(no_default, {"order": "A1"}, {"pt-BR": {"shipped": "enviado"}})
    assert [v[0] for v in p.variants()] == [None, "de", "pt-BR"]
    with pytest.raises(TemplateError, match=r"data\.order is undefined"):
        _personal(no_default, {}).variants()
    with pytest.raises(TemplateError, match=r"template\.locales\.pt-BR\.body: l10n\.shipped is undefined"):
        _personal(BODY, {"order": "A1"}).variants()


def test_inline_localizations_without_a_template() -> None:
    p = Personalized.from_request(
        {"notification": {"title": "Hello", "body": "Hi"}, "localizations": {"fr": {"title": "Bonjour"}}}
    )
    assert p is not None
    assert p.render(DeviceVars(locale="fr-CA"))[1].title == "Bonjour"
    assert p.render(DeviceVars(locale="fr-CA"))[1].body == "Hi"
    assert p.render(DeviceVars(locale="en"))[1].title == "Hello"
    assert Personalized.from_request({"notification": {"title": "x"}}) is None


def test_check_body_compiles_every_field() -> None:
    check_body(TemplateBody(title="{{ data.a }}"))
    with pytest.raises(TemplateError) as caught:
        check_body(msgspec.convert({"locales": {"de": {"data": {"k": "{% for %}"}}}}, TemplateBody))
    assert caught.value.field == "locales.de.data.k"


async def test_render_targets_groups_devices_by_content_and_fails_them_alone() -> None:
    from pushgate.engine.rendering import RenderCache
    from pushgate.providers.base import Target

    devices = {
        "dev_a": DeviceVars(id="dev_a", user="u", locale="de-AT", meta={"name": "Ann"}),
        "dev_b": DeviceVars(id="dev_b", user="u", locale="de", meta={"name": "Ann"}),
        "dev_c": DeviceVars(id="dev_c", user="u", locale="pt-BR", meta={"name": "Ann"}),
        "dev_d": DeviceVars(id="dev_d", user="u", locale="de"),  # no meta.name
    }
    reads: list[list[str]] = []

    async def read(ids: Any) -> dict[str, DeviceVars]:
        reads.append(list(ids))
        return {i: devices[i] for i in ids}

    cache = RenderCache(read_vars=read)
    request = {
        "template": {"id": "t", "version": 1, "body": BODY, "data": {"order": "A1"}},
        "localizations": {},
    }
    request["localizations"] = {"pt-BR": {"shipped": "enviado"}}
    targets = [Target(i, "fcm_" + i) for i in devices]
    groups = await cache.render_targets("pub_1", "fcm", request, 0.0, targets)
    assert reads == [list(devices)]  # one read for the chunk
    shape = [([t.recipient_id for t in g.targets], g.locale, g.failure is None) for g in groups]
    assert shape == [(["dev_a", "dev_b"], "de", True), (["dev_c"], "pt-BR", True), (["dev_d"], None, False)]
    failure = groups[2].failure
    assert failure is not None and failure.error_code == "template_error"
    assert failure.error_message == (
        "template.locales.de.title: device.meta.name is undefined (give it, or use '| default(...)')"
    )
    assert groups[0].rendered["notification"]["title"] == "Hallo Ann"


async def test_render_targets_of_a_plain_publish_is_its_one_rendering() -> None:
    from pushgate.engine.rendering import RenderCache
    from pushgate.providers.base import Target

    async def never(ids: Any) -> dict[str, DeviceVars]:
        raise AssertionError("a plain publish reads no device")

    cache = RenderCache(read_vars=never)
    request = {"notification": {"title": "x"}}
    targets = [Target("dev_a", "fcm_a"), Target("dev_b", "fcm_b")]
    (group,) = await cache.render_targets("pub_2", "fcm", request, 0.0, targets)
    assert group.targets == targets and group.failure is None
    assert group.rendered is cache.get("pub_2", "fcm", request, 0.0)


def test_native_fragments_are_rendered_and_replace_the_publishs_own() -> None:
    body = {
        "title": "t",
        "providers": {"apns": {"payload": {"order": "{{ data.order }}", "n": 1}}},
        "locales": {
            "de": {
                "providers": {"fcm": {"message": {"android": {"ttl": "{{ l10n.ttl }}"}}}},
                "l10n": {"ttl": "60s"},
            }
        },
    }
    request: dict[str, Any] = {
        "notification": {},
        "providers": {
            "apns": {"headers": {"apns-priority": "5"}},
            "webpush": {"headers": {"Urgency": "low"}},
        },
        "template": {"id": "t", "version": 1, "body": body, "data": {"order": "A1"}},
    }
    p = Personalized.from_request(request)
    assert p is not None
    _, _, overrides = p.render(DeviceVars(locale="de"))
    assert overrides.apns is not None and overrides.apns.payload == {"order": "A1", "n": 1}
    assert overrides.apns.headers is None  # the template's apns replaces the publish's
    assert overrides.webpush is not None and overrides.webpush.headers == {"Urgency": "low"}
    assert overrides.fcm is not None and overrides.fcm.message == {"android": {"ttl": "60s"}}
    _, _, overrides = p.render(DeviceVars(locale="fr"))
    assert overrides.fcm is None


def test_a_rendered_value_a_field_refuses_names_the_field() -> None:
    p = _personal({"title": "{{ data.t }}"}, {"t": "x" * 2000})
    with pytest.raises(TemplateError) as caught:
        p.render(DeviceVars())
    assert caught.value.field == "template.title"
    assert "the rendered value is refused: Expected `str` of length <= 1024" in caught.value.reason


def test_a_template_that_reads_no_device_renders_once_per_locale() -> None:
    p = _personal(
        {"title": "{{ data.x }}", "locales": {"de": {"title": "{{ l10n.x }}", "l10n": {"x": "X"}}}}, {"x": 1}
    )
    assert p.device_free
    first = p.render(DeviceVars(id="dev_1", locale="de-AT"))
    assert first[1].title == "X"
    assert p.render(DeviceVars(id="dev_2", locale="de")) is first  # the same rendering, reused
    assert p.render(DeviceVars(id="dev_3"))[1].title == "1"
    assert not _personal({"title": "{{ data.x }}", "data": {"k": "{{ user.id }}"}}, {"x": 1}).device_free
    assert not _personal({"locales": {"de": {"body": "{{ device.meta.x }}"}}}, {}).device_free


# Review of issue 12, finding 1: ``bytes``/``int`` methods bypassed the output bound.
@pytest.mark.parametrize(
    "source",
    [
        "{{ ('x'.encode().ljust(100000000)) | length }}",
        "{{ 'x'.encode() }}",
        "{{ (1).to_bytes(100000000, 'big') | length }}",
        "{{ (1).to_bytes(2 ** 40, 'big') }}",
        "{{ data.x.encode().zfill(100000000) | length }}",
        "{{ data.x.encode().center(100000000) | length }}",
        "{{ data.x.encode().expandtabs(100000000) | length }}",
        "{{ (5).bit_length() }}",
        "{{ data.l.copy() }}",
    ],
)
def test_only_a_short_list_of_attributes_is_reachable(source: str) -> None:
    with pytest.raises(TemplateError, match="not allowed by the sandbox"):
        render_field("template.title", source, _vars(x="x", l=[1, 2]))


def test_allowed_attributes_still_work() -> None:
    v = _vars(x=" Ab ", l=["a", "b"])
    assert render_field("f", "{{ data.x.strip().lower() }}|{{ data.x.startswith(' A') }}", v) == "ab|True"
    assert render_field("f", "{{ data.x.split() | length }}", v) == "1"
    source = (
        "{% for i in data.l %}{{ loop.index }}{{ i.upper() }}{% if not loop.last %},{% endif %}{% endfor %}"
    )
    assert render_field("f", source, v) == "1A,2B"


@pytest.mark.parametrize("source", ["{{ 5 % data.x }}", "{{ data.x % 5 }}", "{{ '%999999999d' % 1 }}"])
def test_percent_is_for_numbers_only(source: str) -> None:
    with pytest.raises(TemplateError, match="'%'"):
        render_field("f", source, _vars(x="x"))


def test_memory_error_in_a_rendering_is_a_template_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A filter standing for any operation that runs out of memory (what ``(1).to_bytes(2**40)``
    # did before it was refused): the rendering fails with a TemplateError, never a crash.
    from pushgate.domain import templating

    def boom(value: Any) -> Any:
        raise MemoryError

    monkeypatch.setitem(templating.ENV.filters, "upper", boom)
    with pytest.raises(TemplateError, match="MemoryError"):
        render_field("f", "{{ 'memory' | upper }}", _vars())


# Finding 2: no CPU budget.
def test_a_cpu_heavy_template_is_cut_by_the_render_deadline() -> None:
    source = (
        "{% for c in 'x'*512 %}{% if (('y'*8192)|list|sort|sort|sort|length) < 0 %}{% endif %}{% endfor %}"
    )
    with pytest.raises(TemplateError) as caught:
        render_field("template.body", source, _vars())
    assert caught.value.field == "template.body"
    assert "took longer than" in caught.value.reason and caught.value.timed_out


def test_a_cpu_heavy_device_is_cut_at_dispatch_and_the_others_render() -> None:
    heavy = (
        "{% for c in 'x'*512 %}{% if (('y'*8192)|list|sort|sort|sort|length) < 0 %}{% endif %}{% endfor %}"
    )
    p = _personal({"title": "{% if device.meta.x == 'slow' %}" + heavy + "{% endif %}ok"}, {})
    with pytest.raises(TemplateError, match="took longer than"):
        p.render(DeviceVars(id="dev_1", meta={"x": "slow"}))
    assert p.render(DeviceVars(id="dev_2", meta={"x": "fast"}))[1].title == "ok"


def test_after_enough_cut_renderings_a_publish_gives_up_fast() -> None:
    from pushgate.domain.personalize import MAX_TIMEOUTS

    heavy = (
        "{% for c in 'x'*512 %}{% if (('y'*8192)|list|sort|sort|sort|length) < 0 %}{% endif %}{% endfor %}"
    )
    p = _personal({"title": "{% if device.meta.x == 'slow' %}" + heavy + "{% endif %}ok"}, {})
    for i in range(MAX_TIMEOUTS):
        with pytest.raises(TemplateError, match="took longer than"):
            p.render(DeviceVars(id=f"dev_{i}", meta={"x": "slow"}))
    with pytest.raises(TemplateError, match="gave up"):
        p.render(DeviceVars(id="dev_last", meta={"x": "slow"}))


# Finding 5: deeply nested ``template.data``.
def test_data_depth() -> None:
    from pushgate.domain.templating import MAX_DATA_DEPTH, data_depth

    nested: Any = "leaf"
    for _ in range(5000):
        nested = {"a": [nested]}
    assert data_depth(nested) > MAX_DATA_DEPTH  # no RecursionError
    assert data_depth({"a": 1, "b": [1, {"c": 2}]}) == 3
    assert data_depth({}) == 1 and data_depth("x") == 0


# Finding 8: inline localization keys other than title/body, without a template.
def test_unknown_inline_localization_keys_are_named() -> None:
    from pushgate.domain.personalize import unknown_localization_keys

    given = {"de": {"titel": "Hallo", "body": "x"}, "fr": {"title": "Salut"}}
    assert unknown_localization_keys(given, templated=False) == ["localizations.de.titel"]
    assert unknown_localization_keys(given, templated=True) == []
