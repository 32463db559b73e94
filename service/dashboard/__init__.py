"""The web dashboard: static pages under /ui that read the REST API with the signed-in
user's token (a session cookie). No build step, no third-party front-end code: plain
HTML, CSS and ES modules, charts drawn as SVG by ``static/charts.js``."""
