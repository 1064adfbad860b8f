"""`events-app` with the public page cache switched off, for bench/pages.py's "uncached" figure:
every GET of the event page is answered as a cache miss is, and renders the page again.

    python bench/serve_uncached.py [--whole] serve --no-worker --port 8000

What each request does: the page key query (CachedPages, in front of routing), routing and the
route's middleware, the event as of that key (domain/events.py `for_page`), the page's context
(web/public.py `page_context`: state, seats, the cover's stored sizes, ...), then the page from
its frame (web/present.py `render_event_page`): the state badge is rendered by its template
macro and the registered count printed, and joined with the rest of the page's bytes; the
answer is built with its ETag. That is what a real miss does after a registration (seats
changed, the event's version did not), the usual miss.

What is not redone per request, because it depends only on what the frame is kept by (the
event's version, the organisation's identity, the base URL, the state, full or not, the cover):
the rest of the template (header, footer, head tags, JSON-LD, description Markdown, speakers,
add-to-calendar links, form). A new version, identity, state or fullness renders the whole
template once. `--whole` renders the whole template on every request instead (no frames): the
cost of that first render, which bench/pages.py reports for the record as page-uncached-whole.
"""

import sys

from events_app.cli import main
from events_app.web import cache, present

cache.ENABLED = False

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--whole"]:
        present.FRAMES = False
        argv = argv[1:]
    sys.exit(main(argv))
