"""The operations page (crmscore.ui.routes, mounted on the scoring service at /ui), its translations
(crmscore.ui.i18n), server-side SVG charts (crmscore.ui.charts), suggested-action rules
(crmscore.ui.actions) and the HTML evaluation report of a training run (crmscore.ui.report).

Nothing here is imported by the package's other modules except the translations (reason texts)."""
