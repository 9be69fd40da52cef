"""The operations page (crmscore.ui.routes, mounted on the scoring service at /ui), its view models
(crmscore.ui.views), sign-in (crmscore.ui.auth) and suggested-action rules (crmscore.ui.actions). Its
translations are the explain layer's (crmscore.explain.i18n) and its SVG charts are shared with the
evaluation report (crmscore.models.charts).

Only the scoring service imports this package (it mounts the page); nothing beneath the faces does."""
