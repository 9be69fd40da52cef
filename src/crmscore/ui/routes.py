"""The operations page: a FastAPI router mounted on the BentoML service (`api.include_router(ui_router)` in
crmscore.serving.service), pages rendered on the server with Jinja2 and inline SVG charts.

/ui/login                sign in with an API key (once per browser session; see crmscore.ui.auth)
/ui/customers[?id=...]   search; /ui/customers/{id}: scores, waterfalls, reasons, timeline, actions
/ui/models/{name}        version, metrics against baselines, global drivers, beeswarm, scores by segment
/ui/segments             customers per RFM segment and lifecycle stage, moves between two snapshots
/ui/static/ui.css        the style sheet (open)

Language: `?lang=zh|en` (remembered in a cookie), else the browser's Accept-Language. Handlers get the
worker's ScoringEngine through the `get_engine` dependency (the running BentoML service's engine).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
import weakref
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from crmscore.explain.reasons import format_value_in
from crmscore.features.translations import description
from crmscore.models.evaluation import LOWER_IS_BETTER
from crmscore.features.segments import LIFECYCLE_STAGES, RFM_SEGMENTS
from crmscore.scoring.online import RequestError, ScoringEngine
from crmscore.scoring.runtime import ServedModel
from crmscore.explain import i18n
from crmscore.ui import charts
from crmscore.ui.actions import load_rules
from crmscore.ui.auth import COOKIE, Authenticator, Session, load_secret
from crmscore.ui.settings import UISettings
from crmscore.ui.views import PageViews

log = logging.getLogger("crmscore.ui")
router = APIRouter(prefix="/ui", include_in_schema=False)
LANG_COOKIE = "crmscore_lang"
SEGMENT_ORDER = [name for _, name in RFM_SEGMENTS] + ["prospect"]
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def get_engine() -> ScoringEngine:
    """The running service's engine (one per BentoML worker)."""
    import bentoml

    return bentoml.get_current_service().engine


_VIEWS: "weakref.WeakKeyDictionary[ScoringEngine, PageViews]" = weakref.WeakKeyDictionary()


def page_views(engine: ScoringEngine) -> PageViews:
    """The page's view models of an engine, one per engine so that model overviews stay cached."""
    views = _VIEWS.get(engine)
    if views is None:
        views = _VIEWS[engine] = PageViews(engine)
    return views


@lru_cache(maxsize=1)
def ui_settings() -> UISettings:
    return UISettings()


@lru_cache(maxsize=1)
def authenticator() -> Authenticator:
    s = ui_settings()
    return Authenticator(s.home, s.api_keys, load_secret(s.home, s.ui_secret), s.ui_session_hours)


@lru_cache(maxsize=1)
def templates() -> Environment:
    env = Environment(loader=PackageLoader("crmscore.ui", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v, d=0: "—" if v is None else f"{v:,.{d}f}"
    env.filters["pct"] = lambda v, d=1: "—" if v is None else f"{v * 100:.{d}f}%"
    return env


# -- request context --------------------------------------------------------------------------------
class Page:
    """What every page needs: the language, the signed-in session, a translator and the response's cookies."""

    def __init__(self, request: Request):
        self.request = request
        query_lang = i18n.normalize(request.query_params.get("lang", "") or "")
        self.set_lang = query_lang
        self.lang = i18n.pick_language(query_lang, request.cookies.get(LANG_COOKIE),
                                       request.headers.get("accept-language"))
        self.session: Session | None = authenticator().check(request.cookies.get(COOKIE))
        self.request_id = (request.scope.get("state") or {}).get("request_id") or uuid.uuid4().hex

    def t(self, key: str, **values: Any) -> str:
        return i18n.text(self.lang, key, **values)

    def render(self, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        path = self.request.url.path
        other = "en" if self.lang == "zh" else "zh"
        html = templates().get_template(template).render(
            t=self.t, lang=self.lang, session=self.session, path=path, other_lang=other,
            other_lang_name=i18n.text(other, "lang_name"), switch_url=f"{path}?lang={other}", **ctx)
        resp = HTMLResponse(html, status_code=status, headers=HEADERS)
        if self.set_lang:
            resp.set_cookie(LANG_COOKIE, self.set_lang, max_age=365 * 86400, path="/ui", samesite="lax",
                            httponly=True, secure=self.request.url.scheme == "https")
        return resp



def signed_in(request: Request) -> Page:
    """The page of a signed-in browser; others are sent to the sign-in form (and back here after it)."""
    page = Page(request)
    if page.session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(303, "sign in first", headers={"Location": f"/ui/login?next={quote(target, safe='')}"})
    return page


def _safe_next(target: str | None) -> str:
    """Only paths of this page (no open redirect)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/customers"


# -- sign-in ---------------------------------------------------------------------------------------
@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in ("ui.css",):
        return Response("not found", status_code=404)
    return Response(_static_text(name), media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


@lru_cache(maxsize=4)
def _static_text(name: str) -> str:
    return resources.files("crmscore.ui").joinpath("static").joinpath(name).read_text(encoding="utf-8")


@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/customers", status_code=303)


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002
    page = Page(request)
    if page.session is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return page.render("login.html", next=_safe_next(next), error=None,
                       hours=f"{authenticator().hours:g}")


@router.post("/login")
async def login(request: Request) -> Response:
    page = Page(request)
    length = request.headers.get("content-length", "0")
    if not length.isdigit() or int(length) > 10_000:
        return Response("sign-in form too large", status_code=413)
    form = parse_qs((await request.body())[:10_000].decode(errors="replace"))
    key = (form.get("key") or [""])[0]
    target = _safe_next((form.get("next") or [None])[0])
    cookie = authenticator().login(key) if key else None
    if cookie is None:
        error = page.t("login.missing") if not key.strip() else page.t("login.invalid")
        return page.render("login.html", status=401, next=target, error=error, hours=f"{authenticator().hours:g}")
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(COOKIE, cookie, path="/ui", httponly=True, samesite="lax",
                    secure=request.url.scheme == "https")
    return resp


@router.post("/logout")
def logout() -> RedirectResponse:
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/ui")
    return resp


# -- customers ---------------------------------------------------------------------------------------
@router.get("/customers")
def customer_search(id: str | None = None, page: Page = Depends(signed_in),  # noqa: A002
                    engine: ScoringEngine = Depends(get_engine)) -> Response:
    if id and id.strip():
        return RedirectResponse(f"/ui/customers/{quote(id.strip(), safe='')}", status_code=303)
    return page.render("search.html", examples=_examples(engine), as_of=_date(engine.store.meta().get("as_of")))


def _examples(engine: ScoringEngine, n: int = 5) -> list[str]:
    out = []
    ids = engine.store.sample_ids(60)
    found = engine.store.get_many(ids)
    for cid in ids:
        if found.get(cid, {}).get("recency_days") is not None:
            out.append(cid)
        if len(out) == n:
            break
    return out


@router.get("/customers/{customer_id}")
def customer_page(customer_id: str, page: Page = Depends(signed_in),
                  engine: ScoringEngine = Depends(get_engine)) -> Response:
    try:
        view = page_views(engine).customer_view(customer_id, page.request_id, page.lang)
    except RequestError as exc:
        if exc.status in (404, 422):  # unknown, or an id too long to be one (shown cut to the limit)
            return page.render("search.html", status=exc.status, examples=_examples(engine), missing=customer_id[:128],
                               as_of=_date(engine.store.meta().get("as_of")))
        raise
    return page.render("customer.html", **customer_context(view, engine, page))


def population_text(model: ServedModel | None, page: Page) -> str:
    """A model's population rule in the page's language (crmscore.models.population.PopulationRule)."""
    rule = getattr(model, "population", None)
    if rule is None or (rule.within_days is None and not rule.buyers_only):
        return page.t("customer.population_all")
    if rule.within_days is not None:
        return page.t("customer.population_within", days=rule.within_days)
    return page.t("customer.population_buyers")


def customer_context(view: dict[str, Any], engine: ScoringEngine, page: Page) -> dict[str, Any]:
    lang, t = page.lang, page.t
    actions = ui_settings().actions
    rules = load_rules(str(actions) if actions else None)
    feats = view["features"]
    profile = view["profile"]
    scores = []
    for s in view["scores"]:
        model = engine.models.get(s["model"])
        item = {"model": s["model"], "title": model_title(s["model"], lang), "error": s.get("error"),
                "version": t("customer.version", name=s["model"], version=s.get("version"), alias=s.get("alias"))}
        if s.get("error") is None:
            binary = s.get("kind", "binary") == "binary"
            probability = binary or s.get("kind") == "multilabel"  # next-category: the top category's probability
            fmt = (lambda v: charts.pct(v, 1)) if probability else (lambda v: f"{v:,.2f}")
            band = rules.band(s)
            item.update(value=fmt(s["score"]), band=band, band_label=label(lang, "band", band) if band else None,
                        decile=s.get("decile"))
            if s.get("in_population") is False:  # scored all the same; the page says the model was not made for them
                item["outside_population"] = t("customer.outside_population",
                                               population=population_text(model, page))
            ranked = (s.get("details") or {}).get("next_categories") or []
            if ranked:
                item["next_categories"] = ", ".join(f"{c['category']} {charts.pct(c['probability'], 0)}"
                                                    for c in ranked[:5])
            if s.get("waterfall"):
                labels = [step_label(model, st["feature"], feats, lang) for st in s["waterfall"]["steps"]]
                item["waterfall"] = charts.waterfall_svg(
                    s["waterfall"], labels, base_label=t("chart.base"),
                    other_label=t("chart.other", n=s["waterfall"]["other"]["count"]),
                    final_label=f"{t('chart.final')}: {fmt(s['score'])}", unit_label=t("chart.pts") if binary else "",
                    fmt=(lambda v: charts.pct(v, 1)) if binary else (lambda v: f"{v:,.0f}"),
                    delta=charts.points if binary else (lambda d: f"{d:+,.2f}"), title=item["title"])
            # a reason's effect (crmscore.explain.effects) is its step in the waterfall: the list and the chart agree
            item["reasons"] = [{"text": r["text"], "up": r["contribution"] > 0, "feature": r["feature"],
                                "change": reason_change(r, t("chart.pts"))}
                               for r in s.get("reasons") or []]
        scores.append(item)
    as_of = _date(view["as_of"])
    return {"customer_id": view["customer_id"], "as_of": as_of, "scores": scores,
            "profile": profile_cards(profile, lang), "timeline": timeline_context(view.get("timeline"), as_of, page),
            "actions": rules.suggest(profile, view["scores"], feats, lang)}


def reason_change(reason: dict[str, Any], points_label: str) -> str:
    """A reason's effect as the page shows it: percentage points (probability models) or the score's unit."""
    if reason.get("probability_change") is not None:
        return f"{charts.points(reason['probability_change'])} {points_label}"
    if reason.get("change") is not None:
        return f"{reason['change']:+,.2f}"
    return ""


def label(lang: str, group: str, name: str | None) -> str:
    """A segment's, stage's or band's name in lang ('segment', 'lifecycle', 'band'); unknown names as they are."""
    key = f"{group}.{name}"
    return i18n.text(lang, key) if i18n.has("en", key) else str(name)


def model_title(name: str, lang: str) -> str:
    if name.startswith("lookalike-"):
        return f"{i18n.text(lang, 'models.lookalike')}: {name[len('lookalike-'):]}"
    if name.startswith("uplift-"):
        return f"{i18n.text(lang, 'models.uplift')}: {name[len('uplift-'):]}"
    key = f"models.{name}"
    return i18n.text(lang, key) if i18n.has("en", key) else name


def step_label(model: Any, feature: str, feats: dict[str, Any], lang: str) -> str:
    """'Days since the last purchase: 92 days' in the page's language."""
    decl = model.bundle.feature_set.get(feature) if model is not None else None
    if decl is None:
        return f"{feature}: {feats.get(feature)}"
    desc = description(decl, lang)
    desc = desc[:1].upper() + desc[1:]
    sep = "：" if lang == "zh" else ": "
    return f"{desc}{sep}{format_value_in(feats.get(feature), decl.unit, lang)}"


def profile_cards(profile: dict[str, Any], lang: str) -> list[dict[str, str]]:
    def t(key: str, **kw: Any) -> str:
        return i18n.text(lang, key, **kw)

    cards = []
    seg = profile.get("rfm_segment")
    if seg:
        cards.append({"label": t("customer.rfm_segment"), "value": label(lang, "segment", seg),
                      "note": t("customer.rfm_score", score=profile.get("rfm_score") or "—"), "cls": f"seg-{seg}"})
    stage = profile.get("lifecycle_stage")
    if stage:
        cards.append({"label": t("customer.lifecycle"), "value": label(lang, "lifecycle", stage), "note": "",
                      "cls": f"stage-{stage}"})
    if profile.get("recency_days") is not None:
        cards.append({"label": t("customer.recency"), "value": f"{profile['recency_days']:.0f}", "note": "", "cls": ""})
    if profile.get("frequency_365d") is not None:
        cards.append({"label": t("customer.orders_365"), "value": f"{profile['frequency_365d']:,.0f}", "note": "",
                      "cls": ""})
    if profile.get("monetary_365d") is not None:
        cards.append({"label": t("customer.spend_365"), "value": f"{profile['monetary_365d']:,.2f}", "note": "",
                      "cls": ""})
    return cards


def timeline_context(timeline: dict[str, Any] | None, as_of: str, page: Page) -> dict[str, Any]:
    t = page.t
    if timeline is None:
        return {"svg": None, "summary": t("customer.no_timeline")}
    days = timeline.get("days") or []
    if not days:
        return {"svg": None, "summary": t("customer.timeline_none", date=as_of)}
    orders = sum(o for _, o, _ in days)
    spend = sum(a for _, _, a in days)
    last = days[-1][0]
    gap = (dt.date.fromisoformat(timeline["to"]) - dt.date.fromisoformat(last)).days + 1
    months = t("months").split(",")
    svg = (charts.timeline_svg(timeline, months=months, title=t("customer.timeline"), spend_label=t("chart.spend"),
                               width=720, cls="wide")
           + charts.timeline_svg(timeline, months=months, title=t("customer.timeline"), spend_label=t("chart.spend"),
                                 width=340, cls="narrow"))
    return {"svg": svg, "summary": t("customer.timeline_summary", orders=f"{orders:,}", spend=f"{spend:,.2f}",
                                     date=as_of, last=t("customer.last_purchase", date=last, days=gap))}


def _date(value: Any) -> str:
    return str(value)[:10] if value else "—"


# -- models ------------------------------------------------------------------------------------------
@router.get("/models")
def models_page(page: Page = Depends(signed_in), engine: ScoringEngine = Depends(get_engine)) -> Response:
    names = sorted(engine.models)
    if len(names) == 1:
        return RedirectResponse(f"/ui/models/{quote(names[0], safe='')}", status_code=303)
    return page.render("models.html", models=[{"name": n, "title": model_title(n, page.lang),
                                               **engine.models[n].describe()} for n in names],
                       warnings=engine.warnings)


@router.get("/models/{name}")
def model_page(name: str, page: Page = Depends(signed_in), engine: ScoringEngine = Depends(get_engine)) -> Response:
    try:
        ov = page_views(engine).model_overview(name)
    except RequestError as exc:
        return page.render("models.html", status=exc.status, missing=name, warnings=engine.warnings,
                           models=[{"name": n, "title": model_title(n, page.lang), **engine.models[n].describe()}
                                   for n in sorted(engine.models)])
    return page.render("model.html", **model_context(ov, engine.models[name], page))


@router.get("/models/{name}/report")
def campaign_report(name: str, page: Page = Depends(signed_in), engine: ScoringEngine = Depends(get_engine)) -> Response:
    """An uplift model's campaign report (crmscore.models.uplift_report), as logged with its run: self-contained
    HTML kept in the model's bundle, so it shows without the tracking server."""
    try:
        model = engine.get_model(name)
    except RequestError:
        raise HTTPException(404, f"no model {name!r} is served") from None
    html = model.bundle.info.get("campaign_report")
    if not html:
        raise HTTPException(404, f"{name} has no campaign report (only uplift models have one)")
    return HTMLResponse(html, headers=HEADERS)


def model_context(ov: dict[str, Any], model: Any, page: Page) -> dict[str, Any]:
    lang, t = page.lang, page.t
    fs = model.bundle.feature_set
    binary = ov["kind"] == "binary"

    def desc(n: str) -> str:
        f = fs.get(n)
        text = description(f, lang) if f is not None else n
        return text[:1].upper() + text[1:]

    table = ov["metrics"]
    columns = [t("model.model") if c == "model" else t("model.baseline", name=c) for c in table["columns"]]
    rows = []
    for metric, *values in table["rows"]:
        finite = [v for v in values if isinstance(v, (int, float)) and v == v]
        lower_better = metric in LOWER_IS_BETTER
        best = (min(finite) if lower_better else max(finite)) if finite else None
        rows.append({"label": t(f"metrics.{metric}") if i18n.has("en", f"metrics.{metric}") else metric,
                     "cells": [{"text": "—" if not isinstance(v, (int, float)) or v != v else f"{v:.3f}",
                                "best": v == best and best is not None} for v in values]})
    importance = ov["importance"]
    bars = charts.hbar_svg([(i["feature"], i["value"], desc(i["feature"])) for i in importance],
                           title=t("model.drivers"), cls="drivers")
    swarm = charts.beeswarm_svg(ov["beeswarm"], [r["feature"] for r in ov["beeswarm"]], title=t("model.beeswarm"),
                                axis_label=t("chart.shap"), low_label=t("chart.low"), high_label=t("chart.high"),
                                value_label=t("chart.feature_value"), missing_label=t("chart.missing")) \
        if ov["beeswarm"] else None
    uplift = ov["kind"] == "uplift"  # a lift in points of probability
    fmt = (lambda v: charts.pct(v, 0)) if binary else (lambda v: charts.pct(v, 1)) if uplift else (lambda v: f"{v:,.0f}")
    by_seg = sorted(ov["by_segment"], key=lambda g: SEGMENT_ORDER.index(g["group"]) if g["group"] in SEGMENT_ORDER else 99)
    by_stage = sorted(ov["by_stage"], key=lambda g: LIFECYCLE_STAGES.index(g["group"])
                      if g["group"] in LIFECYCLE_STAGES else 99)
    seg_svg = charts.boxplot_svg(by_seg, [label(lang, "segment", g["group"]) for g in by_seg], title=t("model.by_segment"),
                                 fmt=fmt, unit_max=1.0 if binary else None) if by_seg else None
    stage_svg = charts.boxplot_svg(by_stage, [label(lang, "lifecycle", g["group"]) for g in by_stage], title=t("model.by_stage"),
                                   fmt=fmt, unit_max=1.0 if binary else None) if by_stage else None
    d = ov["model"]
    facts = [(t("model.version"), d["version"]), (t("model.alias"), d["alias"]), (t("model.source"), d["source"]),
             (t("model.trained_at"), d.get("trained_at") or "—"), (t("model.test_cutoff"), _date(d.get("test_cutoff"))),
             (t("model.feature_set"), d.get("feature_set_version") or "—"), (t("model.features"), d.get("features"))]
    return {"name": d["name"], "title": model_title(d["name"], lang), "facts": facts, "grade": table.get("grade"),
            "columns": columns, "rows": rows, "drivers_svg": bars, "swarm_svg": swarm, "seg_svg": seg_svg,
            "stage_svg": stage_svg, "sampled": ov["sampled"], "scored": ov["scored"],
            "population": ov.get("population"),
            "campaign_report": bool(model.bundle.info.get("campaign_report")),
            "drivers": [{"feature": i["feature"], "desc": desc(i["feature"]), "value": i["value"]}
                        for i in importance[:10]]}


# -- segments ----------------------------------------------------------------------------------------
@router.get("/segments")
def segments_page(page: Page = Depends(signed_in), engine: ScoringEngine = Depends(get_engine)) -> Response:
    return page.render("segments.html", **segments_context(page_views(engine).segments_overview(), page))


def segments_context(ov: dict[str, Any], page: Page) -> dict[str, Any]:
    t = page.t
    out: dict[str, Any] = {"has_data": bool(ov.get("rfm")), "as_of": _date(ov.get("as_of")),
                           "previous_as_of": _date(ov.get("previous_as_of")) if ov.get("previous_as_of") else None,
                           "source": t(f"segments.source.{ov['previous_source']}") if ov.get("previous_source") else None,
                           "sections": []}
    for key, order, prefix, title, col_title, moves_title in (
            ("lifecycle", list(LIFECYCLE_STAGES), "lifecycle", "segments.lifecycle", "segments.stage",
             "segments.transitions_lifecycle"),
            ("rfm", SEGMENT_ORDER, "segment", "segments.rfm", "segments.segment", "segments.transitions_rfm")):
        now = ov.get(key) or {}
        before = ov.get(f"{key}_previous")
        if not now:
            continue
        cats = [c for c in order if c in now or (before and c in before)] + \
               sorted(c for c in {*now, *(before or {})} if c not in order)
        total = sum(now.values()) or 1
        rows = [{"name": c, "label": label(page.lang, prefix, c), "count": now.get(c, 0), "share": now.get(c, 0) / total,
                 "previous": None if before is None else before.get(c, 0),
                 "change": None if before is None else now.get(c, 0) - before.get(c, 0)} for c in cats]
        bars = charts.paired_bars_svg([(r["label"], r["count"], r["previous"]) for r in rows], title=t(title),
                                      current_label=t("chart.current"), previous_label=t("chart.previous"))
        section = {"key": key, "title": t(title), "col_title": t(col_title), "rows": rows, "svg": bars,
                   "matrix": None, "moves": [], "moves_title": t(moves_title)}
        trans = ov.get(f"{key}_transitions")
        if trans:
            frm = [c for c in cats if any(a == c for a, _, _ in trans)] + (["__new__"] if any(a is None for a, _, _ in trans) else [])
            to = [c for c in cats if any(b == c for _, b, _ in trans)] + (["__gone__"] if any(b is None for _, b, _ in trans) else [])
            cell = {(a or "__new__", b or "__gone__"): n for a, b, n in trans}
            peak = max(n for _, _, n in trans) or 1

            def name(c: str) -> str:
                return (t("segments.new") if c == "__new__" else t("segments.gone") if c == "__gone__"
                        else label(page.lang, prefix, c))

            section["matrix"] = {
                "cols": [name(c) for c in to],
                "rows": [{"label": name(a), "cells": [{"n": cell.get((a, b), 0), "same": a == b,
                                                       "heat": min(9, int(9 * cell.get((a, b), 0) / peak + 0.999))}
                                                      for b in to]} for a in frm]}
            moves = sorted(((n, a, b) for (a, b), n in cell.items() if a != b), reverse=True)[:8]
            section["moves"] = [t("segments.move", **{"from": name(a), "to": name(b), "n": f"{n:,}"})
                                for n, a, b in moves]
        out["sections"].append(section)
    return out


# -- monitoring --------------------------------------------------------------------------------------
@router.get("/monitoring")
def monitoring_page(page: Page = Depends(signed_in), engine: ScoringEngine = Depends(get_engine)) -> Response:
    from crmscore.monitoring.gauges import read_latest

    return page.render("monitoring.html", **monitoring_context(read_latest(engine.home), page))


def monitoring_context(latest: dict[str, Any] | None, page: Page, top: int = 15) -> dict[str, Any]:
    """The last `crmscore monitor` result: per model its verdict, the drift table (score first, then the
    features with the largest PSI) and realised figures beside the promoted ones as a chart."""
    t = page.t
    models = []
    for m in (latest or {}).get("models", []):
        feats = sorted(m.get("features", []), key=lambda f: -(f.get("psi") or 0))[:top]
        drift = [{"name": t("monitoring.score") if f["kind"] == "score" else f["feature"], "feature": f["feature"],
                  "psi": f.get("psi"), "p": f.get("p_value"), "test": f.get("test"), "status": f["status"],
                  "status_label": t(f"monitoring.status.{f['status']}")}
                 for f in ([m["score"]] if m.get("score") else []) + feats]
        realised = (m.get("realised") or {})
        overall = [g for g in realised.get("groups", []) if g["segment"] == "all"]
        promised = realised.get("promised", {})
        bars = []
        for g in overall:
            for metric in ("roc_auc", "pr_auc"):
                now, then = g.get(metric), promised.get(g["model_version"], {}).get(metric)
                if now is not None:
                    bars.append((f"v{g['model_version']} {t('monitoring.metric.' + metric)}", round(now, 3),
                                 None if then is None else round(then, 3)))
        svg = charts.paired_bars_svg(bars, title=t("monitoring.realised_chart"), current_label=t("monitoring.realised"),
                                     previous_label=t("monitoring.promised"), label_width=140) if bars else None
        models.append({"model": m["model"], "title": model_title(m["model"], page.lang), "version": m["version"],
                       "as_of": m["as_of"], "retrain": m.get("retrain"), "reasons": m.get("verdict", {}).get("reasons", []),
                       "drift": drift, "svg": svg, "reference": m.get("reference", True),
                       "waiting": realised.get("waiting"), "waiting_until": realised.get("waiting_until"),
                       "judged": realised.get("judged"), "has_realised": bool(realised)})
    return {"models": models, "has_data": bool(models)}
