"""The operations page: translations, reason texts in Chinese, SVG charts, action rules and sessions as
units; the engine's waterfall, snapshot transitions and the evaluation report on a trained model; then
end-to-end in a real headless Chromium against a real `crmscore serve` (sign in, search, waterfall and
reasons, Chinese, model and segments views, a phone-sized screen). Screenshots go to test-artifacts/ui/
(and to docs/screenshots/ with CRMSCORE_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from crmscore.config import load_config
from crmscore.data import load_customer_data

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "ui"
API_KEY = "crm_ui_test_key"
SVG = "{http://www.w3.org/2000/svg}"


# -- translations -------------------------------------------------------------------------------------
def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return out


def test_translation_files_have_the_same_keys():
    from crmscore.explain import i18n

    en, zh = _keys(i18n.catalog("en")), _keys(i18n.catalog("zh"))
    zh_only = {k for k in zh if k.split(".")[0] in ("reason", "effects")}  # Chinese grammar of reason texts
    assert en == zh - zh_only, f"missing in zh: {sorted(en - zh)}; missing in en: {sorted(zh - zh_only - en)}"
    assert i18n.text("zh", "segment.champions") == "重要价值客户"
    assert i18n.text("zh", "segments.source.recomputed").startswith("发布时")  # keys with dots
    assert i18n.text("zh", "no.such.key") == "no.such.key"
    assert i18n.text("en", "customer.title", id="C1") == "Customer C1"


def test_language_choice():
    from crmscore.explain.i18n import pick_language

    assert pick_language("zh", "en", "en-US") == "zh"
    assert pick_language(None, "zh", "en-US") == "zh"
    assert pick_language(None, None, "en-US,en;q=0.9,zh-CN;q=0.8") == "en"
    assert pick_language(None, None, "fr-FR, zh-CN;q=0.9, en;q=0.5") == "zh"
    assert pick_language("xx", None, "zh-Hans") == "zh"
    assert pick_language(None, None, None) == "en"


def test_every_declared_feature_has_a_chinese_description():
    from crmscore.features.definitions import Vocabulary, declare
    from crmscore.features.translations import translated

    vocab = Vocabulary(("pet_food", "Baby & Kids"), ("app", "store"), ("coupon_use",), (("age band", "text"), ("income", "number")))
    feats = declare([30, 90, 180, 365], vocab, btyd_horizons=[30, 90])
    missing = [f.name for f in feats if not translated(f, "zh")]
    assert not missing, f"no Chinese description for {missing} (add a pattern to crmscore.features.translations.ZH)"
    zh = {f.name: translated(f, "zh") for f in feats}
    assert zh["frequency_90d"] == "近90天的订单数" and zh["category_share_baby_kids"] == "近365天在Baby & Kids上的消费占比"
    assert zh["attr_age_band"] == "客户属性“age band”" and zh["evening_share"] == "近365天17:00以后下单的占比"
    assert zh["btyd_expected_orders_30d"] == "按购买节奏预计未来30天的订单数"


def test_reason_text_english_unchanged_and_chinese():
    from crmscore.explain.reasons import reason_text
    from crmscore.features.definitions import Vocabulary, declare

    fs = {f.name: f for f in declare([30, 90, 180, 365], Vocabulary(categories=("pet_food",)))}
    row = {"recency_days": 92.0, "recency_gap_ratio": 3.1}
    up, down = "raises churn risk", "lowers churn risk"
    cases = [("recency_gap_ratio", 3.1, 1.0, "No purchase for 92 days, about 3.1 times this customer's usual gap: raises churn risk",
              "已92天未购买，约为该客户平常购买间隔的3.1倍，提高流失风险"),
             ("frequency_90d", 16, -1.0, "16 orders in the last 90 days: lowers churn risk", "近90天下单16次，降低流失风险"),
             ("gap_std_days", 3.96, -1.0,
              "How irregular the days between purchases are (standard deviation): 4 days: lowers churn risk",
              "购买间隔的不规律程度（标准差）为4天，降低流失风险"),
             ("category_share_pet_food", None, 1.0, "Share of spend on pet_food in the last 365 days: unknown: raises churn risk",
              "近365天在pet_food上的消费占比未知，提高流失风险")]
    for name, value, c, en, zh in cases:
        assert reason_text(fs[name], name, value, c, row, up, down) == en  # English as before, byte for byte
        assert reason_text(fs[name], name, value, c, row, up, down, lang="en") == en
        assert reason_text(fs[name], name, value, c, row, up, down, lang="zh") == zh


def test_every_task_effect_is_translated():
    from crmscore.errors import CrmscoreError
    from crmscore.models.tasks import get_task
    from crmscore.explain import i18n

    effects = []
    for name in ("churn", "next-purchase", "expected-spend", "next-category"):
        try:
            task = get_task(name)
        except CrmscoreError:
            continue
        effects += [task.reason_up.replace("{target}", "baby"), task.reason_down.replace("{target}", "baby")]
    try:
        from crmscore.models import lookalike

        effects += [lookalike.REASON_UP, lookalike.REASON_DOWN]
    except (ImportError, AttributeError):
        pass
    untranslated = [e for e in effects if i18n.effect("zh", e) == e]
    assert effects and not untranslated, f"add these to the 'effects' of explain/i18n/zh.json: {untranslated}"
    assert i18n.effect("zh", "makes buying baby more likely") == "提高购买baby的可能性"


# -- charts ---------------------------------------------------------------------------------------------
def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML: every text is escaped
    assert root.tag == f"{SVG}svg" and root.get("viewBox") and root.find(f"{SVG}title") is not None
    return root


def _classes(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}{tag}") if cls in (e.get("class") or "").split()]


def test_waterfall_svg():
    from crmscore.ui.charts import waterfall_svg

    wf = {"base": 0.30, "final": 0.52, "steps": [
        {"feature": "recency_days", "contribution": 0.8, "start": 0.30, "end": 0.45},
        {"feature": "frequency_90d", "contribution": -0.2, "start": 0.45, "end": 0.41}],
          "other": {"count": 40, "start": 0.41, "end": 0.52}}
    svg = waterfall_svg(wf, ["No purchase for <92> days & more", "16 orders"], base_label="Average",
                        other_label="40 other features", final_label="This customer: 52%", unit_label="pts")
    root = _parse(svg)
    steps = _classes(root, "g", "wf-step")
    assert [s.get("class").split()[1] for s in steps] == ["base", "up", "down", "other", "final"]
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert "No purchase for <92> days & more" in texts and "+15.0 pts" in texts and "-4.0 pts" in texts
    assert "+11.0 pts" in texts and "52%" in texts and "30%" in texts
    up_rect = steps[1].find(f"{SVG}rect")
    assert up_rect.get("fill") == "#c2410c" and float(up_rect.get("width")) > 0


def test_other_charts_are_valid_svg():
    from crmscore.models.charts import line_chart_svg
    from crmscore.ui import charts

    tl = {"from": "2024-01-02", "to": "2024-12-31", "days": [["2024-02-08", 1, 13.7], ["2024-11-30", 2, -5.0]]}
    root = _parse(charts.timeline_svg(tl, months="J F M A M J J A S O N D".split(), title="t", spend_label="spend"))
    assert len(_classes(root, "rect", "purchase")) == 2
    root = _parse(charts.hbar_svg([("recency_days", 0.7, "days since"), ("x" * 60, 0.1, "long")], title="drivers"))
    assert len(_classes(root, "g", "bar")) == 2
    root = _parse(charts.paired_bars_svg([("Champions", 10, 8), ("Loyal", 5, None)], title="c", current_label="now",
                                         previous_label="before"))
    assert len(_classes(root, "g", "count-bar")) == 2
    rows = [{"feature": "a", "shap": list(np.linspace(-1, 1, 50)), "value": charts.value_ranks(np.r_[np.arange(49), np.nan])}]
    root = _parse(charts.beeswarm_svg(rows, ["a"], title="b", axis_label="x", low_label="low", high_label="high",
                                      value_label="value"))
    dots = _classes(root, "circle", "dot")
    assert len(dots) == 50 and dots[-1].get("fill") == "#a3a3a3"  # missing value: grey
    g = {"n": 10, "p10": 0.1, "p25": 0.2, "p50": 0.3, "p75": 0.4, "p90": 0.5}
    root = _parse(charts.boxplot_svg([{"group": "a", **g}], ["中文 segment"], title="box"))
    assert len(_classes(root, "g", "box")) == 1
    root = _parse(line_chart_svg([("model", np.linspace(0, 1, 2000), np.linspace(0, 1, 2000) ** 0.5)],
                                title="ROC", xlabel="fpr", ylabel="tpr", diagonal=True))
    (poly,) = root.iter(f"{SVG}polyline")
    assert len(poly.get("points").split()) <= 402  # long curves are thinned
    assert charts.truncate("流失预警（间隔过长）abc", 10) == "流失预警（…" and charts.truncate("short", 10) == "short"


# -- action rules and sessions ------------------------------------------------------------------------------
def test_action_rules():
    from crmscore.errors import ConfigError
    from crmscore.ui.actions import load_rules, parse_rules

    rules = load_rules()
    churn_high = [{"model": "churn", "score": 0.8, "decile": 1}]
    got = rules.suggest({"lifecycle_stage": "lapsed_30", "rfm_segment": "hibernating"}, churn_high, {}, "en")
    assert [a["id"] for a in got] == ["recall_coupon"] and "recall coupon" in got[0]["action"]
    got = rules.suggest({"lifecycle_stage": "lapsed_30", "rfm_segment": "loyal"}, churn_high, {}, "zh")
    assert [a["id"] for a in got] == ["personal_call", "recall_coupon"] and "电话" in got[0]["action"]
    got = rules.suggest({"lifecycle_stage": "active", "rfm_segment": "hibernating"},
                        [{"model": "churn", "score": 0.1, "decile": 9}], {}, "en")
    assert [a["id"] for a in got] == ["default"]
    lens = rules.suggest({}, [{"model": "next-category", "score": 0.4, "top_category": "lenses"}], {}, "en")
    assert lens[0]["id"] == "lens_trial"
    custom = parse_rules("""
rules:
  - id: heavy_lapsed
    when: {features: {recency_days: {min: 30}, frequency_365d: {min: 10}}, scores: {churn: {min: 0.5}}}
    action: {en: Call}
""")
    assert custom.suggest({}, churn_high, {"recency_days": 40, "frequency_365d": 12})[0]["id"] == "heavy_lapsed"
    assert custom.suggest({}, churn_high, {"recency_days": 40, "frequency_365d": 2}) == []
    assert custom.suggest({}, [], {"recency_days": 40, "frequency_365d": 12}) == []  # churn not loaded
    with pytest.raises(ConfigError, match=r"rules.0.when.scores.churn.bands: Extra inputs"):
        parse_rules("rules: [{id: x, when: {scores: {churn: {bands: high}}}, action: {en: y}}]")


def test_session_cookies(tmp_path):
    from crmscore.serving.keys import KeyRing
    from crmscore.ui.auth import Authenticator, load_secret
    from crmscore.ui.routes import _safe_next

    ring = KeyRing.from_settings(tmp_path, None)
    key = ring.create("crm-operator")
    secret = load_secret(tmp_path, None)
    assert secret == load_secret(tmp_path, None) and oct((tmp_path / "ui_secret").stat().st_mode)[-3:] == "600"
    auth = Authenticator(tmp_path, "envkey", secret, hours=1)
    assert auth.login("wrong") is None and auth.login("") is None
    cookie = auth.login(key)
    assert key not in cookie
    session = auth.check(cookie)
    assert session.name == "crm-operator" and not session.admin
    assert auth.check(auth.login("envkey")).admin
    body, sig = cookie.rsplit(".", 1)
    assert auth.check(body + "." + sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")) is None  # tampered
    assert Authenticator(tmp_path, None, b"other-secret").check(cookie) is None  # another secret
    assert Authenticator(tmp_path, None, secret, hours=-1).check(Authenticator(tmp_path, None, secret, hours=-1)
                                                                  .login(key)) is None  # expired
    time.sleep(0.01)
    ring.revoke("crm-operator")
    os.utime(ring.path, (time.time() + 5, time.time() + 5))  # the key file changed: re-read at once
    assert auth.check(cookie) is None
    assert _safe_next("/ui/models/churn") == "/ui/models/churn"
    assert _safe_next("https://evil.example/") == "/ui/customers" and _safe_next("//evil") == "/ui/customers"


# -- on a trained, published model -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ui_served(synthetic_config, tmp_path_factory):
    """Churn trained, promoted and its features published in a private home, MLflow and BentoML store."""
    from crmscore.models import registry
    from crmscore.models.pipeline import train_task
    from crmscore.models.tasks import get_task
    from crmscore.scoring.publish import publish_snapshot
    from crmscore.settings import get_settings

    home = tmp_path_factory.mktemp("ui")
    env = {"CRMSCORE_HOME": str(home / "state"), "CRMSCORE_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
           "CRMSCORE_ARTIFACT_LOCATION": str(home / "mlruns"), "BENTOML_HOME": str(home / "bentoml"),
           "CRMSCORE_API_KEYS": API_KEY}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        cfg = load_config(synthetic_config)
        data = load_customer_data(cfg)
        task = get_task("churn")
        result = train_task(task, cfg, task.settings(snapshots=3), data=data)
        registry.promote("churn")
        publish_snapshot(data, None, get_settings())
        yield {"home": home, "env": env, "data": data, "cfg": cfg, "result": result}


@pytest.fixture(scope="module")
def ui_engine(ui_served):
    from crmscore.scoring.online import ScoringEngine
    from crmscore.settings import get_settings

    return ScoringEngine(get_settings())


def _pick_customer(engine) -> str:
    """A recent buyer with a high churn score (an interesting waterfall and a suggested action)."""
    best = None
    for cid in engine.store.sample_ids(400):
        f = engine.store.get(cid)
        if f.get("recency_days") is None or f["recency_days"] > 200 or not f.get("frequency_365d"):
            continue
        (r,) = engine.score("churn", [{"customer_id": cid}], False, 0, "pick")
        if best is None or r["score"] > best[0]:
            best = (r["score"], cid)
    return best[1]


def test_customer_view_waterfall_adds_up_and_speaks_chinese(ui_engine):
    cid = _pick_customer(ui_engine)
    from crmscore.ui.views import PageViews

    view = PageViews(ui_engine).customer_view(cid, "req-ui", "en", top_k=5)
    (s,) = view["scores"]
    wf = s["waterfall"]
    assert "error" not in s
    assert wf["final"] == pytest.approx(s["score"], abs=1e-9)
    path = [wf["base"]] + [st["end"] for st in wf["steps"]] + [wf["other"]["end"]]
    assert [st["start"] for st in wf["steps"]] == pytest.approx(path[:-2]) and path[-1] == pytest.approx(s["score"])
    assert [st["feature"] for st in wf["steps"]] == [r["feature"] for r in s["reasons"]]
    assert view["timeline"]["days"] and view["profile"]["lifecycle_stage"]
    en = ui_engine.score("churn", [{"customer_id": cid}], True, 3, "r-en")[0]
    default = ui_engine.score("churn", [{"customer_id": cid}], True, 3, "r-default")[0]
    zh = ui_engine.score("churn", [{"customer_id": cid}], True, 3, "r-zh", lang="zh")[0]
    assert en == default and [r["text"] for r in en["reasons"]] != [r["text"] for r in zh["reasons"]]
    assert all("流失风险" in r["text"] for r in zh["reasons"])
    assert [r["contribution"] for r in zh["reasons"]] == [r["contribution"] for r in en["reasons"]]
    cust = ui_engine.customer(cid, "r-c", 2, lang="zh")
    assert "流失风险" in cust["scores"][0]["reasons"][0]["text"]
    from crmscore.scoring.online import RequestError

    with pytest.raises(RequestError, match="lang must be one of en, zh"):
        ui_engine.score("churn", [{"customer_id": cid}], True, 3, "r", lang="fr")


def test_model_overview(ui_engine):
    from crmscore.ui.views import PageViews

    views = PageViews(ui_engine)
    ov = views.model_overview("churn")
    assert ov["metrics"]["columns"][0] == "model" and ov["metrics"]["rows"][0][0] == "roc_auc"
    assert 0.5 < ov["metrics"]["rows"][0][1] <= 1 and len(ov["metrics"]["columns"]) >= 3
    assert ov["importance"][0]["value"] >= ov["importance"][-1]["value"] > 0
    assert len(ov["beeswarm"]) == 10 and len(ov["beeswarm"][0]["shap"]) == ov["sampled"] > 50
    assert sum(g["n"] for g in ov["by_segment"]) == ov["scored"] == sum(g["n"] for g in ov["by_stage"])
    assert "prospect" not in {g["group"] for g in ov["by_segment"]}  # only the model's population
    assert views.model_overview("churn") is ov  # cached


def test_publish_keeps_the_previous_snapshot_for_transitions(ui_served, tmp_path, monkeypatch):
    from crmscore.scoring.publish import publish_snapshot
    from crmscore.features.store import SqliteStore
    from crmscore.settings import get_settings

    monkeypatch.setenv("CRMSCORE_HOME", str(tmp_path))
    data = ui_served["data"]
    settings = get_settings()
    end = data.ts_range()[1].normalize()
    publish_snapshot(data, end - np.timedelta64(20, "D"), settings)
    first = SqliteStore(tmp_path / "online_store.sqlite").meta()["segments"]
    assert first["previous_source"] == "recomputed" and first["previous_as_of"].startswith(
        str((end - np.timedelta64(50, "D")).date()))
    publish_snapshot(data, end, settings)
    store = SqliteStore(tmp_path / "online_store.sqlite")
    seg = store.meta()["segments"]
    assert seg["previous_source"] == "previous_publish" and seg["previous_as_of"] == first["as_of"]
    for key in ("rfm", "lifecycle"):
        moved = seg[f"{key}_transitions"]
        assert sum(n for a, b, n in moved if b is not None) == sum(seg[key].values()) == store.meta()["customers"]
        assert sum(n for a, b, n in moved if a is not None) == sum(seg[f"{key}_previous"].values())
    publish_snapshot(data, end, settings)  # the same cutoff again keeps the earlier comparison
    assert SqliteStore(tmp_path / "online_store.sqlite").meta()["segments"]["previous_as_of"] == first["as_of"]
    cid = store.sample_ids(1)[0]
    tl = store.get_timeline(cid)
    assert tl is None or (tl["to"] < str(end.date()) or tl["to"] == str((end - np.timedelta64(1, "D")).date()))


def test_evaluation_report(ui_served, tmp_path):
    from crmscore.models.report import write_evaluation_report

    path = write_evaluation_report(ui_served["result"], tmp_path / "report.html")
    html = path.read_text()
    assert html.startswith("<!doctype html>") and "<script" not in html
    assert "https://" not in html and "src=" not in html and "<link" not in html  # self-contained
    for cls in ("roc", "pr", "gains", "calibration", "drivers", "beeswarm"):
        assert f'class="chart {cls}"' in html, cls
    assert "baseline: recency" in html and "baseline: rfm" in html and "<table id='comparison'>" in html


# -- end to end in a real browser -------------------------------------------------------------------------
def _chromium() -> str | None:
    """Debian's chromium, installed with apt-get when this runs as root and it is missing."""
    for exe in ("chromium", "chromium-browser"):
        path = shutil.which(exe)
        if path:
            return path
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300, check=False)
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "fonts-noto-cjk"], env=env,
                           capture_output=True, timeout=600, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return shutil.which("chromium")
    return None


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "playwright>=1.45,<2"], capture_output=True,
                       timeout=300, check=False)
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            return None
    return sync_playwright


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.browser
@pytest.mark.integration
def _write_monitoring(served) -> dict:
    """A monitoring check of the served churn model written where `crmscore monitor` writes it (the home):
    drift at the end of the data, realised performance of scores written 120 days before it."""
    from crmscore.monitoring.check import check_model
    from crmscore.monitoring.gauges import write_latest
    from crmscore.monitoring.run import clean, headline
    from crmscore.scoring.batch import score_frame, transactional_population

    res, data = served["result"], served["data"]
    cut = data.default_as_of() - np.timedelta64(120, "D")
    scores = score_frame(res.bundle, transactional_population(res.bundle, data, cut), top_k=0, version=res.version)
    scores["as_of"] = cut
    check = check_model(res.bundle, res.version, data, data.default_as_of(), served["cfg"].monitoring,
                        scores=scores.rename(columns={"rfm_segment": "segment"}))
    body = clean({**check.to_dict(), "headline": headline(check), "retrain": check.verdict["retrain"]})
    write_latest(Path(served["env"]["CRMSCORE_HOME"]), [body])
    return body


def test_operations_page_in_a_real_browser(ui_served, ui_engine, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium: Debian's `chromium` is not installed and could not be installed here "
                    "(apt-get install chromium as root)")
    sync_playwright = _playwright()
    if sync_playwright is None:
        pytest.skip("Playwright for Python is not installed and pip could not install it (pip install playwright)")
    from crmscore.serving.launcher import LocalServer

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cid = _pick_customer(ui_engine)
    other = next(c for c in ui_engine.store.sample_ids(50) if c != cid and ui_engine.store.get(c).get("recency_days"))
    published = ui_engine.store.meta()["customers"]
    monitored = _write_monitoring(ui_served)
    server = LocalServer(ui_served["env"], tmp_path / "serve.log", api_key=API_KEY)
    shots: dict[str, Path] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
            page = ctx.new_page()
            # a page asks for the key first, and a wrong key is refused
            page.goto(f"{server.url}/ui/customers/{cid}")
            assert "/ui/login" in page.url
            page.fill("#key", "not-a-key")
            page.click("#login-submit")
            assert page.locator("p.error").inner_text() == "That key is not valid: check it and try again."
            page.fill("#key", API_KEY)
            page.click("#login-submit")
            page.wait_for_url(f"**/ui/customers/{cid}")
            # the customer view: score, waterfall, reasons, actions, timeline
            assert page.locator("#customer-title").inner_text() == f"Customer {cid}"
            card = page.locator('section.score[data-model="churn"]')
            assert card.locator(".score-value").inner_text().endswith("%")
            steps = card.locator("svg.waterfall g.wf-step")
            assert steps.count() >= 5 and card.locator("svg.waterfall g.wf-step.final rect").count() == 1
            assert card.locator("svg.waterfall g.wf-step.up rect, svg.waterfall g.wf-step.down rect").count() >= 3
            reasons = card.locator("ol.reasons li.reason")
            assert reasons.count() >= 3 and all(t.endswith("churn risk") for t in reasons.locator(".reason-text").all_inner_texts())
            assert page.locator("#actions li").count() >= 1
            assert page.locator("#timeline svg.timeline.wide rect.purchase").count() >= 1
            shots["customer"] = ARTIFACTS / "customer.png"
            page.screenshot(path=str(shots["customer"]), full_page=True)
            # Chinese: the same page, then the language sticks
            page.click("a.lang-switch")
            page.wait_for_url("**lang=zh")
            assert page.locator("#customer-title").inner_text() == f"客户 {cid}"
            zh_reasons = card.locator(".reason-text").all_inner_texts()
            assert zh_reasons and all("流失风险" in t for t in zh_reasons)
            assert page.locator("svg.waterfall text").first.text_content() == "基线（模型基准值对应的得分）"
            shots["customer_zh"] = ARTIFACTS / "customer_zh.png"
            page.screenshot(path=str(shots["customer_zh"]), full_page=True)
            page.goto(f"{server.url}/ui/segments")
            assert page.locator("h1").inner_text() == "客群"
            page.goto(f"{server.url}/ui/customers?lang=en")
            # search
            page.fill("#customer-id", other)
            page.click("#search-submit")
            page.wait_for_url(f"**/ui/customers/{other}")
            assert page.locator("svg.waterfall").count() == 1
            # a customer outside the churn model's population: scored, and the page says the model was not made for them
            churn = ui_engine.models["churn"]
            outside = next(c for c in ui_engine.store.sample_ids(400) if churn.in_population(ui_engine.store.get(c)) is False)
            page.goto(f"{server.url}/ui/customers/{outside}")
            note = page.locator('section.score[data-model="churn"] p.outside-population').inner_text()
            assert note.startswith("Outside this model's population (a purchase in the last ")
            assert page.locator('section.score[data-model="churn"] .score-value').inner_text().endswith("%")
            page.goto(f"{server.url}/ui/customers/{cid}")
            assert page.locator("p.outside-population").count() == 0  # a customer inside it: no note
            page.fill("form.search-mini input[name=id]", "no-such-customer")  # the search box in the header
            page.press("form.search-mini input[name=id]", "Enter")
            page.wait_for_url("**/ui/customers/no-such-customer")
            assert "no-such-customer" in page.locator("#not-found").inner_text()
            # the model view
            page.goto(f"{server.url}/ui/models")
            page.wait_for_url("**/ui/models/churn")
            rows = {r.locator("th").inner_text(): r.locator("td").all_inner_texts()
                    for r in page.locator("table#metrics tbody tr").all()}
            assert 0.5 < float(rows["ROC-AUC"][0]) <= 1 and len(rows["ROC-AUC"]) >= 3
            assert page.locator("svg.drivers g.bar").count() >= 10
            assert page.locator("svg.beeswarm circle.dot").count() > 500
            assert page.locator("svg.boxplot g.box").count() >= 4
            shots["model"] = ARTIFACTS / "model.png"
            page.screenshot(path=str(shots["model"]), full_page=True)
            # the segments view
            page.goto(f"{server.url}/ui/segments")
            for kind in ("rfm", "lifecycle"):
                counts = page.locator(f'table.counts[data-kind="{kind}"] td.count').all_inner_texts()
                assert sum(int(c.replace(",", "")) for c in counts) == published
                assert page.locator(f'table.matrix[data-kind="{kind}"] tbody tr').count() >= 3
            assert page.locator("ul.moves li").count() >= 2
            shots["segments"] = ARTIFACTS / "segments.png"
            page.screenshot(path=str(shots["segments"]), full_page=True)
            # the monitoring view: drift table (score first), realised against promoted, in English and Chinese
            page.goto(f"{server.url}/ui/monitoring?lang=en")
            assert page.locator("h1").inner_text() == "Monitoring"
            card = page.locator('section.monitor-model[data-model="churn"]')
            drift = card.locator("table.drift tbody tr")
            assert drift.count() == 16 and drift.first.get_attribute("data-feature") == "score"
            statuses = {r.get_attribute("data-feature"): r.get_attribute("data-status") for r in drift.all()}
            worst = max(monitored["features"], key=lambda f: f["psi"])
            assert statuses[worst["feature"]] == worst["status"]
            assert card.locator(".realised-chart svg g.count-bar").count() == 2  # ROC-AUC and PR-AUC of v1
            assert card.get_attribute("data-model") == "churn" and card.locator("p.verdict").count() == 1
            shots["monitoring"] = ARTIFACTS / "monitoring.png"
            page.screenshot(path=str(shots["monitoring"]), full_page=True)
            page.goto(f"{server.url}/ui/monitoring?lang=zh")
            assert page.locator("h1").inner_text() == "模型监控"
            assert page.locator("table.drift thead th").nth(3).inner_text() == "状态"
            shots["monitoring_zh"] = ARTIFACTS / "monitoring_zh.png"
            page.screenshot(path=str(shots["monitoring_zh"]), full_page=True)
            page.goto(f"{server.url}/ui/segments?lang=en")
            # the headline as Prometheus gauges
            metrics = page.request.get(f"{server.url}/metrics").text()
            assert f'crmscore_monitor_feature_psi_max{{model="churn",version="{monitored["version"]}"}}' in metrics
            # sign out: pages ask for the key again
            page.click("form.logout button")
            page.wait_for_url("**/ui/login")
            page.goto(f"{server.url}/ui/segments")
            assert "/ui/login" in page.url
            ctx.close()
            # a phone: the browser's language picks Chinese; nothing wider than the screen
            phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True,
                                        has_touch=True, device_scale_factor=2)
            page = phone.new_page()
            page.goto(f"{server.url}/ui/login")
            assert page.locator("h1").inner_text() == "登录"
            page.fill("#key", API_KEY)
            page.click("#login-submit")
            for path, name in ((f"/ui/customers/{cid}", "phone_customer"), ("/ui/models/churn", "phone_model"),
                               ("/ui/segments", "phone_segments")):
                page.goto(server.url + path)
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                if name == "phone_customer":
                    assert page.locator("svg.timeline.narrow").is_visible()
                    assert not page.locator("svg.timeline.wide").is_visible()
                    assert "流失风险" in page.locator(".reason-text").first.inner_text()
                assert overflow <= 1, f"{path} is {overflow}px wider than a phone screen"
                shots[name] = ARTIFACTS / f"{name}.png"
                page.screenshot(path=str(shots[name]), full_page=True)
            phone.close()
            browser.close()
    finally:
        server.stop()
    assert all(p.stat().st_size > 10_000 for p in shots.values())
    if os.environ.get("CRMSCORE_UPDATE_SCREENSHOTS") == "1":
        docs = REPO / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        for name in ("customer", "customer_zh", "model", "segments", "phone_customer", "monitoring", "monitoring_zh"):
            shutil.copy(shots[name], docs / f"{name}.png")
    (ARTIFACTS / "pages.json").write_text(json.dumps({k: str(v) for k, v in shots.items()}, indent=1))
