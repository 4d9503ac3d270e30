"""The dashboard: server-rendered pages at `/`, kept live by the event stream.

Entry point: `Dashboard(psm, auctioneer, objects, projects).routes()`, mounted by
`otto server`. Every page renders whole without JavaScript (Jinja2 templates);
`?part=NAME` renders one region of a page (one template block), which
`static/dashboard.js` fetches again whenever the event stream (SSE, resumed
from the last event id after a dropped connection or a restart) says that
something it shows has changed. Assets are vendored: no CDN at run time.
"""

from otto.web.pages import Dashboard

__all__ = ["Dashboard"]
